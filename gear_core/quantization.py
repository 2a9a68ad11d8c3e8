"""Int8 storage of a GeAR model's weights: quantised on export, dequantised to float32 on load.

Storage format (``gear export MODEL OUT --dtype int8``; ``GeARConfig.storage_dtype == "int8"``):

- every 2-D floating-point matrix with at least ``min_elements`` elements (Linear weights, word and position
  embeddings) is stored as ``name`` (``int8``, same shape) plus ``name + SCALE_SUFFIX`` (``float32``, one scale
  per row), and ``weight ≈ int8 * scale[:, None]``;
- everything else (biases, LayerNorm weights, the scalar temperature, tiny matrices such as the 2-row token type
  embeddings) is stored as a plain float tensor, by default ``float32``;
- weights tied to another (the decoder's word embeddings and LM head when they share the query encoder's) are
  stored once, under the first name ``state_dict()`` gives them; the loader fills in the others;
- the tensors are written as sharded safetensors with a ``model.safetensors.index.json`` as Hugging Face writes
  it (a single ``model.safetensors`` when everything fits one shard). Nothing is ever pickled.

The top half of this module is pure tensor code (:func:`quantize_rows`, :func:`dequantize_rows`,
:func:`quantize_state_dict`, :func:`dequantize_state_dict`); the bottom half reads and writes folders.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gear_core.files import CorruptFileError
from gear_core.folders import adds_retrieval_layers, adds_span_reader, saved_config

if TYPE_CHECKING:
    from gear_core.modeling import GeARModel

#: Suffix of the per-row scale stored next to an int8 matrix: ``"<name>.int8_scale"``.
SCALE_SUFFIX = ".int8_scale"
#: ``GeARConfig.storage_dtype`` (and the index's ``metadata.storage_dtype``) of this format.
STORAGE_DTYPE = "int8"
#: Matrices smaller than this stay in float: their int8 saving is negligible and their scales would cost as much.
MIN_ELEMENTS = 4096
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
_QMAX = 127  # symmetric: int8 values lie in [-127, 127], so 0.0 is exact and -128 is never used


class CheckpointError(CorruptFileError):
    """A weight folder that cannot be read: a corrupt or truncated shard, a missing tensor or scale, a bad shape.

    ``tensor`` names the offending tensor where there is one.
    """

    def __init__(self, message: str, tensor: str | None = None) -> None:
        super().__init__(message)
        self.tensor = tensor


# ----------------------------------------------------------------------------------------------------------
# Pure tensor functions.


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 quantisation with one scale per output row.

    ``scale[i] = max_j |weight[i, j]| / 127`` and ``q[i, j] = round(weight[i, j] / scale[i])``, so every element
    is reproduced within ``scale[i] / 2``. A row of zeros gets scale 0 and quantises to zeros (exact).

    Per row rather than one scale per matrix: a single large outlier then only coarsens the step of its own row
    (one output unit of a Linear layer, one token of an embedding table) instead of every row of the matrix.

    Returns ``(q, scale)``: ``q`` is ``int8`` with ``weight``'s shape, ``scale`` is ``float32`` of shape ``(rows,)``.
    """
    if weight.dim() != 2 or not weight.is_floating_point():
        raise ValueError(f"expected a 2-D floating-point matrix, got {weight.dim()}-D {weight.dtype}")
    w = weight.detach().to(torch.float32)
    scale = w.abs().amax(dim=1) / _QMAX
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))  # zero rows: divide by 1, quantise to 0
    q = torch.round(w / safe[:, None]).clamp_(-_QMAX, _QMAX).to(torch.int8)
    return q, scale


