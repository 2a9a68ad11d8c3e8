"""Resuming training is exact (or refused), the exported model stays the best, and reports come from the logs.

Tiny random models on tiny SQuAD-format data (see conftest); dropout is on, so the random streams are tested too.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import TINY_OVERRIDES, save_tiny_encoder
from torch.utils.data import DataLoader

import gear_core.training.module as module_code
from gear_core import GeARModel
from gear_core.training import GeARDataModule, GeARLightningModule
from gear_core.training.datamodule import EpochShuffleSampler, TripleDataset
from gear_core.training.resume import RNG_SEED_KEY, ResumableDataLoader, ResumeError

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*smaller than the logging interval.*")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dropout_encoder_dir(tmp_path_factory, minilm_path) -> str:
    """conftest's tiny random BERT, with dropout on (resumption must reproduce the random masks too)."""
    return save_tiny_encoder(tmp_path_factory.mktemp("tiny-bert-dropout"), minilm_path, dropout=0.1)


class LossRecorder(L.Callback):
    def __init__(self) -> None:
        self.losses: dict[int, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses[trainer.global_step] = float(outputs["loss"])


class Crash(L.Callback):
    """Stands for a killed run: training stops with an error right after ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            raise KeyError("simulated crash")


def _module(encoder_dir: str, **kwargs) -> GeARLightningModule:
    L.seed_everything(0)
    return GeARLightningModule(
        encoder_dir, config_overrides=dict(TINY_OVERRIDES), learning_rate=1e-3, warmup_steps=2, **kwargs
    )


def _data(tiny_squad, batch_size=2, num_workers=0, seed=0, datamodule_class=GeARDataModule) -> GeARDataModule:
    squad, split = tiny_squad
    return datamodule_class(
        squad_path=squad,
        split_path=split,
        validation_articles=1,
        batch_size=batch_size,
        num_workers=num_workers,
        seed=seed,
    )


def _trainer(root: Path, checkpoints: str = "validation", callbacks=(), **kwargs) -> L.Trainer:
    if checkpoints == "validation":  # as the shipped configs: best by val/score + last, written after validation
        checkpoint = L.pytorch.callbacks.ModelCheckpoint(
            dirpath=root, monitor="val/score", mode="max", save_last=True, save_top_k=1
        )
    else:  # after every training batch, before the validation that follows it
        checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=root, save_last=True, every_n_train_steps=1)
    options = dict(
        max_epochs=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        default_root_dir=root,
    )
    return L.Trainer(**(options | kwargs), callbacks=[*callbacks, checkpoint])


def _state(module: GeARLightningModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _crashed_run(encoder_dir, tiny_squad, root: Path, crash_after: int, checkpoints="validation", num_workers=0):
    trainer = _trainer(root, checkpoints, callbacks=[Crash(crash_after)])
    with pytest.raises(KeyError, match="simulated crash"):
        trainer.fit(_module(encoder_dir), _data(tiny_squad, num_workers=num_workers))
    return root / "last.ckpt"


@pytest.mark.parametrize(
    ("checkpoints", "num_workers", "crash_after"),
    # Mid-epoch (written after validation, or after a batch and before the validation that follows it), with a
    # worker process, and at the end of the first epoch.
    [("validation", 0, 5), ("every_step", 0, 3), ("validation", 1, 5), ("every_step", 0, 7)],
)
def test_resuming_mid_epoch_reproduces_the_uninterrupted_run(
    dropout_encoder_dir, tiny_squad, tmp_path, checkpoints, num_workers, crash_after
):
    recorder = LossRecorder()
    straight = _module(dropout_encoder_dir)
    trainer = _trainer(tmp_path / "straight", checkpoints, callbacks=[recorder])
    trainer.fit(straight, _data(tiny_squad, num_workers=num_workers))
    steps_per_epoch = trainer.num_training_batches
    total = trainer.global_step
    assert total == 2 * steps_per_epoch >= 8

    last = _crashed_run(dropout_encoder_dir, tiny_squad, tmp_path / "run", crash_after, checkpoints, num_workers)
    checkpoint = torch.load(last, weights_only=False)
    resume_step = checkpoint["global_step"]
    assert 0 < resume_step < total
    assert any(k.startswith("momentum.queue.") for k in checkpoint["state_dict"])  # the queue is saved
    assert any(k.startswith("momentum.query_encoder.") for k in checkpoint["state_dict"])
    (position,) = checkpoint["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert position["batches"] == resume_step - position["epoch"] * steps_per_epoch > 0

    resumed_recorder = LossRecorder()
    resumed = _module(dropout_encoder_dir)
    trainer = _trainer(tmp_path / "run", checkpoints, callbacks=[resumed_recorder])
    trainer.fit(resumed, _data(tiny_squad, num_workers=num_workers), ckpt_path=str(last))

    assert sorted(resumed_recorder.losses) == list(range(resume_step + 1, total + 1))
    expected = [recorder.losses[s] for s in sorted(resumed_recorder.losses)]
    assert [resumed_recorder.losses[s] for s in sorted(resumed_recorder.losses)] == pytest.approx(
        expected, rel=1e-6, abs=1e-7
    )
    final_straight, final_resumed = _state(straight), _state(resumed)
    assert final_straight.keys() == final_resumed.keys()
    for key, value in final_straight.items():
        torch.testing.assert_close(final_resumed[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_dropout_is_on_and_reseeded_per_batch(dropout_encoder_dir, tiny_squad, tmp_path):
    """Guards the test above: with dropout on, the same batch in train mode gives another loss per seed."""
    from gear_core.training.resume import seed_batch

    module, data = _module(dropout_encoder_dir), _data(tiny_squad)
    data.setup("fit")
    data.use_model(module.model)
    batch = next(iter(data.train_dataloader()))
    module.model.train()
    losses = []
    for seed in (1, 1, 2):
        seed_batch(seed, 0, 0, 0)
        losses.append(float(module.model(**batch).loss.detach()))
    assert losses[0] == losses[1] != losses[2]


class PlainLoaderData(GeARDataModule):
    """A datamodule whose training loader cannot save its position (a plain DataLoader)."""

    def train_dataloader(self) -> DataLoader:
        dataset = TripleDataset(self.train_triples)
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            sampler=EpochShuffleSampler(len(dataset), self.hparams.seed),
            collate_fn=self._collator(),
            drop_last=True,
        )


def test_resumes_that_cannot_be_exact_are_refused(dropout_encoder_dir, tiny_squad, tmp_path):
    last = _crashed_run(dropout_encoder_dir, tiny_squad, tmp_path / "run", crash_after=5)
    checkpoint = torch.load(last, weights_only=False)

    def resume(path: Path, **data_args) -> None:
        trainer = _trainer(tmp_path / "resumed")
        trainer.fit(_module(dropout_encoder_dir), _data(tiny_squad, **data_args), ckpt_path=str(path))

    # Written before resumption was exact: no seed for the random streams.
    old = dict(checkpoint)
    del old[RNG_SEED_KEY]
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(ResumeError, match="written before resumption was made exact"):
        resume(tmp_path / "old.ckpt")

    # No data position in the checkpoint: the epoch would start its order again.
    no_position = dict(checkpoint)
    no_position["loops"] = {**checkpoint["loops"]}
    no_position["loops"]["fit_loop"] = {**checkpoint["loops"]["fit_loop"]}
    no_position["loops"]["fit_loop"]["state_dict"] = {
        k: v for k, v in checkpoint["loops"]["fit_loop"]["state_dict"].items() if k != "combined_loader"
    }
    torch.save(no_position, tmp_path / "no_position.ckpt")
    with pytest.raises(ResumeError, match="restarted at batch 0"):
        resume(tmp_path / "no_position.ckpt")
    with pytest.raises(ResumeError, match="cannot restore its position"):
        resume(tmp_path / "no_position.ckpt", datamodule_class=PlainLoaderData)

    # Another data order or batch size: the epoch cannot be continued.
    with pytest.raises(ResumeError, match="seed 0 -> 1"):
        resume(last, seed=1)
    with pytest.raises(ResumeError, match="batch_size 2 -> 3"):
        resume(last, batch_size=3)


def test_resumable_loader_skips_consumed_batches_without_building_them():
    dataset = TripleDataset(list(range(10)))
    built: list[list[int]] = []

    def collate(items):
        built.append(list(items))
        return list(items)

    def loader() -> ResumableDataLoader:
        return ResumableDataLoader(
            dataset, batch_size=3, sampler=EpochShuffleSampler(10, seed=5), collate_fn=collate, drop_last=True
        )

    first = loader()
    first.sampler.set_epoch(1)
    everything = list(first)
    assert len(everything) == 3 and first.state_dict()["batches"] == 3
    iterator = iter(first)
    next(iterator)
    state = first.state_dict()
    assert state["epoch"] == 1 and state["batches"] == 1

    built.clear()
    second = loader()
    second.load_state_dict(state)
    second.sampler.set_epoch(1)  # as Lightning does after loading the state and before the first batch
    assert list(second) == everything[1:]
    assert built == everything[1:]  # the consumed batch was skipped by index, not built and dropped
    assert list(second) == everything  # only the resumed epoch skips

    third = loader()
    third.load_state_dict(state)
    third.sampler.set_epoch(2)  # another epoch than the saved one: nothing to skip
    assert len(list(third)) == 3


@pytest.mark.parametrize("rank", [0, 1])
def test_resumable_loader_under_a_distributed_sampler_drops_consumed_batches(rank):
    """Under DDP Lightning wraps the sampler (DistributedSamplerWrapper): consumed batches are built and dropped."""
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper
    from lightning.pytorch.utilities.data import _update_dataloader

    dataset = TripleDataset(list(range(20)))
    original = ResumableDataLoader(
        dataset, batch_size=2, sampler=EpochShuffleSampler(20, seed=3), collate_fn=list, drop_last=True
    )

    def loader() -> ResumableDataLoader:
        wrapped = DistributedSamplerWrapper(original.sampler, num_replicas=2, rank=rank, shuffle=False)
        rebuilt = _update_dataloader(original, wrapped)  # as Lightning re-creates the user's loader for DDP
        assert isinstance(rebuilt, ResumableDataLoader)
        rebuilt.sampler.set_epoch(4)
        return rebuilt

    first = loader()
    everything = list(first)
    assert len(everything) == 5
    iterator = iter(first)
    next(iterator), next(iterator)
    state = first.state_dict()
    assert state["batches"] == 2 and state["epoch"] == 4 and state["seed"] == 3

    second = loader()
    second.load_state_dict(state)
    assert list(second) == everything[2:]


# ---- the exported model stays the best ---------------------------------------------------------------------


class Snapshots(L.Callback):
    """The model's weights at each validation, by global step."""

    def __init__(self) -> None:
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.weights[trainer.global_step] = {k: v.clone() for k, v in pl_module.model.state_dict().items()}


def _assert_exported(export_dir: Path, weights: dict[str, torch.Tensor]) -> None:
    exported = GeARModel.from_pretrained(export_dir).state_dict()
    assert exported.keys() == weights.keys()
    for key, value in weights.items():
        torch.testing.assert_close(exported[key], value, rtol=0, atol=0, msg=key)


def _scripted_scores(monkeypatch, scores: dict[int, float], module_ref: list) -> None:
    """``val/score`` (the mean of the validation metrics) follows ``scores`` by global step."""
    monkeypatch.setattr(module_code, "mean", lambda values: scores[module_ref[0].trainer.global_step])


def test_a_worse_validation_does_not_overwrite_the_export_also_after_a_resume(
    tiny_encoder_dir, tiny_squad, tmp_path, monkeypatch
):
    export_dir = tmp_path / "best"
    module_ref: list[GeARLightningModule] = []
    # The sanity check (step 0) scores best of all but must not export; step 2 is the best real validation.
    _scripted_scores(monkeypatch, {0: 0.99, 1: 0.5, 2: 0.7, 3: 0.6, 4: 0.65, 5: 0.69, 6: 0.8}, module_ref)

    snapshots = Snapshots()
    module = _module(tiny_encoder_dir, export_dir=str(export_dir))
    module_ref[:] = [module]
    trainer = _trainer(
        tmp_path / "run", "every_step", callbacks=[snapshots], max_steps=4, val_check_interval=1, num_sanity_val_steps=1
    )
    trainer.fit(module, _data(tiny_squad, batch_size=4))
    assert sorted(snapshots.weights) == [1, 2, 3, 4]
    assert module.best_score == 0.7
    _assert_exported(export_dir, snapshots.weights[2])
    assert not torch.equal(snapshots.weights[2]["temperature"], snapshots.weights[4]["temperature"])

    # Resumed from step 4: the best score comes back from the checkpoint, so step 5's 0.69 does not export.
    assert torch.load(tmp_path / "run" / "last.ckpt", weights_only=False)["gear_best_score"] == 0.7
    resumed = _module(tiny_encoder_dir, export_dir=str(export_dir))
    module_ref[:] = [resumed]
    trainer = _trainer(tmp_path / "run", "every_step", callbacks=[snapshots], max_steps=5, val_check_interval=1)
    trainer.fit(resumed, _data(tiny_squad, batch_size=4), ckpt_path=str(tmp_path / "run" / "last.ckpt"))
    assert resumed.best_score == 0.7
    _assert_exported(export_dir, snapshots.weights[2])

    # A better score after another resume does export.
    again = _module(tiny_encoder_dir, export_dir=str(export_dir))
    module_ref[:] = [again]
    trainer = _trainer(tmp_path / "run", "every_step", callbacks=[snapshots], max_steps=6, val_check_interval=1)
    trainer.fit(again, _data(tiny_squad, batch_size=4), ckpt_path=str(tmp_path / "run" / "last.ckpt"))
    assert again.best_score == 0.8
    _assert_exported(export_dir, snapshots.weights[6])


# ---- validation before training, and the training report -----------------------------------------------------


def _training_report():
    spec = importlib.util.spec_from_file_location("training_report", ROOT / "benchmarks" / "training_report.py")
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    return report


def test_the_training_report_joins_the_logs_of_a_resumed_run(tmp_path):
    """A run resumed from a checkpoint logs to a new version folder; the report read only the newest (a run cut
    at step 400 and resumed showed steps 400 onwards alone)."""
    import os

    runs = {"version_0": [(0, 3.0), (2, 2.0), (4, 1.9), (5, 1.8)], "version_1": [(4, 1.5), (6, 1.2)]}
    for age, (version, rows) in enumerate(runs.items()):
        folder = tmp_path / "logs" / version
        folder.mkdir(parents=True)
        lines = ["epoch,step,train/span_loss", *(f"0,{step},{loss}" for step, loss in rows)]
        (folder / "metrics.csv").write_text("\n".join(lines) + "\n")
        os.utime(folder / "metrics.csv", (1_000_000 + age, 1_000_000 + age))
    rows = _training_report().read_metrics(tmp_path)
    # version_1 resumed from step 4's checkpoint: its rows replace version_0's from step 4 on
    assert [(int(r["step"]), float(r["train/span_loss"])) for r in rows] == [(0, 3.0), (2, 2.0), (4, 1.5), (6, 1.2)]


def _logged_fit(encoder_dir, tiny_squad, root: Path, **module_args) -> GeARLightningModule:
    module = _module(encoder_dir, **module_args)
    trainer = L.Trainer(
        max_steps=4,
        val_check_interval=2,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
        accelerator="cpu",
        enable_progress_bar=False,
        enable_checkpointing=False,
        default_root_dir=root,
        logger=L.pytorch.loggers.CSVLogger(root, name="logs"),
    )
    trainer.fit(module, _data(tiny_squad, batch_size=4))
    return module


def _validation_rows(root: Path) -> list[dict[str, str]]:
    (path,) = root.glob("logs/version_*/metrics.csv")
    with path.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("val/score")]


