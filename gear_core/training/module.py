"""GeARLightningModule: training logic only. The model, its losses and its serving API live in gear_core."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only

from gear_core.data.triples import Triple
from gear_core.evaluation.metrics import mean, recall_at_k
from gear_core.modeling import GeARModel, is_gear_folder
from gear_core.momentum import MomentumEncoder
from gear_core.training.schedule import learning_rate_at, soft_label_weight_at


def load_or_build_model(model_name_or_path: str, config_overrides: dict[str, Any] | None = None) -> GeARModel:
    """A GeAR folder is loaded as is; anything else is treated as a BERT-family encoder to start from."""
    if is_gear_folder(model_name_or_path):
        if config_overrides:
            raise ValueError("config_overrides apply to a fresh model; this path is already a GeAR model")
        # from_pretrained returns a model in eval mode; Lightning keeps submodule modes, so dropout would stay off.
        return GeARModel.from_pretrained(model_name_or_path).train()
    return GeARModel.from_encoder(model_name_or_path, **(config_overrides or {}))


class GeARLightningModule(L.LightningModule):
    """Trains a GeARModel with ``L_CL + alpha * L_LM`` (paper, Section 3.4 and Appendix C).

    Args:
        model_name_or_path: a GeAR folder to continue from, or a BERT-family encoder to start a fresh GeAR.
        config_overrides: GeARConfig fields for a fresh model (e.g. ``shared_encoder: true``).
        learning_rate, warmup_steps, warmup_start_lr, min_lr: AdamW peak rate, linear warm-up from
            ``warmup_start_lr`` over ``warmup_steps``, cosine decay to ``min_lr`` at the last step.
        weight_decay, betas, eps: AdamW settings (biases and LayerNorm weights are not decayed).
        lm_loss_weight: alpha; ``None`` takes the model config's value (0.25). ``0`` trains retrieval only.
        localization_loss_weight: weight of the attention localization loss (beyond the paper); ``None`` takes
            the model config's value (0, the paper's recipe).
        cross_attention_lr_scale: the fusion encoder's cross-attention blocks learn at ``learning_rate`` times
            this (they are new to the encoder; the schedule scales both rates alike).
        decoder_lr_scale: the decoder (all but the word embeddings it shares with the encoder) learns at
            ``learning_rate`` times this: its cross-attention is new, and its layers learn a new (causal) task.
        soft_label_weight: final soft-label weight; ``None`` takes the model config's (0.4).
        soft_label_ramp_epochs: epochs over which the soft-label weight ramps up from 0.
        use_momentum: momentum encoder + queue (ALBEF); off means in-batch negatives and hard labels only.
        export_dir: where the best model (by ``val/score``) is saved with ``save_pretrained``.
    """

    def __init__(
        self,
        model_name_or_path: str,
        config_overrides: dict[str, Any] | None = None,
        learning_rate: float = 1e-5,
        warmup_steps: int = 1000,
        warmup_start_lr: float = 1e-6,
        min_lr: float = 1e-6,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        lm_loss_weight: float | None = None,
        localization_loss_weight: float | None = None,
        cross_attention_lr_scale: float = 1.0,
        decoder_lr_scale: float = 1.0,
        soft_label_weight: float | None = None,
        soft_label_ramp_epochs: float = 2.0,
        use_momentum: bool = True,
        export_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = load_or_build_model(model_name_or_path, config_overrides)
        self.momentum = MomentumEncoder(self.model) if use_momentum else None
        self.best_score = -math.inf
        self._validation_document_embeddings: np.ndarray | None = None
        self._validation_document_index: dict[str, int] = {}

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "use_model"):
            datamodule.use_model(self.model)

    # ---- training ----------------------------------------------------------------------------------------

    def current_soft_label_weight(self, batch_idx: int) -> float:
        if self.momentum is None:
            return 0.0
        final = (
            self.model.config.soft_label_weight
            if self.hparams.soft_label_weight is None
            else self.hparams.soft_label_weight
        )
        batches = max(1, int(self.trainer.num_training_batches)) if self._trainer is not None else 1
        return soft_label_weight_at(
            self.current_epoch + batch_idx / batches, final, self.hparams.soft_label_ramp_epochs
        )

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        soft_label_weight = self.current_soft_label_weight(batch_idx)
        if self.momentum is not None:
            self.momentum.update(self.model)
        out = self.model(
            **batch,
            momentum=self.momentum,
            soft_label_weight=soft_label_weight,
            lm_loss_weight=self.hparams.lm_loss_weight,
            localization_loss_weight=self.hparams.localization_loss_weight,
        )
        if self.momentum is not None:
            self._enqueue(out.momentum_query_embeds, out.momentum_document_embeds, batch["document_ids"])
        size = batch["query_input_ids"].shape[0]
        self.log("train/loss", out.loss, prog_bar=True, batch_size=size)
        self.log("train/contrastive_loss", out.contrastive_loss, batch_size=size)
        if out.lm_loss is not None:
            self.log("train/lm_loss", out.lm_loss, prog_bar=True, batch_size=size)
        if out.localization_loss is not None:
            self.log("train/localization_loss", out.localization_loss, prog_bar=True, batch_size=size)
        self.log("train/temperature", self.model.temperature.detach(), batch_size=size)
        self.log("train/soft_label_weight", soft_label_weight, batch_size=size)
        return out.loss

    @torch.no_grad()
    def _enqueue(self, query_features: torch.Tensor, document_features: torch.Tensor, ids: torch.Tensor) -> None:
        """Every rank's momentum features join the queue, so all ranks keep the same queue (as in ALBEF)."""
        if self.trainer.world_size > 1:
            query_features, document_features, ids = (
                self.all_gather(t).flatten(0, 1) for t in (query_features, document_features, ids)
            )
        self.momentum.queue.enqueue(query_features, document_features, ids)

    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        # (learning-rate scale, decayed?) -> parameters; biases and norms are not decayed. Tied weights are
        # listed once, under their first name (the query encoder's embeddings), so they keep the base rate.
        scales = {"cross_attention.": hp.cross_attention_lr_scale, "decoder.": hp.decoder_lr_scale}
        groups: dict[tuple[float, bool], list[torch.nn.Parameter]] = {}
        for name, parameter in self.model.named_parameters():
            if parameter.requires_grad:
                scale = next((s for prefix, s in scales.items() if name.startswith(prefix)), 1.0)
                groups.setdefault((scale, parameter.ndim >= 2), []).append(parameter)
        optimizer = torch.optim.AdamW(
            [
                {
                    "params": params,
                    "weight_decay": hp.weight_decay if decayed else 0.0,
                    "lr": hp.learning_rate * scale,
                }
                for (scale, decayed), params in sorted(groups.items())
            ],
            lr=hp.learning_rate,
            betas=tuple(hp.betas),
            eps=hp.eps,
            fused=True,  # one kernel per step instead of a loop over tensors (CPU and CUDA)
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))

        def factor(step: int) -> float:
            lr = learning_rate_at(step, total, hp.learning_rate, hp.warmup_steps, hp.warmup_start_lr, hp.min_lr)
            return lr / hp.learning_rate

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- validation: local R@1 and global R@5 on held-out train articles ---------------------------------

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, list):  # validation triples are text; the serving API moves its own tensors
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_validation_epoch_start(self) -> None:
        corpus = getattr(self.trainer.datamodule, "validation_corpus", []) if self.trainer.datamodule else []
        self._validation_document_index = {p.id: i for i, p in enumerate(corpus)}
        self._validation_document_embeddings = (
            self.model.encode_documents([p.context for p in corpus]) if corpus else None
        )
        self._validation_values: dict[str, list[float]] = {"val/local_r1": [], "val/global_r5": []}

    def validation_step(self, batch: list[Triple], batch_idx: int) -> None:
        ranked = self.model.rank_sentences_batch([t.query for t in batch], [t.document for t in batch], top_n=1)
        self._validation_values["val/local_r1"] += [
            recall_at_k([(s.start_char, s.end_char) for s in r], t.gold_spans, 1)
            for r, t in zip(ranked, batch, strict=True)
            if t.gold_spans
        ]
        if self._validation_document_embeddings is not None:
            scores = self.model.encode_queries([t.query for t in batch]) @ self._validation_document_embeddings.T
            top5 = np.argsort(-scores, axis=1)[:, :5]
            gold = [self._validation_document_index.get(t.document_id, -1) for t in batch]
            self._validation_values["val/global_r5"] += [
                recall_at_k(list(row), {g}, 5) for row, g in zip(top5, gold, strict=True)
            ]

    def on_validation_epoch_end(self) -> None:
        means = []
        for name, values in self._validation_values.items():
            # Sums and counts from every rank, so the mean is over all validation questions.
            totals = torch.tensor([sum(values), len(values)], dtype=torch.float64, device=self.device)
            if self.trainer.world_size > 1:
                totals = self.all_gather(totals).sum(dim=0)
            if totals[1] > 0:
                means.append(float(totals[0] / totals[1]))
                self.log(name, means[-1])  # identical on every rank: computed from gathered totals
        if not means:
            return
        score = mean(means)
        self.log("val/score", score, prog_bar=True)
        if score > self.best_score and not self.trainer.sanity_checking:
            self.best_score = score
            self._export()

    @rank_zero_only
    def _export(self) -> None:
        if self.hparams.export_dir:
            self.model.save_pretrained(self.hparams.export_dir)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["gear_best_score"] = self.best_score

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.best_score = checkpoint.get("gear_best_score", -math.inf)
