"""Getting a GeAR model: the one place that turns a name or a folder into a GeARModel.

Every entry point (the CLI, training, synthesis, the demo, the LlamaIndex adapters) goes through here, so they
agree on what a name means and fail the same clear way:

- ``None``, ``"default"`` and ``"gear-minilm"`` (when no folder of that name exists here) are the model shipped in
  the package (``gear_core.DEFAULT_MODEL``);
- anything else must be a folder written by ``GeARModel.save_pretrained`` (or ``gear export``). A name that is not
  a folder is an error at once: nothing is looked up on a model hub (which is unreachable offline and, when it is
  reachable, turns a typo into minutes of retries).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gear_core.folders import SHIPPED_MODEL_NAMES, is_gear_folder, shipped_model_folder
from gear_core.modeling import GeARModel


class ModelNotFoundError(FileNotFoundError):
    """No GeAR model where one was asked for (the message says what is there instead)."""


def resolve_model_path(name_or_path: str | os.PathLike | None = None) -> str:
    """The folder of the GeAR model ``name_or_path`` names (see the module docstring), or ModelNotFoundError."""
    import gear_core

    path = None if name_or_path is None else os.fspath(name_or_path)
    if path is None or shipped_model_folder(path):
        if not is_gear_folder(gear_core.DEFAULT_MODEL):
            raise ModelNotFoundError(
                f"the shipped model is missing at {gear_core.DEFAULT_MODEL} (a broken install?): reinstall "
                "gear-llamaindex, or use a saved GeAR folder (model_name= in the LlamaIndex adapters, or model= a "
                "loaded GeARModel)"
            )
        return gear_core.DEFAULT_MODEL
    if is_gear_folder(path):
        return path
    config = Path(path) / "config.json"
    if config.is_file():
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (ValueError, AttributeError, UnicodeDecodeError) as error:
            raise ModelNotFoundError(f"{config} is not a valid config file: {error}") from None
        raise ModelNotFoundError(f"{path} holds a {model_type!r} model, not a GeAR model (model_type 'gear')")
    what = "a folder without config.json" if os.path.isdir(path) else "not a folder"
    raise ModelNotFoundError(
        f"no GeAR model at {path} ({what}): give a folder written by save_pretrained or `gear init`, "
        f"or {' / '.join(repr(n) for n in SHIPPED_MODEL_NAMES)} for the shipped model"
    )


def load_model(
    name_or_path: str | os.PathLike | None = None,
    device: str | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> GeARModel:
    """The saved GeAR model ``name_or_path`` names, in eval mode (``config_overrides`` change its config, e.g.
    serving settings; parts they add start freshly initialised)."""
    path = resolve_model_path(name_or_path)
    try:
        model = GeARModel.from_pretrained(path, **(config_overrides or {}))
    except OSError as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise ModelNotFoundError(str(error).splitlines()[0]) from None  # e.g. transformers' unreadable config
    if device is not None:
        model.to(device)
    return model.eval()


def load_or_build_model(
    name_or_path: str | os.PathLike | None,
    config_overrides: dict[str, Any] | None = None,
    encoder_defaults: dict[str, Any] | None = None,
) -> GeARModel:
    """A saved GeAR model (as :func:`load_model`), or else a fresh GeAR built from the BERT-family encoder
    ``name_or_path`` names (``GeARModel.from_encoder``, with ``encoder_defaults`` then ``config_overrides``)."""
    try:
        return load_model(name_or_path, config_overrides=config_overrides)
    except ModelNotFoundError:
        if name_or_path is None or is_gear_folder(name_or_path):  # a GeAR folder that failed to load stays an error
            raise
    return GeARModel.from_encoder(name_or_path, **{**(encoder_defaults or {}), **(config_overrides or {})})
