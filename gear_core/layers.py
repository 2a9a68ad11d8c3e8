"""GeAR's building blocks: the one pooling implementation, masks, and the layers GeARModel adds to its BERT towers.

- ``embed``: mean over real tokens, L2-normalised; used by training, evaluation, the momentum encoder and serving.
- ``run_layers``, ``bottom_states``: a slice of an encoder's layers, and its first layers where a branch leaves it
  (the span reader, the retrieval layers).
- ``CrossAttention``: the block each fusion layer adds; it returns its attention logits when asked (the ranking
  layer), otherwise it runs the fused SDPA kernel.
- ``ReaderLayer``, ``CopyHead``, ``CopySource``, ``copy_mixture_log_probs``: the evidence decoder's reader and
  pointer-generator copying.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertModel
from transformers.models.bert.modeling_bert import BertLayer

# Pooling, masks and attention pooling: shared by every path.


def mean_pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states where ``attention_mask`` is 1 (sentence-transformers' mean pooling)."""
    mask = attention_mask.unsqueeze(-1).to(hidden_states.dtype)
    return (hidden_states * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)


_Result = TypeVar("_Result")


def in_eval_mode(function: Callable[..., _Result]) -> Callable[..., _Result]:
    """``function(model, ...)`` run with the model in eval mode (no dropout), which is then put back as it was. Only a
    model that is training is switched: ``eval()`` and ``train()`` walk every submodule, 2 ms of a 10 ms query on 2
    cores when each call switched."""

    @functools.wraps(function)
    def in_eval(model: nn.Module, *args: Any, **kwargs: Any) -> _Result:
        if not model.training:
            return function(model, *args, **kwargs)
        model.eval()
        try:
            return function(model, *args, **kwargs)
        finally:
            model.train()

    return in_eval


def embed(
    encoder: BertModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    retrieval_layers: Sequence[BertLayer] = (),
) -> torch.Tensor:
    """L2-normalised mean-pooled embeddings: the bi-encoder's representation of a text. ``retrieval_layers``
    (``GeARConfig.retrieval_layers``) take the place of the encoder's last ``len(retrieval_layers)`` layers."""
    if not len(retrieval_layers):
        states = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    else:
        shared = len(encoder.encoder.layer) - len(retrieval_layers)
        hidden, self_mask = bottom_states(encoder, input_ids, attention_mask, shared)
        states = run_layers(retrieval_layers, hidden, self_mask)
    return embed_states(states, attention_mask)


