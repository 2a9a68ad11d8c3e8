"""Training: LightningModule, DataModule, collator, schedules and the ``gear train`` entry."""

from gear_core.loading import load_or_build_model
from gear_core.training.collator import TripleCollator, document_key
from gear_core.training.datamodule import EpochShuffleSampler, GeARDataModule
from gear_core.training.module import GeARLightningModule
from gear_core.training.schedule import learning_rate_at, soft_label_weight_at

__all__ = [
    "EpochShuffleSampler",
    "GeARDataModule",
    "GeARLightningModule",
    "TripleCollator",
    "document_key",
    "learning_rate_at",
    "load_or_build_model",
    "soft_label_weight_at",
]
