"""Rules the evidence decoder's greedy search follows, as small tensor helpers (no model, no tokenizer calls).

- ``SpanConstraint``: keep the output a contiguous span of the document window. A small decoder trained on a CPU
  budget glues word pieces from different places ("speakerit mahajanjan") and misspells what it means to copy
  ("pedagygy"); evidence is meant to be quoted from the document anyway, so the search only ever chooses among
  the tokens that continue a span it has already started, and it starts and stops at word boundaries.
- ``choose_sentence``: quote from one of the ranking's best sentences, picked by the ranking and by where the
  decoder would begin an answer (``GeARConfig.generation_decoder_vote``). The ranking alone misses the answer's
  sentence when two sentences are close; the decoder's first step reads the query and the document too.
- ``penalize_query_tokens``: lower the score of the query's own words. Asked "What is a course of study
  called?", the decoder likes to repeat "course of study"; the answer is the part of the document the question
  does not already say. Only for questions: a keyword query's evidence is a sentence that contains its words.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

# Question-style queries: a question mark, or a question word or auxiliary verb anywhere ("at present who is ...").
_QUESTION_WORDS = re.compile(
    r"\?|\b(who|whom|whose|what|which|when|where|why|how|is|are|was|were|do|does|did|can|could|should|would|will|"
    r"has|have|had)\b",
    re.IGNORECASE,
)


def is_question(query: str) -> bool:
    """Whether ``query`` reads as a question (a question mark, or a question word or auxiliary verb) rather
    than keywords ("eiffel tower height"); the query-word penalty applies to questions only."""
    return _QUESTION_WORDS.search(query) is not None


@dataclass
class SpanConstraint:
    """Which tokens may come next if the output is to stay a span of the document window.

    ``document_ids`` (B, Ld) the window's token ids, ``copyable`` (B, Ld) the positions that may be quoted (words,
    not padding or special tokens), ``word_start`` (B, Ld) the positions that begin a word (not a "##" piece).
    ``ends`` (B, Ld) marks the positions where the output so far ends, as a span of the window (None before
    the first token).
    """

    document_ids: torch.Tensor
    copyable: torch.Tensor
    word_start: torch.Tensor
    ends: torch.Tensor | None = None

    def allowed(self, vocab_size: int, end_token_id: int) -> torch.Tensor:
        """(B, V) bool: the first token of a word (first step), else the token after any position where the
        output ends, and ``end_token_id`` where that position ends a word. A row with nothing allowed may only
        end."""
        if self.ends is None:
            candidates = self.copyable & self.word_start
        else:
            candidates = torch.zeros_like(self.copyable)
            candidates[:, 1:] = self.ends[:, :-1] & self.copyable[:, 1:]
        allowed = _any_at(self.document_ids, candidates, vocab_size)
        if self.ends is not None:
            # A word ends where the next position does not continue it (a "##" piece).
            next_starts = torch.ones_like(self.ends)
            next_starts[:, :-1] = ~self.copyable[:, 1:] | self.word_start[:, 1:]
            allowed[:, end_token_id] = (self.ends & next_starts).any(dim=1)
        allowed[~allowed.any(dim=1), end_token_id] = True
        return allowed

    def advance(self, tokens: torch.Tensor) -> SpanConstraint:
        """The constraint after appending ``tokens`` (B,) to each row's output."""
        matches = self.copyable & (self.document_ids == tokens[:, None])
        if self.ends is None:
            ends = matches & self.word_start
        else:
            ends = torch.zeros_like(matches)
            ends[:, 1:] = self.ends[:, :-1] & matches[:, 1:]
        return SpanConstraint(self.document_ids, self.copyable, self.word_start, ends)

    def select(self, rows: torch.Tensor) -> SpanConstraint:
        """These rows only (generation drops the pairs that have finished)."""
        ends = None if self.ends is None else self.ends[rows]
        return SpanConstraint(self.document_ids[rows], self.copyable[rows], self.word_start[rows], ends)


def choose_sentence(
    first_scores: torch.Tensor,
    document_ids: torch.Tensor,
    startable: torch.Tensor,
    token_rank: torch.Tensor,
    log_shares: torch.Tensor,
    weight: float,
) -> torch.Tensor:
    """(B,) the rank (0: the ranking's best) of the sentence each row's quote comes from: the highest
    ``log_shares[r] + weight * (the best first-step score of a position where a quote may start in sentence r)``.

    ``first_scores`` (B, V) the decoder's first-step scores, ``document_ids`` (B, Ld) the window's token ids,
    ``startable`` (B, Ld) where a quote may begin, ``token_rank`` (B, Ld) each position's sentence rank (-1: none),
    ``log_shares`` (B, n) the log of each of the ``n`` best sentences' ranking share. A sentence with no place to
    start is never chosen; a row with none keeps rank 0.
    """
    position_scores = first_scores.gather(1, document_ids)
    best_start = torch.stack(
        [
            position_scores.masked_fill(~(startable & (token_rank == rank)), -math.inf).amax(dim=1)
            for rank in range(log_shares.shape[1])
        ],
        dim=1,
    )
    total = (log_shares + weight * best_start).masked_fill(torch.isinf(best_start), -math.inf)
    chosen = total.argmax(dim=1)  # the first (best-ranked) of equals
    chosen[torch.isinf(total).all(dim=1)] = 0
    return chosen


def penalize_query_tokens(
    scores: torch.Tensor, query_ids: torch.Tensor, query_words: torch.Tensor, penalty: float
) -> torch.Tensor:
    """``scores`` (B, V) minus ``penalty`` at every token id that is one of the row's query words: ``query_ids``
    (B, Lq) and ``query_words`` (B, Lq) bool (which of those positions to penalise; False for padding, special
    tokens, and every position of a row that is not a question)."""
    hit = _any_at(query_ids, query_words, scores.shape[1])
    return scores - penalty * hit.to(scores.dtype)


def _any_at(token_ids: torch.Tensor, flags: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(B, V) bool: whether any position of the row with that token id is flagged. (A plain scatter_ of the
    flags would let an unflagged duplicate of the id overwrite a flagged one.)"""
    counts = torch.zeros(token_ids.shape[0], vocab_size, dtype=torch.long, device=token_ids.device)
    return counts.scatter_add_(1, token_ids, flags.long()) > 0
