"""``gear train``: Lightning's CLI over GeARLightningModule and GeARDataModule (typed __init__s become YAML).

gear train -c minilm                      # a config shipped in gear_core/training/configs/
gear train -c my.yaml --trainer.max_epochs 3 --model.lm_loss_weight 0
gear train -c minilm --ckpt_path runs/minilm/checkpoints/last.ckpt   # resume
"""

from __future__ import annotations

import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningCLI

from gear_core.training.datamodule import GeARDataModule
from gear_core.training.module import GeARLightningModule

CONFIG_DIR = Path(__file__).parent / "configs"


def resolve_config(name_or_path: str) -> str:
    """``minilm`` or ``paper`` name a shipped config; anything else is a path."""
    shipped = CONFIG_DIR / f"{name_or_path}.yaml"
    if not Path(name_or_path).exists() and shipped.is_file():
        return str(shipped)
    if not Path(name_or_path).is_file():
        names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no config {name_or_path!r}: give a YAML path or one of {names}")
    return name_or_path


def run_training(args: list[str], subcommand: str = "fit") -> LightningCLI:
    """Run ``fit`` (or ``validate``) with Lightning's CLI; ``-c``/``--config`` values may name a shipped config."""
    args = list(args)
    for i, arg in enumerate(args[:-1]):
        if arg in ("-c", "--config"):
            args[i + 1] = resolve_config(args[i + 1])
    # `gear` hands Lightning its arguments on purpose; and the module's transfer_batch_to_device is meant to win.
    warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python.*")
    warnings.filterwarnings("ignore", message=".*overridden `transfer_batch_to_device`.*")
    return LightningCLI(
        GeARLightningModule,
        GeARDataModule,
        args=[subcommand, *args],
        save_config_kwargs={"overwrite": True},
    )