def test_validate_before_training_logs_step_zero_and_the_report_shows_it(
    tiny_encoder_dir, tiny_squad, tmp_path, monkeypatch, capsys
):
    _logged_fit(tiny_encoder_dir, tiny_squad, tmp_path / "plain")
    plain = _validation_rows(tmp_path / "plain")
    module = _logged_fit(tiny_encoder_dir, tiny_squad, tmp_path / "before", validate_before_training=True)
    before = _validation_rows(tmp_path / "before")

    assert len(before) == len(plain) + 1
    assert before[0]["step"] == "0"
    assert [r["step"] for r in before[1:]] == [r["step"] for r in plain]
    # The untrained model's score is the same validation as the later rows, and it counts for the best export.
    assert math.isfinite(float(before[0]["val/score"]))
    assert module.best_score >= float(before[0]["val/score"])
    assert module.global_step == 4  # the extra validation did not change the training budget

    report = _training_report()
    out = tmp_path / "report.md"
    monkeypatch.setattr(
        sys, "argv", ["training_report.py", "--run", f"run={tmp_path / 'before'}", "--every", "2", "--out", str(out)]
    )
    report.main()
    text = out.read_text(encoding="utf-8")
    validation_table = text.split("## Training loss")[0].splitlines()
    rows = [line for line in validation_table if line.startswith("| run | ") and not line.startswith("| run | step")]
    assert rows[0].startswith("| run | 0 (before training) |")
    assert rows[0].endswith(f"| {float(before[0]['val/score']):.3f} |")  # val/score is the last column
    assert [row.split(" | ")[1] for row in rows[1 : len(before)]] == [r["step"] for r in before[1:]]

    # Hand-typed rows are no longer accepted.
    monkeypatch.setattr(
        sys,
        "argv",
        ["training_report.py", "--run", f"run={tmp_path / 'before'}", "--start", "run=0.3,0.9", "--out", "x"],
    )
    with pytest.raises(SystemExit):
        report.main()
    assert "--start" in capsys.readouterr().err


def test_validation_before_training_is_not_repeated_on_resume(tiny_encoder_dir, tiny_squad, tmp_path):
    counts = []

    class CountValidations(L.Callback):
        def on_validation_end(self, trainer, pl_module):
            counts.append(trainer.global_step)

    trainer = _trainer(tmp_path, "every_step", callbacks=[CountValidations()], max_steps=2, val_check_interval=2)
    trainer.fit(_module(tiny_encoder_dir, validate_before_training=True), _data(tiny_squad, batch_size=4))
    assert counts == [0, 2]
    trainer = _trainer(tmp_path, "every_step", callbacks=[CountValidations()], max_steps=4, val_check_interval=2)
    trainer.fit(
        _module(tiny_encoder_dir, validate_before_training=True),
        _data(tiny_squad, batch_size=4),
        ckpt_path=str(tmp_path / "last.ckpt"),
    )
    assert counts == [0, 2, 4]
