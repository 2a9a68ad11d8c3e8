"""The span reader: evidence that answers, read from the ranking's best sentences.

Why a second reader: the document tower is query-blind, so the decoder that reads its states cannot tell where
inside a sentence an answer starts and ends. A cross-encoder over ``[CLS] question [SEP] sentences [SEP]`` can
(BERT's SQuAD reader, Devlin et al., 2019): every token sees the question. It reads only the ranking's few best
sentences, so it stays cheap, and its answer is a span of the document, cited with exact character offsets.

Shape (``GeARConfig.span_reader_layers`` = n): the towers' embeddings and their first ``L - n`` layers (or
``span_reader_shared_layers``, fewer for a cheaper reader), shared (no weights of its own, frozen in the
``span_reader`` training stage so retrieval and ranking never change), then ``n`` layers of its own (started as the
encoder's layers that follow the shared ones) and a start/end head. Abstaining is reading
``[CLS]`` (SQuAD 2.0's null answer); an answer's ``support`` is the probability of its span against the null
answer (:func:`best_spans`), and below ``GeARConfig.span_reader_min_support`` the reader abstains.

This module holds the pure parts: building the reader's input from chosen sentences, the token <-> character
rule, and choosing the best span. :class:`~gear_core.modeling.GeARModel` runs the network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch import nn
from transformers import BertConfig, PreTrainedTokenizerBase
from transformers.models.bert.modeling_bert import BertLayer

from gear_core.layers import run_layers
from gear_core.losses import span_distillation_loss, span_loss
from gear_core.text import Sentence

if TYPE_CHECKING:
    from gear_core.modeling import GeARModel

#: What joins the chosen sentences in the reader's input (the characters between them are not the document's).
SEPARATOR = " "


class SpanReader(nn.Module):
    """The reader's own top layers and its start/end head (the shared bottom runs in the model)."""

    def __init__(self, config: BertConfig, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(num_layers))
        self.span_head = nn.Linear(config.hidden_size, 2)

    def forward(self, hidden: torch.Tensor, self_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, L, hidden) states after the shared layers and an additive mask -> start and end logits (B, L)."""
        start, end = self.span_head(run_layers(self.layers, hidden, self_mask)).float().unbind(dim=-1)
        return start, end

    @torch.no_grad()
    def start_from(self, other: SpanReader) -> None:
        """Take ``other``'s first layers and its head: a smaller reader cut from a trained one keeps most of what
        it reads (v1.6's first 3 of 4 layers: validation EM 52.0 before any training, v1.6 60.7), then learns
        from it (:func:`~gear_core.losses.span_distillation_loss`)."""
        if len(self.layers) > len(other.layers):
            raise ValueError(f"a reader of {len(self.layers)} layers cannot start from one of {len(other.layers)}")
        for mine, theirs in zip(self.layers, other.layers, strict=False):
            mine.load_state_dict(theirs.state_dict())
        self.span_head.load_state_dict(other.span_head.state_dict())


@dataclass(frozen=True)
class ReaderContext:
    """The text the reader reads for one document: chosen sentences joined by :data:`SEPARATOR`, and where each
    came from. ``pieces[i] = (context_start, document_start, length)``."""

    text: str
    pieces: tuple[tuple[int, int, int], ...]

    @classmethod
    def of(cls, sentences: Sequence[Sentence]) -> ReaderContext:
        """The context of ``sentences`` in the order given (the ranking's: the best one is never cut off)."""
        parts, pieces, at = [], [], 0
        for sentence in sentences:
            if parts:
                parts.append(SEPARATOR)
                at += len(SEPARATOR)
            parts.append(sentence.text)
            pieces.append((at, sentence.start_char, len(sentence.text)))
            at += len(sentence.text)
        return cls("".join(parts), tuple(pieces))

    def to_document(self, start: int, end: int) -> tuple[int, int] | None:
        """The document span of context characters ``[start, end)``: its first and last characters mapped through
        the pieces holding them (a span across two sentences covers the document between them, which is the
        document's own text). None if either end lies in a separator or outside the context."""
        first, last = self._document_char(start), self._document_char(end - 1)
        if first is None or last is None or last < first:
            return None
        return first, last + 1

    def to_context(self, start: int, end: int) -> tuple[int, int] | None:
        """The context span of document characters ``[start, end)`` when one piece holds all of it, else None."""
        for context_start, document_start, length in self.pieces:
            if document_start <= start and end <= document_start + length:
                return context_start + start - document_start, context_start + end - document_start
        return None

    def _document_char(self, char: int) -> int | None:
        for context_start, document_start, length in self.pieces:
            if context_start <= char < context_start + length:
                return document_start + char - context_start
        return None


@dataclass
class ReaderInputs:
    """A tokenised batch of (question, context) pairs: the tensors the reader reads, each token's ``offsets`` in
    its context (characters; (0, 0) for special and question tokens) and ``candidates``, the tokens an answer may
    start or end on: ``[CLS]`` (the null answer) and the context's tokens."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: torch.Tensor
    offsets: np.ndarray  # (B, L, 2)
    candidates: torch.Tensor  # (B, L) bool

    def answer_tokens(self, row: int, start: int, end: int) -> tuple[int, int]:
        """The (first, last) tokens covering context characters ``[start, end)`` of ``row``; (0, 0), the null
        answer, when the truncated input does not hold all of it."""
        offsets, candidates = self.offsets[row], self.candidates[row].numpy()
        inside = candidates & (offsets[:, 1] > offsets[:, 0])
        starts = np.flatnonzero(inside & (offsets[:, 0] <= start) & (offsets[:, 1] > start))
        ends = np.flatnonzero(inside & (offsets[:, 0] < end) & (offsets[:, 1] >= end))
        if not len(starts) or not len(ends) or ends[0] < starts[0]:
            return 0, 0
        return int(starts[0]), int(ends[0])


def encode_reader_inputs(
    tokenizer: PreTrainedTokenizerBase, questions: Sequence[str], contexts: Sequence[str], max_length: int
) -> ReaderInputs:
    """``[CLS] question [SEP] context [SEP]`` for each pair, cut to ``max_length`` tokens (the longer part first:
    the context, whose best sentence comes first). Training and serving both tokenise here."""
    encoded = tokenizer(
        list(questions),
        list(contexts),
        truncation="longest_first",
        max_length=max_length,
        padding=True,
        return_offsets_mapping=True,
        return_token_type_ids=True,
        return_tensors="np",
    )
    offsets = encoded["offset_mapping"].astype(np.int64)
    candidates = np.zeros(offsets.shape[:2], dtype=bool)
    for row in range(len(questions)):
        sequence = np.array([s == 1 for s in encoded.sequence_ids(row)], dtype=bool)
        candidates[row] = sequence
        offsets[row, ~sequence] = 0
    candidates[:, 0] = True  # [CLS]: the null answer
    return ReaderInputs(
        torch.from_numpy(encoded["input_ids"].astype(np.int64)),
        torch.from_numpy(encoded["attention_mask"].astype(np.int64)),
        torch.from_numpy(encoded["token_type_ids"].astype(np.int64)),
        offsets,
        torch.from_numpy(candidates),
    )


class BestSpans(NamedTuple):
    """:func:`best_spans`' answer for a batch: tensors of shape (B,)."""

    start: torch.Tensor  # the best non-null span's first token (0 when the row has no context token)
    end: torch.Tensor  # its last token
    probability: torch.Tensor  # its probability among every span and the null answer
    null_probability: torch.Tensor  # the null answer's
    support: torch.Tensor  # the span against the null answer alone: sigmoid(span score - null score)


def best_spans(
    start_logits: torch.Tensor, end_logits: torch.Tensor, candidates: torch.Tensor, max_answer_tokens: int
) -> BestSpans:
    """The best answer span of each row, and how likely the reader finds it.

    A span ``(i, j)`` of candidate tokens other than ``[CLS]``, with ``i <= j < i + max_answer_tokens``, scores
    ``start[i] + end[j]``; the null answer scores ``start[0] + end[0]``. A softmax over all of them (the null answer
    included) gives each its probability. ``support`` weighs the best span against the null answer alone
    (SQuAD 2.0's abstain margin, as a probability): spans that overlap the best one share its probability (a
    sure answer of uncertain extent has a small one), but not its support. Measured on the validation sources,
    it keeps answers in the passage that holds them and drops those in passages that do not far better than the
    probability (``benchmarks/results/span_reader_evidence.md``). A row with no context token gets (0, 0),
    probability and support 0.
    """
    scores = start_logits[:, :, None] + end_logits[:, None, :]  # (B, L, L): start i, end j
    length = scores.shape[1]
    positions = torch.arange(length, device=scores.device)
    offset = positions[None, :] - positions[:, None]  # j - i
    shape = (offset >= 0) & (offset < max_answer_tokens)
    tokens = candidates.clone()
    tokens[:, 0] = False
    allowed = shape[None] & tokens[:, :, None] & tokens[:, None, :]
    spans = scores.masked_fill(~allowed, -torch.inf)
    null = scores[:, 0, 0]
    normaliser = torch.logsumexp(torch.cat([spans.flatten(1), null[:, None]], dim=1), dim=1)
    best, flat = spans.flatten(1).max(dim=1)
    probability = torch.exp(best - normaliser).nan_to_num(0.0)
    support = torch.sigmoid(best - null).nan_to_num(0.0)  # sigmoid(-inf) is 0 already; NaN only from bad logits
    start, end = flat // length, flat % length
    none = ~allowed.flatten(1).any(dim=1)
    start, end = start.masked_fill(none, 0), end.masked_fill(none, 0)
    return BestSpans(start, end, probability, torch.exp(null - normaliser), support)


def span_reader_losses(
    model: GeARModel,
    reader_input_ids: torch.Tensor,
    reader_attention_mask: torch.Tensor,
    reader_token_type_ids: torch.Tensor,
    reader_candidates: torch.Tensor,
    start_positions: torch.Tensor,
    end_positions: torch.Tensor,
    teacher_logits: tuple[torch.Tensor, torch.Tensor] | None = None,
    distillation_temperature: float = 2.0,
    **_: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``model``'s span reader's training losses on a batch of the span-reader collator: the span loss on the gold
    tokens (:func:`~gear_core.losses.span_loss`; 0 positions are the null answer) and, given a teacher's
    ``(start, end)`` logits for the same inputs, the distillation loss
    (:func:`~gear_core.losses.span_distillation_loss`), else None."""
    start, end = model.span_logits(reader_input_ids, reader_attention_mask, reader_token_type_ids)
    gold = span_loss(start, end, start_positions, end_positions, reader_candidates)
    if teacher_logits is None:
        return gold, None
    return gold, span_distillation_loss(start, end, *teacher_logits, reader_candidates, distillation_temperature)
