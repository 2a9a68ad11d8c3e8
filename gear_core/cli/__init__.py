"""The ``gear`` command line.

gear init ENCODER OUT [--shared-encoder] [--decoder-layers N] ...   a fresh GeAR from a BERT-family encoder
gear info MODEL                                                     config and parameter counts
gear export MODEL OUT [--dtype D] [--set FIELD=VALUE ...]           a release copy: fp16 or int8, sharded safetensors
gear highlight MODEL --query Q (--document TEXT | --file PATH)      ranked sentences and generated evidence
gear eval [MODEL] [--split test|validation] [--out FILE.md]         the paper's tables, baselines in the same run
gear demo [--corpus DIR_OR_FILE | --wiki-offline] [--question Q ...] [--html FILE]
                                                                    index a corpus offline, ask it questions, show
                                                                    the documents, highlighted sentences, evidence
gear synthesize ...                                                 relevant-information triples for training
gear train | validate -c CONFIG [--x.y v]                           Lightning's CLI

One module per command (``register`` adds its arguments, ``run`` does the work); the work itself lives in
gear_core's packages.
"""

from __future__ import annotations

import argparse
import sys

from gear_core.cli import demo, evaluate, export, highlight, info, init, synthesize, train
from gear_core.cli._common import EXTRAS, CommandError, Parser, one_line

COMMANDS = (init, info, export, highlight, evaluate, demo, synthesize, train)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="gear", description="GeAR: Generation Augmented Retrieval")
    commands = parser.add_subparsers(dest="command", required=True)  # subcommands' parsers are Parsers too
    for command in COMMANDS:
        command.register(commands)
    return parser


def is_user_error(error: Exception) -> bool:
    """What a user can fix (a wrong path, a damaged or mismatched file), printed as one line, not a traceback.
    The library's error classes are imported only when an error needs them: parsing stays quick."""
    if isinstance(error, (CommandError, FileNotFoundError)):
        return True
    from gear_core.files import CorruptFileError, ModelMismatchError  # no faiss: the GPU image has none

    return isinstance(error, (CorruptFileError, ModelMismatchError))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] in (["train"], ["validate"]):  # everything after it belongs to Lightning's own parser
            return train.run(argv[1:], "fit" if argv[0] == "train" else "validate")
        args = build_parser().parse_args(argv)
        return args.handler(args)
    except BrokenPipeError:  # the output went to a pipe that closed early (`gear info MODEL | head`): not an error
        sys.stderr.close()
        return 0
    except ModuleNotFoundError as error:  # an optional part that is not installed
        extra = EXTRAS.get((error.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"gear: this command needs {error.name}: pip install 'gear-llamaindex[{extra}]'", file=sys.stderr)
        return 2
    except Exception as error:
        if not is_user_error(error):
            raise
        print(f"gear: {one_line(error)}", file=sys.stderr)
        return 2


__all__ = ["CommandError", "build_parser", "main"]
