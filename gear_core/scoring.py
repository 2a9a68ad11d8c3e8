"""Sentence scoring: how the fusion encoder's cross-attention becomes one score per sentence.

The main research knob of GeAR's local retrieval, in one place: the choices (as Literals, shared with
:class:`~gear_core.config.GeARConfig`), the poolings (heads, query tokens, a sentence's tokens), how the windows of
a long document combine, and the one rule for a sentence no token of which received attention (score 0, the
least any attention gives), and the optional lexical share: BM25 over the document's own sentences mixed into
the attention (:func:`mix_lexical`). ``GeARModel.sentence_scores_batch`` runs the fusion pass and calls these;
serving, evaluation and the ablation all read the same scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import torch

from gear_core.text import Sentence, token_sentence_index

HeadPooling = Literal["mean", "max"]
QueryPooling = Literal["mean", "content", "max", "cls"]
SentencePooling = Literal["sum", "mean", "max"]
WindowWeighting = Literal["none", "attention", "retrieval"]
HEAD_POOLINGS: tuple[str, ...] = get_args(HeadPooling)
QUERY_POOLINGS: tuple[str, ...] = get_args(QueryPooling)
SENTENCE_POOLINGS: tuple[str, ...] = get_args(SentencePooling)
WINDOW_WEIGHTINGS: tuple[str, ...] = get_args(WindowWeighting)

#: The score of a sentence that no window's tokens scored (e.g. one made only of characters the tokenizer drops).
UNSCORED = 0.0


def fill_unscored(scores: np.ndarray) -> np.ndarray:
    """``scores`` with the NaN of unscored sentences replaced by :data:`UNSCORED` (ranked after ties by position)."""
    return np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=UNSCORED)


@dataclass(frozen=True)
class SentenceScoring:
    """How cross-attention becomes a sentence score: the fusion layer read (0-based) and three poolings.

    ``head_pooling`` combines heads (``"mean"``/``"max"``); ``query_pooling`` combines query tokens: all real
    tokens averaged (``"mean"``), the words only, without [CLS]/[SEP] (``"content"``), their maximum (``"max"``)
    or [CLS] alone (``"cls"``); ``sentence_pooling`` turns a sentence's token weights into its score
    (``"sum"``/``"mean"``/``"max"``); ``window_weighting`` and ``window_temperature`` make the windows of a long
    document comparable (``GeARConfig.ranking_window_weighting``); ``lexical_weight`` and ``lexical_temperature``
    mix BM25 into the scores (:func:`mix_lexical`, ``GeARConfig.ranking_lexical_weight``). Serving uses the
    config's choice (:meth:`from_config`); the ablation tries many on the same attention.
    """

    layer: int
    head_pooling: HeadPooling = "mean"
    query_pooling: QueryPooling = "mean"
    sentence_pooling: SentencePooling = "sum"
    window_weighting: WindowWeighting = "retrieval"
    window_temperature: float = 0.07
    lexical_weight: float = 0.0
    lexical_temperature: float = 1.0


def pool_attention(
    attention: torch.Tensor,
    query_attention_mask: torch.Tensor,
    head_pooling: str,
    query_pooling: str,
    query_content_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, heads, Lq, Ld) cross-attention -> (B, Ld): how much attention each document token receives.

    ``query_content_mask`` marks the query's word tokens (real and not special); ``"content"`` pooling needs it.
    """
    per_query_token = attention.mean(dim=1) if head_pooling == "mean" else attention.amax(dim=1)
    if query_pooling == "cls":
        return per_query_token[:, 0]
    if query_pooling == "content":
        if query_content_mask is None:
            raise ValueError("query_pooling='content' needs query_content_mask")
        query_attention_mask = query_content_mask
    mask = query_attention_mask.to(per_query_token.dtype).unsqueeze(-1)
    if query_pooling in ("mean", "content"):
        return (per_query_token * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
    return per_query_token.masked_fill(mask == 0, float("-inf")).amax(dim=1)


def pool_sentences(
    token_scores: np.ndarray, token_sentence: np.ndarray, num_sentences: int, pooling: str
) -> np.ndarray:
    """Token scores of one window -> per-sentence scores (NaN for sentences with no token in the window)."""
    keep = token_sentence >= 0
    index, values = token_sentence[keep], token_scores[keep].astype(np.float64)
    counts = np.bincount(index, minlength=num_sentences)
    if pooling == "max":
        scores = np.full(num_sentences, -np.inf)
        np.maximum.at(scores, index, values)
    else:
        scores = np.bincount(index, weights=values, minlength=num_sentences)
        if pooling == "mean":
            scores = scores / np.maximum(counts, 1)
    return np.where(counts > 0, scores, np.nan)


@dataclass(frozen=True)
class WindowSentenceScores:
    """One window's sentence scores: ``scores[j]`` is sentence ``first + j``'s (NaN where the window holds none of
    its tokens). A window holds a run of consecutive sentences, so a long document's windows together stay linear
    in its length (a windows x sentences array took 3.7 GB for a 2 MB document)."""

    first: int
    scores: np.ndarray


def combine_windows(
    windows: Sequence[WindowSentenceScores], num_sentences: int, log_weights: Sequence[float] | None = None
) -> np.ndarray:
    """Per-window sentence scores of one document -> its sentence scores (NaN where no window saw a sentence).

    Without ``log_weights`` a sentence keeps its best window's score. With them, each window's scores are first
    multiplied by that window's softmax weight over the document's windows (``window_weighting``), so a
    window that matters little to the query cannot put its best sentence on top.
    """
    weights = np.ones(len(windows))
    if log_weights is not None:
        log_weights = np.asarray(log_weights, dtype=np.float64)
        weights = np.exp(log_weights - log_weights.max())
        weights = weights / weights.sum()
    combined = np.full(num_sentences, np.nan)
    for window, weight in zip(windows, weights, strict=True):
        part = combined[window.first : window.first + len(window.scores)]
        part[:] = np.fmax(part, window.scores * weight if log_weights is not None else window.scores)
    return combined


@dataclass
class WindowScores:
    """What one fusion pass over a batch of (query, document window) pairs gives sentence ranking.

    ``token_scores[k]`` (B, Ld): the attention each token receives under scoring ``k``;
    ``log_attention_mass[k]`` (B,): the log of the window's softmax denominator, pooled over heads and query
    tokens as scoring ``k`` pools attention (how strongly the query attends to this window as a whole);
    ``embeddings`` (B, dim): the window's bi-encoder embedding, from the same document states;
    ``document_states`` (B, Ld, hidden): those states (evidence generation reuses them rather than encode again).
    """

    token_scores: list[torch.Tensor]
    log_attention_mass: list[torch.Tensor]
    embeddings: torch.Tensor
    document_states: torch.Tensor | None = None


def window_sentence_scores(
    token_scores: np.ndarray,
    offsets: np.ndarray,
    special_tokens: np.ndarray,
    sentences: Sequence[Sentence],
    scoring: SentenceScoring,
    sentence_starts: np.ndarray | None = None,
) -> WindowSentenceScores:
    """One window's sentence scores, for the sentences it reaches: its tokens' scores, each token given to the
    sentence holding its first character (``text.token_sentence_index``, the collator's rule), pooled.
    ``sentence_starts`` (the sentences' ``start_char``s, computed once per document) keeps the lookup to the
    window's own sentences."""
    if sentence_starts is None:
        sentence_starts = np.array([s.start_char for s in sentences], dtype=np.int64)
    content = ~special_tokens & (offsets[:, 1] > offsets[:, 0])
    if not content.any() or not len(sentences):
        return WindowSentenceScores(0, np.empty(0))
    token_starts = offsets[content, 0]
    # The sentences that can hold a token here: from the one holding the first token to the last starting before
    # the last token (the same answer token_sentence_index gives over all of them).
    first = max(int(np.searchsorted(sentence_starts, token_starts.min(), side="right")) - 1, 0)
    end = int(np.searchsorted(sentence_starts, token_starts.max(), side="right"))
    token_sentence = token_sentence_index(offsets[:, 0], offsets[:, 1], list(sentences[first:end]))
    token_sentence[special_tokens] = -1
    return WindowSentenceScores(
        first, pool_sentences(token_scores, token_sentence, end - first, scoring.sentence_pooling)
    )


def document_sentence_scores(
    window_scores: Sequence[WindowSentenceScores],
    window_log_mass: Sequence[float],
    window_cosine: np.ndarray | None,
    scoring: SentenceScoring,
    num_sentences: int,
) -> np.ndarray:
    """A document's sentence scores from its windows' (:func:`window_sentence_scores`), weighted as
    ``scoring.window_weighting`` says: by the attention the query gives each window (``window_log_mass``), by the
    bi-encoder's cosine with each window (``window_cosine``), or not at all. One window: its scores."""
    log_weights = None
    if len(window_scores) > 1 and scoring.window_weighting == "attention":
        log_weights = list(window_log_mass)
    elif len(window_scores) > 1 and scoring.window_weighting == "retrieval":
        log_weights = np.asarray(window_cosine) / scoring.window_temperature
    return combine_windows(window_scores, num_sentences, log_weights)


def bm25_tokenize(texts: Sequence[str]) -> list[list[str]]:
    """The BM25 analysis: bm25s' tokenizer, English stop words, Snowball stemming (PyStemmer)."""
    import bm25s

    try:
        import Stemmer

        stemmer = Stemmer.Stemmer("english")
    except ImportError:  # PyStemmer is a dependency; without it BM25 still works, unstemmed
        stemmer = None
    return bm25s.tokenize(list(texts), stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)


def bm25_sentence_scores(query: str, sentences: Sequence[str]) -> np.ndarray:
    """BM25 score of each sentence for ``query``, the document's own sentences being the corpus (its statistics
    included), as bm25s computes it (Lucene's variant). A query, or a document, of stop words alone scores every
    sentence 0."""
    import bm25s

    terms = bm25_tokenize([query])[0]
    corpus = bm25_tokenize(sentences) if terms and sentences else []
    if not any(corpus):  # nothing to match: a stop-word query, or sentences of stop words and symbols alone
        return np.zeros(len(sentences))
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    return np.asarray(retriever.get_scores(terms), dtype=np.float64)


def mix_lexical(
    attention_scores: np.ndarray, lexical_scores: np.ndarray, weight: float, temperature: float
) -> np.ndarray:
    """One distribution over a document's sentences: ``(1 - weight)`` of the cross-attention scores normalised to
    sum to 1, plus ``weight`` of a softmax of the lexical (BM25) scores at ``temperature``.

    Why: attention alone misses exact rare-word matches out of its training domain and on long documents, where
    BM25 is strong; BM25 alone misses paraphrase. Both become distributions first, so neither's scale (attention
    sums to about 1 per window, BM25 grows with rare terms) decides the mix. Unscored sentences (NaN) count as 0
    attention; a query with no lexical match gives a uniform lexical part, which leaves the attention order as is.
    The softmax (not BM25 / its sum) won on validation, though across thousands of sentences it spreads a weak
    single-term match thin.
    """
    if not 0 <= weight <= 1 or not temperature > 0:
        raise ValueError(f"need 0 <= weight <= 1 and temperature > 0, got weight={weight}, temperature={temperature}")
    attention = np.clip(np.nan_to_num(np.asarray(attention_scores, dtype=np.float64), nan=0.0), 0.0, None)
    total = attention.sum()
    attention = attention / total if total > 0 else attention
    return (1 - weight) * attention + weight * lexical_distribution(lexical_scores, temperature)


def lexical_distribution(lexical_scores: np.ndarray, temperature: float) -> np.ndarray:
    """The lexical part of :func:`mix_lexical`: a softmax of BM25 scores at ``temperature`` (uniform when all tie)."""
    logits = np.asarray(lexical_scores, dtype=np.float64) / temperature
    if not len(logits):
        return logits
    lexical = np.exp(logits - logits.max())
    return lexical / lexical.sum()
