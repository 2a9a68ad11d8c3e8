"""Momentum distillation helpers (MoCo / ALBEF / BLIP): an EMA copy of the encoders and a feature queue.

They live outside :class:`~gear_core.GeARModel` so a saved model holds only what serving needs; the
training loop owns them and calls them explicitly::

    momentum.update(model)                       # EMA step
    out = model(**batch, momentum=momentum)      # momentum features + queue as candidates
    momentum.queue.enqueue(out.momentum_query_embeds, out.momentum_document_embeds, batch["document_ids"])
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from gear_core.modeling import GeARModel


@torch.no_grad()
def ema_update_(target: nn.Module, source: nn.Module, momentum: float) -> None:
    """In place: ``target = momentum * target + (1 - momentum) * source`` for every parameter."""
    for target_param, source_param in zip(target.parameters(), source.parameters(), strict=True):
        target_param.mul_(momentum).add_(source_param.detach(), alpha=1.0 - momentum)


class FeatureQueue(nn.Module):
    """A fixed-size FIFO ring of (query, document) features and document ids, filled in order."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size < 0:
            raise ValueError("queue size must be >= 0")
        self.size = size
        self.register_buffer("query_features", torch.zeros(size, dim))
        self.register_buffer("document_features", torch.zeros(size, dim))
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_filled", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def enqueue(self, query_features: torch.Tensor, document_features: torch.Tensor, ids: torch.Tensor) -> None:
        """Append a batch, overwriting the oldest entries once full (a batch larger than the queue keeps its tail)."""
        if self.size == 0:
            return
        query_features, document_features, ids = (
            query_features[-self.size :],
            document_features[-self.size :],
            ids[-self.size :],
        )
        n = ids.shape[0]
        slots = (self.pointer + torch.arange(n, device=ids.device)) % self.size
        self.query_features[slots] = query_features.detach().to(self.query_features.dtype)
        self.document_features[slots] = document_features.detach().to(self.document_features.dtype)
        self.ids[slots] = ids.to(self.ids.dtype)
        self.pointer.copy_((self.pointer + n) % self.size)
        self.num_filled.copy_(torch.clamp(self.num_filled + n, max=self.size))

    def contents(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The filled part of the queue: (query features, document features, ids)."""
        n = int(self.num_filled)
        return self.query_features[:n], self.document_features[:n], self.ids[:n]


class MomentumEncoder(nn.Module):
    """EMA copies of a GeAR model's query and document encoders (and retrieval layers), plus the feature queue."""

    def __init__(self, model: GeARModel, momentum: float | None = None, queue_size: int | None = None) -> None:
        super().__init__()
        self.momentum = model.config.momentum if momentum is None else momentum
        self.query_encoder = copy.deepcopy(model.query_encoder).requires_grad_(False)
        self.document_encoder = (
            None if model.document_encoder is None else copy.deepcopy(model.document_encoder).requires_grad_(False)
        )
        self.retrieval_layers = copy.deepcopy(model.retrieval_layers).requires_grad_(False)
        self.eval()  # see train() below
        self.queue = FeatureQueue(
            model.config.queue_size if queue_size is None else queue_size, model.config.hidden_size
        )

    def train(self, mode: bool = True) -> MomentumEncoder:
        # The momentum encoder is a teacher: it always runs without dropout (steadier targets, cheaper forward).
        return super().train(False)

    @torch.no_grad()
    def update(self, model: GeARModel) -> None:
        """One EMA step towards the model's current encoders."""
        ema_update_(self.query_encoder, model.query_encoder, self.momentum)
        if self.document_encoder is not None:
            ema_update_(self.document_encoder, model.document_encoder, self.momentum)
        ema_update_(self.retrieval_layers, model.retrieval_layers, self.momentum)

    @torch.no_grad()
    def encode(
        self,
        query_input_ids: torch.Tensor,
        query_attention_mask: torch.Tensor,
        document_input_ids: torch.Tensor,
        document_attention_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Momentum embeddings of a batch, pooled exactly as the model pools."""
        from gear_core.layers import embed

        document_encoder = self.query_encoder if self.document_encoder is None else self.document_encoder
        return (
            embed(self.query_encoder, query_input_ids, query_attention_mask, self.retrieval_layers),
            embed(document_encoder, document_input_ids, document_attention_mask, self.retrieval_layers),
        )