def dequantize_rows(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The inverse of :func:`quantize_rows`: ``q * scale[:, None]`` in ``dtype`` (float32 by default)."""
    if q.dtype != torch.int8 or q.dim() != 2:
        raise ValueError(f"expected a 2-D int8 matrix, got {q.dim()}-D {q.dtype}")
    if scale.dim() != 1 or scale.shape[0] != q.shape[0]:
        raise ValueError(
            f"scale of shape {tuple(scale.shape)} does not fit a {tuple(q.shape)} matrix: need ({q.shape[0]},)"
        )
    return (q.to(torch.float32) * scale.to(torch.float32)[:, None]).to(dtype)


def should_quantize(tensor: torch.Tensor, min_elements: int = MIN_ELEMENTS) -> bool:
    """Whether :func:`quantize_state_dict` stores ``tensor`` as int8: a floating 2-D matrix of ``min_elements``+."""
    return tensor.is_floating_point() and tensor.dim() == 2 and tensor.numel() >= min_elements


def quantize_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    min_elements: int = MIN_ELEMENTS,
    keep_dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """A storable copy of ``state_dict``: large 2-D matrices as int8 + per-row scale, the rest as ``keep_dtype``.

    ``name`` becomes ``name`` (int8) and ``name + SCALE_SUFFIX`` (float32) when :func:`should_quantize`; other
    floating tensors are cast to ``keep_dtype``; integer tensors are kept as they are. The order of the keys is
    kept, each scale right after its matrix (so a shard split keeps them together). Tied weights are not
    detected here: pass each tensor once (see :func:`untied_state_dict`).
    """
    stored: dict[str, torch.Tensor] = {}
    for name, tensor in state_dict.items():
        if name.endswith(SCALE_SUFFIX):
            raise ValueError(f"{name!r} already ends with {SCALE_SUFFIX!r}")
        if should_quantize(tensor, min_elements):
            stored[name], stored[name + SCALE_SUFFIX] = quantize_rows(tensor)
        elif tensor.is_floating_point():
            stored[name] = tensor.detach().to(keep_dtype).contiguous().clone()
        else:
            stored[name] = tensor.detach().contiguous().clone()
    return stored


def dequantize_state_dict(
    stored: Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """The inverse of :func:`quantize_state_dict`: every tensor as ``dtype`` (integer tensors kept), scales consumed.

    Raises :class:`CheckpointError` for an int8 matrix without its scale, a scale without its matrix, or a scale
    whose shape does not fit its matrix.
    """
    scales = {name[: -len(SCALE_SUFFIX)] for name in stored if name.endswith(SCALE_SUFFIX)}
    orphans = sorted(name for name in scales if name not in stored)
    if orphans:
        raise CheckpointError(f"scales without their int8 matrix: {orphans}", tensor=orphans[0] + SCALE_SUFFIX)
    weights: dict[str, torch.Tensor] = {}
    for name, tensor in stored.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        if name in scales:
            try:
                weights[name] = dequantize_rows(tensor, stored[name + SCALE_SUFFIX], dtype)
            except ValueError as error:
                raise CheckpointError(f"{name}: {error}", tensor=name) from None
        elif tensor.dtype == torch.int8:
            raise CheckpointError(f"{name} is int8 but has no {name + SCALE_SUFFIX}", tensor=name)
        elif tensor.is_floating_point():
            weights[name] = tensor.to(dtype)
        else:
            weights[name] = tensor
    return weights


def untied_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with each shared tensor once, under the first name it has there."""
    seen: set[int] = set()
    state: dict[str, torch.Tensor] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        state[name] = tensor.detach()
    return state


def fill_tied(module: torch.nn.Module, weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``weights`` plus the names of ``module``'s shared tensors that ``weights`` holds under another name only."""
    groups: dict[int, list[str]] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    filled = dict(weights)
    for names in groups.values():
        present = [name for name in names if name in weights]
        if present:
            for name in names:
                filled.setdefault(name, weights[present[0]])
    return filled


# ----------------------------------------------------------------------------------------------------------
# Folders: sharded safetensors plus an index, as Hugging Face writes them.


def save_int8_weights(
    state_dict: Mapping[str, torch.Tensor],
    folder: str | os.PathLike,
    max_shard_size: int | str = "15MB",
    min_elements: int = MIN_ELEMENTS,
) -> list[Path]:
    """Quantise ``state_dict`` (each tensor once: tied copies removed) and write it to ``folder``.

    Writes ``model-0000i-of-0000n.safetensors`` shards of at most ``max_shard_size`` each (a tensor is never
    split, so a single tensor larger than the limit gets a shard of its own) and ``model.safetensors.index.json``,
    or a single ``model.safetensors``. Weight files of an earlier save in ``folder`` are removed first.
    Returns the files written.
    """
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("model*.safetensors"), folder / SAFE_WEIGHTS_INDEX_NAME]:
        if old.is_file():
            old.unlink()
    stored = quantize_state_dict(state_dict, min_elements=min_elements)
    split = split_torch_state_dict_into_shards(stored, max_shard_size=max_shard_size)
    written = []
    for filename, names in split.filename_to_tensors.items():
        save_file({name: stored[name] for name in names}, folder / filename, metadata={"format": "pt"})
        written.append(folder / filename)
    if split.is_sharded:
        index = {
            "metadata": {**split.metadata, "storage_dtype": STORAGE_DTYPE, "scale_suffix": SCALE_SUFFIX},
            "weight_map": dict(sorted(split.tensor_to_filename.items())),
        }
        index_path = folder / SAFE_WEIGHTS_INDEX_NAME
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(index_path)
    return written


def load_int8_weights(folder: str | os.PathLike, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Read the weights :func:`save_int8_weights` wrote and dequantise them to ``dtype``.

    Reads with ``safetensors.torch.load_file`` only (never unpickles). Raises :class:`CheckpointError` (a
    ``FileNotFoundError`` for a missing file) naming the file for a corrupt or truncated shard, a shard that
    lacks the tensors the index puts there, or a scale whose shape does not fit its matrix.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    index_path = folder / SAFE_WEIGHTS_INDEX_NAME
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(f"{index_path}: not a safetensors index ({error})") from None
        expected: dict[str, set[str]] = {}
        for name, filename in weight_map.items():
            expected.setdefault(filename, set()).add(name)
    elif (folder / SAFE_WEIGHTS_NAME).is_file():
        expected = {SAFE_WEIGHTS_NAME: set()}
    else:
        raise FileNotFoundError(f"no {SAFE_WEIGHTS_INDEX_NAME} or {SAFE_WEIGHTS_NAME} in {folder}")

    stored: dict[str, torch.Tensor] = {}
    origin: dict[str, Path] = {}
    for filename, names in sorted(expected.items()):
        path = folder / filename
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing ({SAFE_WEIGHTS_INDEX_NAME} lists it)")
        try:
            shard = load_file(path)
        except Exception as error:  # safetensors raises its own error type for bad headers and short files
            raise CheckpointError(f"{path} is corrupt or truncated: {error}") from None
        missing = sorted(names - shard.keys())
        if missing:
            raise CheckpointError(f"{path} lacks {len(missing)} tensors its index puts there, e.g. {missing[:3]}")
        stored.update(shard)
        origin.update(dict.fromkeys(shard, path))
    try:
        return dequantize_state_dict(stored, dtype)
    except CheckpointError as error:
        name = (error.tensor or "").removesuffix(SCALE_SUFFIX)
        files = sorted({str(origin[key]) for key in (name, name + SCALE_SUFFIX) if key in origin}) or [str(folder)]
        raise CheckpointError(f"{' and '.join(files)}: {error}", tensor=error.tensor) from None


def load_int8_model(model_class: type[GeARModel], path: str, *args: Any, **kwargs: Any) -> GeARModel:
    """A folder written by ``gear export --dtype int8`` as a ``model_class`` (what ``GeARModel.from_pretrained``
    calls for one): built from its config, dequantised, loaded strictly. ``kwargs`` are ``from_pretrained``'s."""
    from gear_core.config import GeARConfig

    if args:
        raise TypeError(f"unexpected positional arguments for an int8 folder: {args}")
    dtype, config = kwargs.pop("dtype"), kwargs.pop("config", None)
    # where to find files (AutoModel passes these; which ones changes between transformers versions): a local
    # folder needs none of them
    for key in (
        "use_safetensors",
        "revision",
        "trust_remote_code",
        "adapter_kwargs",
        "cache_dir",
        "token",
        "force_download",
        "local_files_only",
        "proxies",
        "resume_download",
        "subfolder",
    ):
        kwargs.pop(key, None)
    kwargs = {key: value for key, value in kwargs.items() if not key.startswith("_")}  # e.g. _from_auto
    if config is None:
        config, unused = GeARConfig.from_pretrained(path, return_unused_kwargs=True, **kwargs)
        if unused:
            raise TypeError(f"from_pretrained of an int8 folder does not take {sorted(unused)}")
    elif kwargs:
        raise TypeError(f"from_pretrained of an int8 folder does not take {sorted(kwargs)}")
    config.storage_dtype = None  # the loaded model computes (and would save) in float
    config._name_or_path = path
    try:  # every parameter is overwritten below: skip the random initialisation
        from transformers.initialization import no_init_weights
    except ImportError:
        no_init_weights = contextlib.nullcontext
    with no_init_weights():
        model = model_class(config)
    model.tie_weights()  # skipped with the initialisation; the loaded state fills each tied group once
    weights = fill_tied(model, load_int8_weights(path, dtype=torch.float32))
    # A copy head asked for by an override (decoder_copy) on a folder saved without one starts fresh.
    added = "copy_head." if model.copy_head is not None and not saved_config(path).get("decoder_copy") else None
    if added:
        model.copy_head.apply(model._init_weights)
        weights.update({f"{added}{k}": v for k, v in model.copy_head.state_dict().items()})
    # So does a reader (decoder_reader_layers): its layers from the encoder's top ones once those are loaded
    # (below, as from_encoder starts them), its output projection at 0.
    start_reader = bool(config.decoder_reader_layers) and not saved_config(path).get("decoder_reader_layers")
    if start_reader:
        weights.update({f"reader.{k}": v for k, v in model.reader.state_dict().items()})
        weights["reader_output.weight"] = torch.zeros_like(model.reader_output.weight)
        weights["reader_output.bias"] = torch.zeros_like(model.reader_output.bias)
    # And a span reader (span_reader_layers): from the encoder's top layers, once those are loaded.
    start_span_reader = adds_span_reader(config, path)
    if start_span_reader:  # a saved reader of another shape is dropped
        weights = {k: v for k, v in weights.items() if not k.startswith("span_reader.")}
        weights.update({f"span_reader.{k}": v for k, v in model.span_reader.state_dict().items()})
    # And retrieval layers (retrieval_layers): copies of the encoder's top layers, once those are loaded.
    start_retrieval_layers = adds_retrieval_layers(config, path)
    if start_retrieval_layers:  # saved retrieval layers of another count are dropped
        weights = {k: v for k, v in weights.items() if not k.startswith("retrieval_layers.")}
        weights.update({f"retrieval_layers.{k}": v for k, v in model.retrieval_layers.state_dict().items()})
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"the weights in {path} do not fit its config.json: {error}") from None
    if start_reader:
        model._start_reader()
    if start_span_reader:
        model._start_span_reader()
    if start_retrieval_layers:
        model._start_retrieval_layers()
    if dtype not in (None, "auto", torch.float32):
        model.to(getattr(torch, dtype) if isinstance(dtype, str) else dtype)
    model.eval()
    return model
