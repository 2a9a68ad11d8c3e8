"""What every ``gear`` command shares: the one-line user error, the model a command names, argument types, reading
a user's files and writing an output folder whole or not at all.

Nothing heavy (torch, transformers) is imported here at module level: arguments are parsed first, so ``--help`` and
argument errors are quick.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import chain, islice
from pathlib import Path
from typing import NoReturn, TypeVar

T = TypeVar("T")

# Optional packages, by the pyproject extra that installs them.
EXTRAS = {"lightning": "train", "jsonargparse": "train", "datasets": "train"}


class CommandError(Exception):
    """A user error: ``main`` prints it as one line and exits with 2."""


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line, like every other ``gear`` error (the usage is in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def one_line(error: BaseException | str) -> str:
    """An error's message on one line (transformers' and tokenizers' messages span several)."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip())


def load(name_or_path: str | None):
    """The model a command names (:func:`gear_core.loading.load_model`); an error loading it is one line naming
    the model, exit code 2."""
    from gear_core.files import CorruptFileError
    from gear_core.loading import load_model

    try:
        return load_model(name_or_path)
    except (FileNotFoundError, CorruptFileError):
        raise  # their messages name the file already
    except (OSError, ValueError, RuntimeError) as error:  # e.g. a damaged config.json or tokenizer.json
        raise CommandError(f"cannot load the model {name_or_path or 'gear-minilm'}: {one_line(error)}") from error


def check_out(out: str, overwrite: bool) -> None:
    """A command that writes a model folder never replaces one by surprise (the README's quickstart saved to the
    name `gear init` then wrote an untrained model over)."""
    if Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())) and not overwrite:
        raise CommandError(f"{out} exists and is not empty; pass --overwrite to replace it")


@contextmanager
def writing_folder(out: str, overwrite: bool, keep: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """A new folder beside ``out`` to write a command's output into; it becomes ``out`` only when the block
    succeeds, so a failure (a bad argument found late, a full disk, Ctrl-C) leaves ``out`` as it was and nothing
    half-written. Replacing a folder (``overwrite``), its files for which ``keep`` says True and that the block did
    not write are carried into the new one (a model card beside the weights)."""
    check_out(out, overwrite)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    mask = os.umask(0)
    os.umask(mask)
    staging.chmod(0o777 & ~mask)  # mkdtemp makes a private folder; the output gets the permissions of any other
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.is_dir() and not target.is_symlink():  # empty, or replaced with --overwrite
        for path in target.iterdir() if keep is not None else ():
            if path.is_file() and not path.is_symlink() and keep(path) and not (staging / path.name).exists():
                shutil.copy2(path, staging / path.name)
        old = staging.with_name(staging.name + ".old")
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old)
    else:
        if target.exists() or target.is_symlink():  # a file, replaced with --overwrite
            target.unlink()
        staging.rename(target)


def _reading_problem(path: str | os.PathLike, error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{path} is not valid JSON ({error})"
    if isinstance(error, UnicodeDecodeError):
        return f"{path} is not UTF-8 text"
    if isinstance(error, KeyError):
        return f"{path} lacks the field {error.args[0]!r} in a record"
    message = one_line(error)
    return message if str(path) in message else f"cannot read {path}: {message}"  # some messages name it already


@contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """Errors while the block reads a user's input file become one line naming that file."""
    try:
        yield
    except (OSError, ValueError, KeyError, TypeError, EOFError) as error:
        raise CommandError(_reading_problem(path, error)) from error


def _named(path: str | os.PathLike, records: Iterable[T]) -> Iterator[T]:
    with reading(path):
        yield from records


def read_checked(path: str | os.PathLike, records: Iterable[T]) -> Iterator[T]:
    """The records a reader yields from ``path``, any error naming the file; the first is read at once, so a file
    that is not what it should be (not JSON, not gzip) fails before a command's slow part writes anything."""
    records = _named(path, records)
    return chain(list(islice(records, 1)), records)


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _int_at_least(value: str, minimum: int, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise argparse.ArgumentTypeError(f"expected a {what} integer, got {value}")
    return number


def positive_int(value: str) -> int:
    return _int_at_least(value, 1, "positive")


def non_negative_int(value: str) -> int:
    return _int_at_least(value, 0, "non-negative")


def non_blank(value: str) -> str:
    """A query or document: an empty one would still get confident scores."""
    if not value.strip():
        raise argparse.ArgumentTypeError("is empty")
    return value


# What huggingface_hub's sharding accepts (decimal units), checked while parsing, before a model is loaded.
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]B)?\s*", re.IGNORECASE)
_UNITS = {None: 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}


def file_size(value: str) -> int:
    """A size such as 15MB, 1.5GB or 500000 (bytes), in bytes."""
    match = _SIZE.fullmatch(value)
    size = int(float(match[1]) * _UNITS[match[2] and match[2].upper()]) if match else 0
    if size <= 0:
        raise argparse.ArgumentTypeError(f"expected a size such as 15MB, 1GB or 500KB, got {value!r}")
    return size
