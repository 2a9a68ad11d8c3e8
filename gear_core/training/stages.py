"""What each training stage trains: the parts it freezes, and the span reader's teacher (see
:class:`~gear_core.training.module.GeARLightningModule`'s ``stage``)."""

from __future__ import annotations

from torch import nn

from gear_core.loading import load_or_build_model
from gear_core.modeling import GeARModel

STAGES = ("full", "towers", "fusion", "decoder", "span_reader")


def check_stage(stage: str, frozen_encoder_layers: int | None) -> None:
    """Refuse an unknown stage, and ``frozen_encoder_layers`` outside the towers stage (before a model loads)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(repr(s) for s in STAGES)}, got {stage!r}")
    if frozen_encoder_layers is not None and stage != "towers":
        raise ValueError(f"frozen_encoder_layers applies to the towers stage, not {stage!r}")


def freeze_for_stage(model: GeARModel, stage: str, frozen_encoder_layers: int | None = None) -> list[nn.Module]:
    """Freeze what ``stage`` leaves as it is. Returns the frozen layers that must also run without dropout: the
    towers stage's bottom layers, a fixed feature extractor as the fusion stage's cached states are (on a CPU,
    dropout is about half the cost of their forward pass)."""
    check_stage(stage, frozen_encoder_layers)
    if stage == "span_reader":  # the reader's own layers and head alone: retrieval and ranking stay as they are
        if model.span_reader is None:
            raise ValueError("the span_reader stage needs a span reader: config_overrides {span_reader_layers: n}")
        model.requires_grad_(False)
        model.span_reader.requires_grad_(True)
    elif stage == "towers":
        return _freeze_all_but_towers(model, frozen_encoder_layers)
    elif stage in ("fusion", "decoder"):  # frozen towers (the fusion encoder still runs the query tower's layers)
        # Tied decoder word embeddings are the query tower's: they stay frozen with it.
        frozen = [model.query_encoder, model.document_encoder, model.retrieval_layers, model.temperature]
        if stage == "decoder":
            frozen.append(model.cross_attention)
        for part in frozen:
            if part is not None:
                part.requires_grad_(False)
    return []


def _freeze_all_but_towers(model: GeARModel, frozen_layers: int | None) -> list[nn.Module]:
    """Only the encoders' layers from ``frozen_layers`` up (and the temperature) learn; ``None``: the span
    reader's shared layers (0 without a reader), so the reader keeps its inputs. A model with retrieval layers
    trains those alone: the encoder stays as the fusion encoder, span reader and decoder read it."""
    config = model.config
    model.requires_grad_(False)
    model.temperature.requires_grad_(True)
    if len(model.retrieval_layers):  # the bi-encoder's own branch learns; the encoder everything else reads stays
        if frozen_layers is not None:
            raise ValueError(
                "frozen_encoder_layers does not apply to a model with retrieval_layers: its encoder stays whole"
            )
        model.retrieval_layers.requires_grad_(True)
        return [model.query_encoder]
    if frozen_layers is None:
        frozen_layers = config.shared_span_reader_layers if model.span_reader is not None else 0
    if not 0 <= frozen_layers < config.num_encoder_layers:
        raise ValueError(f"frozen_encoder_layers must lie in [0, {config.num_encoder_layers - 1}], got {frozen_layers}")
    fixed: list[nn.Module] = []
    for encoder in (model.query_encoder, model.document_encoder):
        if encoder is not None:
            for layer in encoder.encoder.layer[frozen_layers:]:
                layer.requires_grad_(True)
            fixed += [encoder.embeddings, *encoder.encoder.layer[:frozen_layers]]
    return fixed


def load_reader_teacher(
    model: GeARModel,
    path: str | None,
    stage: str,
    reader_start: str,
    distillation_weight: float,
    distillation_temperature: float,
) -> GeARModel | None:
    """The span_reader stage's teacher (frozen, in eval mode), or None; with ``reader_start="teacher"`` the
    student's reader starts as the teacher's first layers and head."""
    if reader_start not in ("model", "teacher"):
        raise ValueError(f"reader_start must be 'model' or 'teacher', got {reader_start!r}")
    if path is None:
        if reader_start == "teacher":
            raise ValueError("reader_start 'teacher' needs a reader_teacher")
        return None
    if stage != "span_reader":
        raise ValueError(f"reader_teacher teaches the span_reader stage, not {stage!r}")
    if not 0 <= distillation_weight <= 1 or not distillation_temperature > 0:
        raise ValueError("distillation_weight must lie in [0, 1] and distillation_temperature be positive")
    teacher = load_or_build_model(path).eval().requires_grad_(False)
    if teacher.span_reader is None:
        raise ValueError(f"the reader_teacher {path} has no span reader")
    if teacher.query_encoder.embeddings.word_embeddings.weight.shape != (
        model.query_encoder.embeddings.word_embeddings.weight.shape
    ):  # both read the inputs the student's tokenizer makes
        raise ValueError(f"the reader_teacher {path} has another vocabulary or width than the model")
    if reader_start == "teacher":
        if teacher.config.shared_span_reader_layers != model.config.shared_span_reader_layers:
            raise ValueError(
                "reader_start 'teacher' needs the teacher's shared layers: "
                f"{teacher.config.shared_span_reader_layers}, not {model.config.shared_span_reader_layers}"
            )
        model.span_reader.start_from(teacher.span_reader)
    return teacher
