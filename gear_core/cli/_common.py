"""What every ``gear`` command shares: the one-line user error, the model a command names, argument types."""

from __future__ import annotations

import argparse
from pathlib import Path

# Optional packages, by the pyproject extra that installs them.
EXTRAS = {"lightning": "train", "jsonargparse": "train", "datasets": "train"}


class CommandError(Exception):
    """A user error: ``main`` prints it as one line and exits with 2."""


def load(name_or_path: str | None):
    """The model a command names (:func:`gear_core.loading.load_model`; its errors are one line, exit code 2)."""
    from gear_core.loading import load_model

    return load_model(name_or_path)


def check_out(out: str, overwrite: bool) -> None:
    """A command that writes a model folder never replaces one by surprise (the README's quickstart saved to the
    name `gear init` then wrote an untrained model over)."""
    if Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())) and not overwrite:
        raise CommandError(f"{out} exists and is not empty; pass --overwrite to replace it")


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return number