def embed_states(hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``embed`` from token states already computed (a document window's, during sentence ranking)."""
    return F.normalize(mean_pool(hidden_states, attention_mask), dim=-1)


def run_layers(layers: Iterable[BertLayer], hidden: torch.Tensor, self_mask: torch.Tensor) -> torch.Tensor:
    """BERT layers over ``hidden`` (B, L, hidden) with an :func:`additive_mask`: the encoder's forward for a
    slice of its layers (the span reader's shared bottom, the retrieval branch)."""
    for layer in layers:
        hidden = layer.feed_forward_chunk(layer.attention(hidden, self_mask)[0])
    return hidden


def bottom_states(
    encoder: BertModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    num_layers: int,
    token_type_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoder's embeddings and first ``num_layers`` layers, where a branch leaves it (the span reader, the
    retrieval layers): ``(states, additive self-attention mask)``."""
    hidden = encoder.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
    self_mask = additive_mask(attention_mask, hidden.dtype)
    return run_layers(encoder.encoder.layer[:num_layers], hidden, self_mask), self_mask


def additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, L) 0/1 mask -> (B, 1, 1, L) additive mask broadcastable over heads and query positions."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


# ----------------------------------------------------------------------------------------------------------
# The fusion encoder's cross-attention block.


class CrossAttention(nn.Module):
    """Query tokens attend to the document's token states; residual + LayerNorm as in BERT's attention."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float, layer_norm_eps: float) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden size {hidden_size} is not a multiple of {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, hidden_size // num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size)
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.shape[0], x.shape[1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        hidden_states: torch.Tensor,
        document_states: torch.Tensor,
        document_mask: torch.Tensor,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns the new query states and, if asked, the (B, heads, Lq, Ld) attention logits (padding masked).

        Logits rather than weights: their softmax is the attention, and their log-sum-exp says how much the
        query attends to this document window as a whole, which compares windows (``window_weighting``).
        """
        q = self._heads(self.query(hidden_states))
        k = self._heads(self.key(document_states))
        v = self._heads(self.value(document_states))
        dropout = self.dropout.p if self.training else 0.0
        logits = None
        if return_logits:  # explicit softmax: fused kernels do not return weights
            logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim) + document_mask
            context = F.dropout(logits.softmax(dim=-1), dropout, self.training) @ v
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=document_mask, dropout_p=dropout)
        context = context.transpose(1, 2).reshape(hidden_states.shape)
        return self.LayerNorm(hidden_states + self.dropout(self.dense(context))), logits


class ReaderLayer(nn.Module):
    """One layer of the evidence reader (``decoder_reader_layers``): the fusion encoder's layer with the roles
    swapped. The document window's tokens attend to the fused query states (:class:`CrossAttention`), then to
    each other (BERT self-attention), then a feed-forward block, so each token the decoder reads or copies knows
    the question, and what its neighbours made of it (where an answer starts and ends: even one layer does)."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.layer = BertLayer(config)
        self.crossattention = CrossAttention(
            config.hidden_size, config.num_attention_heads, config.attention_probs_dropout_prob, config.layer_norm_eps
        )

    def forward(
        self, states: torch.Tensor, self_mask: torch.Tensor, query_states: torch.Tensor, query_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B, Ld, hidden) document states -> the same, read against ``query_states``; masks are additive."""
        states, _ = self.crossattention(states, query_states, query_mask)
        states = self.layer.attention(states, self_mask)[0]
        return self.layer.feed_forward_chunk(states)


class CopyHead(nn.Module):
    """The pointer of a pointer-generator decoder (See et al., 2017): for each decoder step, logits over the
    document window's tokens (where to copy from) and a gate logit (how much to copy rather than generate)."""

    def __init__(self, hidden_size: int, prior: bool = False, spans: bool = False) -> None:
        super().__init__()
        self.query = nn.Linear(hidden_size, hidden_size)
        self.gate = nn.Linear(2 * hidden_size, 1)
        # The weight of the fusion encoder's token attention in the copy logits (decoder_copy_prior).
        self.prior_weight = nn.Parameter(torch.ones(())) if prior else None
        # The bonus of a token that continues the span just copied (decoder_copy_spans).
        self.span_weight = nn.Parameter(torch.ones(())) if spans else None

    def forward(
        self,
        decoder_states: torch.Tensor,
        document_states: torch.Tensor,
        copy_mask: torch.Tensor,
        token_log_prior: torch.Tensor | None = None,
        previous_tokens: torch.Tensor | None = None,
        document_input_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(copy_logits (B, T, Ld), gate_logits (B, T, 1))``; tokens outside ``copy_mask`` (B, Ld) get no share.
        ``token_log_prior`` (B, Ld), with a prior weight, is added to every step's copy logits; with a span weight,
        step t's logit of document token j gains it when token j - 1 is ``previous_tokens[:, t]`` (the decoder's
        input at t) in ``document_input_ids``."""
        document_states = document_states.to(decoder_states.dtype)
        logits = self.query(decoder_states) @ document_states.transpose(1, 2) / math.sqrt(decoder_states.shape[-1])
        if self.prior_weight is not None:
            if token_log_prior is None:
                raise ValueError("this copy head adds the ranking attention's prior: pass token_log_prior")
            logits = logits + self.prior_weight * token_log_prior[:, None, :].to(logits.dtype)
        if self.span_weight is not None:
            if previous_tokens is None or document_input_ids is None:
                raise ValueError("this copy head continues spans: pass previous_tokens and document_input_ids")
            follows = torch.zeros_like(logits, dtype=torch.bool)
            follows[:, :, 1:] = document_input_ids[:, None, :-1] == previous_tokens[:, :, None]
            logits = logits + self.span_weight * follows.to(logits.dtype)
        logits = logits.masked_fill(~copy_mask[:, None, :], torch.finfo(logits.dtype).min)
        context = logits.softmax(dim=-1) @ document_states
        return logits, self.gate(torch.cat([decoder_states, context], dim=-1))


@dataclass
class CopySource:
    """What a copying decoder copies from, computed once per batch and read at every step: the window's token
    states and ids, which tokens may be copied (words, not padding or special tokens), and the log of the ranking
    attention on each token (``decoder_copy_prior``; None without it)."""

    states: torch.Tensor
    input_ids: torch.Tensor
    copyable: torch.Tensor
    log_prior: torch.Tensor | None

    def select(self, rows: torch.Tensor) -> CopySource:
        """These rows only (generation drops the pairs that have finished)."""
        log_prior = None if self.log_prior is None else self.log_prior[rows]
        return CopySource(self.states[rows], self.input_ids[rows], self.copyable[rows], log_prior)


def copy_mixture_log_probs(
    vocab_logits: torch.Tensor,
    copy_logits: torch.Tensor,
    gate_logits: torch.Tensor,
    document_input_ids: torch.Tensor,
) -> torch.Tensor:
    """(N, V) log p(w) = log(g * softmax(vocab_logits)[w] + (1 - g) * sum_{j: id_j = w} softmax(copy_logits)[j]),
    g = sigmoid(gate_logits), for N decoder positions: ``vocab_logits`` (N, V), ``copy_logits`` (N, Ld),
    ``gate_logits`` (N, 1), ``document_input_ids`` (N, Ld) the window each position copies from. Normalised
    log-probabilities, so cross-entropy over them is their negative log-likelihood."""
    gate = torch.sigmoid(gate_logits.float())
    generated = vocab_logits.float().softmax(dim=-1) * gate
    copied = copy_logits.float().softmax(dim=-1) * (1 - gate)
    return generated.scatter_add(-1, document_input_ids, copied).clamp_min(1e-12).log()
