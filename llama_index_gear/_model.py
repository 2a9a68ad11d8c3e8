"""Finding the GeARModel an adapter wraps: the one passed in, a saved folder, or the packaged default."""

from __future__ import annotations

import os
import threading

from gear_core import GeARModel
from gear_core.folders import is_gear_folder
from gear_core.loading import load_model as gear_load_model
from gear_core.loading import resolve_model_path

_cache: dict[tuple[str, str | None], GeARModel] = {}
_lock = threading.Lock()


def load_model(
    model: GeARModel | None = None, model_name: str | os.PathLike | None = None, device: str | None = None
) -> GeARModel:
    """``model`` itself (moved to ``device`` if given), else the saved GeAR model ``model_name`` names
    (``gear_core.loading``: a folder, or None / ``"default"`` for the shipped model).

    Loaded models are cached per (folder, device), so an embedding, a retriever and a highlighter built from the
    same folder share one copy of the weights.
    """
    if model is not None:
        if not isinstance(model, GeARModel):
            raise TypeError(f"model must be a gear_core.GeARModel, got {type(model).__name__}")
        if device is not None:
            model.to(device)
        return model
    key = (os.path.abspath(resolve_model_path(model_name)), device)
    with _lock:
        if key not in _cache:
            _cache[key] = gear_load_model(key[0], device=device)
        return _cache[key]


def model_label(model: GeARModel) -> str:
    """A readable name for ``model``: where it was loaded from, or the encoder it was built from."""
    return str(getattr(model, "name_or_path", "") or model.config.encoder_name_or_path or "gear")


def saved_model_folder(model: GeARModel) -> str | None:
    """The absolute folder ``model`` was loaded from when it is a saved GeAR model (e.g. not a fresh
    ``from_encoder`` model, whose name is the plain encoder's), else None."""
    name = getattr(model, "name_or_path", "") or ""
    return os.path.abspath(name) if is_gear_folder(name) else None


def clear_model_cache() -> None:
    """Forget the models :func:`load_model` loaded (they are freed once nothing else holds them)."""
    with _lock:
        _cache.clear()
