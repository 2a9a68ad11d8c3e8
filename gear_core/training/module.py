"""GeARLightningModule: training logic only. The model, its losses and its serving API live in gear_core."""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only

from gear_core.data.triples import Triple
from gear_core.evaluation.metrics import exact_match, mean, recall_at_k, token_f1
from gear_core.loading import load_or_build_model
from gear_core.momentum import MomentumEncoder
from gear_core.training.resume import (
    RNG_SEED_KEY,
    check_resume,
    loader_states,
    restore_loader_position,
    seed_batch,
)
from gear_core.training.schedule import learning_rate_at, soft_label_weight_at
from gear_core.training.stages import check_stage, freeze_for_stage, load_reader_teacher


class GeARLightningModule(L.LightningModule):
    """Trains a GeARModel with ``L_CL + alpha * L_LM`` (paper, Section 3.4 and Appendix C).

    Args:
        model_name_or_path: a GeAR folder to continue from, or a BERT-family encoder to start a fresh GeAR.
        config_overrides: GeARConfig fields for a fresh model (e.g. ``shared_encoder: true``), or changes to a
            GeAR folder's config (e.g. ``decoder_memory: query_and_document``, ``decoder_copy: true``).
        learning_rate, warmup_steps, warmup_start_lr, min_lr: AdamW peak rate, linear warm-up from
            ``warmup_start_lr`` over ``warmup_steps``, cosine decay to ``min_lr`` at the last step.
        weight_decay, betas, eps: AdamW settings (biases and LayerNorm weights are not decayed).
        lm_loss_weight: alpha; ``None`` takes the model config's value (0.25). ``0`` trains retrieval only.
        localization_loss_weight: weight of the attention localization loss (beyond the paper); ``None`` takes
            the model config's value (0, the paper's recipe).
        teacher_weight: w in ``localization = (1 - w) * gold + w * teacher``, the sentence teacher's share of the
            cross-attention's target (with ``--data.sentence_teacher``; 0 = gold only).
        lexical_localization: the gold term of the localization loss trains the ranking serving uses, the attention
            mixed with BM25 at the model's ``ranking_lexical_weight`` and ``ranking_lexical_temperature``, rather
            than the attention alone (:func:`~gear_core.losses.localization_loss`): what BM25 already ranks first
            adds little gradient. Needs ``ranking_lexical_weight > 0``.
        cross_attention_lr_scale: the fusion encoder's cross-attention blocks learn at ``learning_rate`` times
            this (they are new to the encoder; the schedule scales both rates alike).
        decoder_lr_scale: the decoder (all but the word embeddings it shares with the encoder) and its copy head
            learn at ``learning_rate`` times this: its cross-attention is new, and its layers learn a new (causal)
            task.
        reader_lr_scale: the reader (``decoder_reader_layers``) and its output projection learn at
            ``learning_rate`` times this; ``None`` takes ``decoder_lr_scale``. A reader added to a trained decoder
            is new while the decoder is not: at the decoder's rate it stays near its zero start, and raising the
            decoder's rate to match disturbs what the decoder already does.
        soft_label_weight: final soft-label weight; ``None`` takes the model config's (0.4).
        soft_label_ramp_epochs: epochs over which the soft-label weight ramps up from 0.
        use_momentum: momentum encoder + queue (ALBEF); off means in-batch negatives and hard labels only.
        stage: ``"full"`` trains every part with every loss (the paper's step). ``"towers"`` trains the query and
            document towers alone (the bi-encoder: contrastive loss, momentum and queue), everything else frozen
            and unused, from ``frozen_encoder_layers`` up; follow it with the fusion stage, which brings the
            cross-attention and decoder to the new towers. With ``retrieval_layers`` (config) it trains the
            bi-encoder's own layers alone: sentence ranking and evidence stay exactly as they were, no fusion stage
            follows. ``"fusion"`` freezes the query and
            document towers: the document tower's token states are computed once and cached (the data module
            does it), and each step trains the cross-attention blocks and the decoder (localization and LM
            losses) over a query-sized pass; with the towers frozen the contrastive loss is constant and skipped.
            Train the bi-encoder with ``"full"`` first (``lm_loss_weight: 0`` and no localization loss make it a
            bi-encoder step), then the fusion stage. ``"decoder"`` is the fusion stage with the cross-attention
            frozen too: only the decoder (its copy head and reader, when configured) learns, from the LM loss, so
            sentence ranking stays exactly as it was. ``"span_reader"`` trains the span reader's own layers and head
            alone (everything else frozen) on question-answer triples, from the span loss
            (:func:`~gear_core.losses.span_loss`); ``lm_loss_weight`` and the other loss weights do not apply.
        frozen_encoder_layers: the towers stage leaves the encoders' embeddings and this many bottom layers as they
            are (the top ones learn). ``None``: the span reader's shared layers (``span_reader_shared_layers``; 0
            without a reader), so the reader keeps its inputs and needs no retraining; a smaller value retrains
            layers the reader reads through. On a CPU the frozen layers also cost no backward pass. Not with
            ``retrieval_layers``, which leave the whole encoder frozen.
        score_metrics: the validation metrics that join ``val/score`` (which picks the exported model), by name
            suffix, e.g. ``[global_r5]`` for the towers stage; ``None``: all of them.
        reader_teacher: the ``span_reader`` stage also learns from this GeAR folder's span reader (frozen, outside
            checkpoints): ``(1 - distillation_weight) * span loss + distillation_weight * distillation loss`` at
            ``distillation_temperature`` (:func:`~gear_core.losses.span_distillation_loss`). How a cheaper reader
            (fewer layers) keeps a larger one's answers and its abstentions.
        reader_start: ``"model"``: the reader starts as the loaded model's (or afresh, for a new reader shape);
            ``"teacher"``: as the teacher's first layers and its head (:meth:`SpanReader.start_from
            <gear_core.span_reader.SpanReader.start_from>`; the same shared layers, no more own layers).
        validate_generation: also generate an answer for each validation question whose triple is question-answer
            and log ``val/<set>/answer_f1`` and ``answer_em`` (SQuAD's metrics against the triple's target); they
            join ``val/score``.
        export_dir: where the best model (by ``val/score``) is saved with ``save_pretrained``.
        validate_before_training: run the validation loop once before the first training step and log it at step
            0 (Lightning's ``num_sanity_val_steps`` logs nothing), so a run's report has its starting point from
            the same validation questions as its later rows. Not repeated when a run resumes.
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
        teacher_weight: float = 0.0,
        lexical_localization: bool = False,
        cross_attention_lr_scale: float = 1.0,
        decoder_lr_scale: float = 1.0,
        reader_lr_scale: float | None = None,
        soft_label_weight: float | None = None,
        soft_label_ramp_epochs: float = 2.0,
        use_momentum: bool = True,
        stage: Literal["full", "towers", "fusion", "decoder", "span_reader"] = "full",
        frozen_encoder_layers: int | None = None,
        score_metrics: list[str] | None = None,
        export_dir: str | None = None,
        validate_before_training: bool = False,
        validate_generation: bool = False,
        reader_teacher: str | None = None,
        distillation_weight: float = 0.5,
        distillation_temperature: float = 2.0,
        reader_start: Literal["model", "teacher"] = "model",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_stage(stage, frozen_encoder_layers)
        # A loaded model comes in eval mode, and Lightning keeps submodule modes: dropout would stay off.
        self.model = load_or_build_model(model_name_or_path, config_overrides).train()
        self._fixed_layers = freeze_for_stage(self.model, stage, frozen_encoder_layers)
        self.train()
        # Held outside the module tree: its weights are the teacher folder's, so checkpoints and the optimizer
        # leave them out (on_fit_start moves it to the run's device).
        self.__dict__["reader_teacher"] = load_reader_teacher(
            self.model, reader_teacher, stage, reader_start, distillation_weight, distillation_temperature
        )
        if lexical_localization and not self.model.config.ranking_lexical_weight > 0:
            raise ValueError("lexical_localization needs a model with ranking_lexical_weight > 0 (config_overrides)")
        self.momentum = MomentumEncoder(self.model) if use_momentum and stage in ("full", "towers") else None
        self.best_score = -math.inf

    def train(self, mode: bool = True) -> GeARLightningModule:
        super().train(mode)
        for layer in getattr(self, "_fixed_layers", []):  # frozen feature layers run without dropout (stages.py)
            layer.eval()
        return self

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "use_model"):
            datamodule.use_model(
                self.model,
                cached_document_states=self.hparams.stage in ("fusion", "decoder"),
                span_reader=self.hparams.stage == "span_reader",
                lexical_temperature=(
                    self.model.config.ranking_lexical_temperature if self.hparams.lexical_localization else None
                ),
            )

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
        if "reader_input_ids" in batch:
            return self._span_reader_step(batch)
        if "document_states" in batch:
            return self._fusion_step(batch)
        soft_label_weight = self.current_soft_label_weight(batch_idx)
        if self.momentum is not None:
            self.momentum.update(self.model)
        towers = self.hparams.stage == "towers"  # the bi-encoder alone: the decoder and fusion do not run
        out = self.model(
            **batch,
            momentum=self.momentum,
            soft_label_weight=soft_label_weight,
            lm_loss_weight=0.0 if towers else self.hparams.lm_loss_weight,
            localization_loss_weight=0.0 if towers else self.hparams.localization_loss_weight,
            teacher_weight=self.hparams.teacher_weight,
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

    def _span_reader_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The span loss on the gold spans, mixed with the teacher's distribution when there is a teacher."""
        teacher_logits = None
        if self.reader_teacher is not None:
            with torch.no_grad():
                teacher_logits = self.reader_teacher.span_logits(
                    batch["reader_input_ids"], batch["reader_attention_mask"], batch["reader_token_type_ids"]
                )
        loss, distillation = self.model.span_reader_losses(
            **batch,
            teacher_logits=teacher_logits,
            distillation_temperature=self.hparams.distillation_temperature,
        )
        size = batch["reader_input_ids"].shape[0]
        self.log("train/span_loss", loss, prog_bar=True, batch_size=size)
        if distillation is None:
            return loss
        self.log("train/distillation_loss", distillation, prog_bar=True, batch_size=size)
        weight = self.hparams.distillation_weight
        return (1 - weight) * loss + weight * distillation

    def _fusion_step(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The fusion stage: localization and LM losses over cached document states (no contrastive loss)."""
        alpha, beta = self.model.loss_weights(self.hparams.lm_loss_weight, self.hparams.localization_loss_weight)
        lm, localization = self.model.fusion_losses(
            **batch, lm_loss_weight=alpha, localization_loss_weight=beta, teacher_weight=self.hparams.teacher_weight
        )
        if lm is None and localization is None:
            raise ValueError("the fusion stage trains nothing with lm_loss_weight = localization_loss_weight = 0")
        terms = [w * loss for w, loss in ((alpha, lm), (beta, localization)) if loss is not None]
        loss = torch.stack(terms).sum()
        size = batch["query_input_ids"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        if lm is not None:
            self.log("train/lm_loss", lm, prog_bar=True, batch_size=size)
        if localization is not None:
            self.log("train/localization_loss", localization, prog_bar=True, batch_size=size)
        return loss

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
        reader_scale = hp.decoder_lr_scale if hp.reader_lr_scale is None else hp.reader_lr_scale
        scales = {
            "cross_attention.": hp.cross_attention_lr_scale,
            "decoder.": hp.decoder_lr_scale,
            "copy_head.": hp.decoder_lr_scale,
            "reader.": reader_scale,
            "reader_output.": reader_scale,
        }
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
            # One kernel per step instead of a loop over tensors; but Lightning refuses to clip the gradients of a
            # fused optimizer under mixed precision (it would unscale them itself), so bf16-mixed runs unfused.
            fused="mixed" not in str(self.trainer.precision),
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))

        def factor(step: int) -> float:
            lr = learning_rate_at(step, total, hp.learning_rate, hp.warmup_steps, hp.warmup_start_lr, hp.min_lr)
            return lr / hp.learning_rate

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- validation: local R@1 (and global R@5) on each held-out source ------------------------------------

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, list):  # validation triples are text; the serving API moves its own tensors
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _validation_sets(self) -> list[Any]:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        return list(getattr(datamodule, "validation_sets", [])) if datamodule is not None else []

    def on_validation_epoch_start(self) -> None:
        self._validation_corpora: list[tuple[np.ndarray | None, dict[str, int]]] = []
        for validation_set in self._validation_sets():
            texts = validation_set.corpus_texts
            embeddings = self.model.encode_documents(texts) if texts else None
            self._validation_corpora.append((embeddings, {d: i for i, d in enumerate(validation_set.corpus_ids)}))
        self._validation_values: dict[str, list[float]] = {}

    def validation_step(self, batch: list[Triple], batch_idx: int, dataloader_idx: int = 0) -> None:
        sets = self._validation_sets()
        name = sets[dataloader_idx].name if sets else "squad"
        ranked = self.model.rank_sentences_batch([t.query for t in batch], [t.document for t in batch], top_n=1)
        self._validation_values.setdefault(f"val/{name}/local_r1", []).extend(
            recall_at_k([(s.start_char, s.end_char) for s in r], t.gold_spans, 1)
            for r, t in zip(ranked, batch, strict=True)
            if t.gold_spans
        )
        if self.hparams.validate_generation:
            answered = [t for t in batch if t.kind == "qa"]
            if answered:
                generated = self.model.generate_batch([t.query for t in answered], [t.document for t in answered])
                for metric, values in (("answer_f1", token_f1), ("answer_em", exact_match)):
                    self._validation_values.setdefault(f"val/{name}/{metric}", []).extend(
                        values(g, [t.target]) for g, t in zip(generated, answered, strict=True)
                    )
        embeddings, index = self._validation_corpora[dataloader_idx] if sets else (None, {})
        if embeddings is not None:
            scores = self.model.encode_queries([t.query for t in batch]) @ embeddings.T
            top5 = np.argsort(-scores, axis=1)[:, :5]
            gold = [index.get(t.document_id, -1) for t in batch]
            self._validation_values.setdefault(f"val/{name}/global_r5", []).extend(
                recall_at_k(list(row), {g}, 5) for row, g in zip(top5, gold, strict=True)
            )

    def on_validation_epoch_end(self) -> None:
        means = []
        suffixes = self.hparams.score_metrics
        for name, values in sorted(self._validation_values.items()):
            # Sums and counts from every rank, so the mean is over all validation questions.
            totals = torch.tensor([sum(values), len(values)], dtype=torch.float64, device=self.device)
            if self.trainer.world_size > 1:
                totals = self.all_gather(totals).sum(dim=0)
            if totals[1] > 0:
                value = float(totals[0] / totals[1])
                if suffixes is None or name.endswith(tuple(suffixes)):
                    means.append(value)
                # identical on every rank (gathered totals); logged once, not per dataloader
                self.log(name, value, add_dataloader_idx=False)
        if not means:
            return
        score = mean(means)
        self.log("val/score", score, prog_bar=True, add_dataloader_idx=False)
        if score > self.best_score and not self.trainer.sanity_checking:
            self.best_score = score
            self._export()

    @rank_zero_only
    def _export(self) -> None:
        if self.hparams.export_dir and not self.trainer.fast_dev_run:
            self.model.save_pretrained(self.hparams.export_dir)

    def on_fit_start(self) -> None:
        if self.reader_teacher is not None:
            self.reader_teacher.to(self.device)
        # A dry run (--trainer.fast_dev_run) checks the pipeline; it must not leave a model or checkpoints behind
        # (Lightning still writes last.ckpt: the smoke test left 570 MB in runs/).
        if self.trainer.fast_dev_run:
            for callback in self.trainer.checkpoint_callbacks:
                callback.save_top_k, callback.save_last = 0, False

    # ---- checkpoints and exact resumption (see gear_core/training/resume.py) ---------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["gear_best_score"] = self.best_score
        checkpoint[RNG_SEED_KEY] = self._rng_seed()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.best_score = checkpoint.get("gear_best_score", -math.inf)
        self._gear_rng_seed = checkpoint.get(RNG_SEED_KEY)
        self._gear_loader_states = loader_states(checkpoint)
        self._gear_check_resume = True

    def _rng_seed(self) -> int:
        """The run's seed for per-batch random streams: the global seed at its first batch, the same on every rank."""
        if getattr(self, "_gear_rng_seed", None) is None:
            seed = torch.initial_seed() % 2**63
            if self._trainer is not None and self.trainer.world_size > 1:
                seed = int(self.trainer.strategy.broadcast(seed, src=0))
            self._gear_rng_seed = seed
        return self._gear_rng_seed

    def on_train_start(self) -> None:
        trainer = self.trainer
        restore_loader_position(trainer, getattr(self, "_gear_loader_states", []))  # see resume.py
        self._gear_loader_states = []
        if not self.hparams.validate_before_training or trainer.global_step > 0 or trainer.ckpt_path is not None:
            return
        if not trainer.enable_validation:
            return
        # The validation Lightning runs between training batches, here before the first one (logged at step 0).
        val_loop = trainer.fit_loop.epoch_loop.val_loop
        trainer.validating = True
        if trainer.val_dataloaders is None:
            val_loop.setup_data()
        val_loop.run()
        trainer.training = True

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Every batch draws its dropout masks (and any other random numbers) from a stream seeded by its place in
        # training, so a run resumed from any checkpoint takes the same steps as the uninterrupted run.
        if getattr(self, "_gear_check_resume", False):  # the first batch after on_load_checkpoint
            self._gear_check_resume = False
            check_resume(self.trainer, self._gear_rng_seed, batch_idx)
        seed_batch(self._rng_seed(), self.current_epoch, batch_idx, self.global_rank)
