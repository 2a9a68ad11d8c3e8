"""``gear train | validate -c CONFIG [--x.y v]``: Lightning's CLI over the GeAR module and data module.

Everything after ``train`` or ``validate`` belongs to Lightning's own parser, so :func:`gear_core.cli.main` hands it
over before argparse runs; they are registered here only so that ``gear --help`` lists them.
"""

from __future__ import annotations

import argparse


def run(lightning_args: list[str], subcommand: str = "fit") -> int:
    from gear_core.training.cli import run_training

    run_training(lightning_args, subcommand)
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    commands.add_parser("train", help="train with Lightning's CLI: gear train -c minilm|paper|FILE.yaml [--x.y v]")
    commands.add_parser("validate", help="validation metrics of a model: gear validate -c CONFIG [--x.y v]")
