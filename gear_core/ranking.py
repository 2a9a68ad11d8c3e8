"""Sentence ranking: each document read in windows by the fusion encoder, its sentences scored from the ranking
layer's cross-attention (:mod:`gear_core.scoring` says how), the windows combined, best first.

``GeARModel.rank_sentences_batch`` and ``sentence_scores_batch`` call :func:`rank_sentences` and
:func:`score_sentences`; evidence (:mod:`gear_core.generation`) reads the same pass through :func:`sentence_scores`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gear_core.allocator import releasing
from gear_core.layers import embed_states, in_eval_mode
from gear_core.scoring import (
    SentenceScoring,
    WindowScores,
    bm25_sentence_scores,
    document_sentence_scores,
    fill_unscored,
    mix_lexical,
    pool_attention,
    window_sentence_scores,
)
from gear_core.text import ScoredSentence, Sentence, split_sentences
from gear_core.tokenization import TOKENIZER_LOCK, check_batch_size, check_texts, tokenizable

if TYPE_CHECKING:
    from gear_core.modeling import GeARModel


@torch.no_grad()
@in_eval_mode
def score_sentences(
    model: GeARModel,
    queries: Sequence[str],
    documents: Sequence[str],
    scorings: Sequence[SentenceScoring] | None = None,
    batch_size: int = 16,
) -> tuple[list[list[Sentence]], list[list[np.ndarray]]]:
    """Every sentence's cross-attention score, for each (query, document) pair and each scoring.

    Returns ``(sentences, scores)``: ``sentences[p]`` are document ``p``'s sentences and
    ``scores[s][p][i]`` is sentence ``i``'s score under ``scorings[s]`` (default: the config's scoring alone).
    Documents longer than the window are read in overlapping windows and each scoring's ``window_weighting``
    combines them (:func:`~gear_core.scoring.document_sentence_scores`). One fusion pass serves all scorings,
    which is what the ablation relies on.
    """
    queries, documents = check_texts(queries), check_texts(documents)
    check_batch_size(batch_size)
    if len(queries) != len(documents):
        raise ValueError(f"got {len(queries)} queries and {len(documents)} documents; they pair up one to one")
    scorings = [model.config.sentence_scoring] if scorings is None else list(scorings)
    sentences, scores, _ = sentence_scores(model, queries, documents, scorings, batch_size)
    return sentences, scores


def sentence_scores(
    model: GeARModel,
    queries: list[str],
    documents: list[str],
    scorings: list[SentenceScoring],
    batch_size: int,
    keep_states: int = 0,
) -> tuple[list[list[Sentence]], list[list[np.ndarray]], dict[int, list[dict[str, Any]]]]:
    """:meth:`sentence_scores_batch`'s work on checked inputs, in eval mode. Also returns each scored pair's
    windows (``input_ids``, ``offsets``, and the document tower's ``states``, kept from the same pass for a
    document of at most ``keep_states`` windows, else None)."""
    tokenizer = model._require_tokenizer()
    sentences = [split_sentences(d) for d in documents]
    scores = [[np.full(len(s), np.nan) for s in sentences] for _ in scorings]
    pairs = [i for i, s in enumerate(sentences) if s]
    if not pairs:
        return sentences, scores, {}
    windows = document_windows(model, [documents[i] for i in pairs])
    sentence_starts = {p: np.array([s.start_char for s in sentences[p]], dtype=np.int64) for p in pairs}
    window_pair = [pairs[j] for j in windows["overflow_to_sample_mapping"]]
    window_count = np.bincount(window_pair, minlength=len(documents))
    kept_states: dict[int, torch.Tensor] = {}
    # Per window: each scoring's sentence scores and log attention mass, and the window's embedding.
    per_window: list[list[np.ndarray]] = [[] for _ in window_pair]
    window_log_mass: list[list[float]] = [[] for _ in window_pair]
    window_embeddings = np.zeros((len(window_pair), model.config.hidden_size), dtype=np.float32)
    # Longest windows first, so a batch holds similar lengths and little padding.
    order = sorted(range(len(window_pair)), key=lambda w: -len(windows["input_ids"][w]))
    for start in releasing(range(0, len(order), batch_size)):
        chunk = order[start : start + batch_size]
        query_inputs = model._tokenize([queries[window_pair[w]] for w in chunk], model.config.max_query_length)
        with TOKENIZER_LOCK:
            document_inputs = tokenizer.pad(
                {"input_ids": [windows["input_ids"][w] for w in chunk]}, return_tensors="pt"
            )
        result = model.document_token_scores(
            query_inputs["input_ids"],
            query_inputs["attention_mask"],
            document_inputs["input_ids"].to(model.device),
            document_inputs["attention_mask"].to(model.device),
            scorings,
        )
        token_scores = [t.float().cpu().numpy() for t in result.token_scores]
        log_mass = [t.float().cpu().numpy() for t in result.log_attention_mass]
        window_embeddings[chunk] = result.embeddings.float().cpu().numpy()
        for row, w in enumerate(chunk):
            pair = window_pair[w]
            if window_count[pair] <= keep_states:  # a clone: a view would keep the whole batch alive
                kept_states[w] = result.document_states[row, : len(windows["input_ids"][w])].clone()
            offsets = np.asarray(windows["offset_mapping"][w]).reshape(-1, 2)
            special = np.asarray(windows["special_tokens_mask"][w], dtype=bool)
            for k, scoring in enumerate(scorings):
                per_window[w].append(
                    window_sentence_scores(
                        token_scores[k][row, : len(offsets)],
                        offsets,
                        special,
                        sentences[pair],
                        scoring,
                        sentence_starts[pair],
                    )
                )
                window_log_mass[w].append(float(log_mass[k][row]))
    by_pair: dict[int, list[int]] = {}
    for w, pair in enumerate(window_pair):
        by_pair.setdefault(pair, []).append(w)
    long_pairs = [p for p, ws in by_pair.items() if len(ws) > 1]
    cosine: dict[int, np.ndarray] = {}
    if long_pairs and any(s.window_weighting == "retrieval" for s in scorings):
        query_embeddings = model.encode_queries_as_fusion_reads([queries[p] for p in long_pairs])
        for p, query in zip(long_pairs, query_embeddings, strict=True):
            cosine[p] = window_embeddings[by_pair[p]] @ query
    for pair, ws in by_pair.items():
        lexical = None  # BM25 of this pair's sentences: computed once, for the scorings that mix it in
        for k, scoring in enumerate(scorings):
            scores[k][pair] = document_sentence_scores(
                [per_window[w][k] for w in ws],
                [window_log_mass[w][k] for w in ws],
                cosine.get(pair),
                scoring,
                len(sentences[pair]),
            )
            if scoring.lexical_weight > 0:
                if lexical is None:
                    lexical = bm25_sentence_scores(queries[pair], [s.text for s in sentences[pair]])
                scores[k][pair] = mix_lexical(
                    scores[k][pair], lexical, scoring.lexical_weight, scoring.lexical_temperature
                )
    pair_windows = {
        pair: [
            {
                "input_ids": windows["input_ids"][w],
                "offsets": windows["offset_mapping"][w],
                "states": kept_states.get(w),
            }
            for w in ws
        ]
        for pair, ws in by_pair.items()
    }
    return sentences, scores, pair_windows


def document_token_scores(
    model: GeARModel,
    query_input_ids: torch.Tensor,
    query_attention_mask: torch.Tensor,
    document_input_ids: torch.Tensor,
    document_attention_mask: torch.Tensor,
    scorings: Sequence[SentenceScoring] | None = None,
) -> WindowScores:
    """For each scoring (default: the config's), what one fusion pass gives sentence ranking (WindowScores)."""
    scorings = [model.config.sentence_scoring] if scorings is None else list(scorings)
    document_states = model.document_encoder_module(
        input_ids=document_input_ids, attention_mask=document_attention_mask
    ).last_hidden_state
    layers = {s.layer for s in scorings}
    _, attention_logits = model.fuse(
        query_input_ids,
        query_attention_mask,
        document_states,
        document_attention_mask,
        attention_layers=layers,
        stop_after_layer=max(layers),
    )
    content = model._content_mask(query_input_ids, query_attention_mask)
    pooled: dict[tuple[int, str, str], tuple[torch.Tensor, torch.Tensor]] = {}
    for s in scorings:
        key = (s.layer, s.head_pooling, s.query_pooling)
        if key not in pooled:
            logits = attention_logits[s.layer].float()
            weights = pool_attention(logits.softmax(dim=-1), query_attention_mask, *key[1:], content)
            log_mass = logits.logsumexp(dim=-1, keepdim=True)  # (B, heads, Lq, 1): pooled like one token
            pooled[key] = weights, pool_attention(log_mass, query_attention_mask, *key[1:], content)[:, 0]
    keys = [(s.layer, s.head_pooling, s.query_pooling) for s in scorings]
    return WindowScores(
        [pooled[k][0] for k in keys],
        [pooled[k][1] for k in keys],
        embed_states(document_states, document_attention_mask),
        document_states,
    )


def ranking_token_attention(
    model: GeARModel, logits: torch.Tensor, query_input_ids: torch.Tensor, query_attention_mask: torch.Tensor
) -> torch.Tensor:
    """(B, Ld) the ranking layer's cross-attention ``logits`` pooled as the config's scoring pools them: how much
    the query attends to each document token (what the localization loss trains and the copy prior reads)."""
    ranking = model.config.sentence_scoring
    return pool_attention(
        logits.softmax(dim=-1),
        query_attention_mask,
        ranking.head_pooling,
        ranking.query_pooling,
        model._content_mask(query_input_ids, query_attention_mask),
    )


def document_windows(model: GeARModel, documents: Sequence[str]) -> Any:
    """The documents tokenised into windows of ``max_document_length`` (overlapping by ``document_stride``):
    ``input_ids``, ``offset_mapping`` (characters of the document), ``special_tokens_mask`` and
    ``overflow_to_sample_mapping`` (each window's document), as sentence ranking and evidence read them."""
    tokenizer = model._require_tokenizer()
    with TOKENIZER_LOCK:
        return tokenizer(
            [tokenizable(d) for d in documents],
            truncation=True,
            max_length=model.config.max_document_length,
            stride=model.config.document_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )


def rank_sentences(
    model: GeARModel,
    queries: Sequence[str],
    documents: Sequence[str],
    top_n: int | None = None,
    batch_size: int = 16,
) -> list[list[ScoredSentence]]:
    """Rank each document's sentences for its query by fusion cross-attention, best first.

    Documents longer than the window are read in overlapping windows, combined as the config's
    ``ranking_window_weighting`` says; ``ranking_lexical_weight`` mixes BM25 in. Each result's
    ``document[start_char:end_char] == text``.
    """
    check_top_n(top_n)
    sentences, (scores,) = model.sentence_scores_batch(queries, documents, batch_size=batch_size)
    return [ranked_sentences(s, fill_unscored(sc), top_n) for s, sc in zip(sentences, scores, strict=True)]


def ranking_order(scores: np.ndarray, top_n: int | None) -> np.ndarray:
    """Sentence indices best first (ties keep document order), at most ``top_n``: every ranking's one order."""
    order = np.argsort(-scores, kind="stable")
    return order if top_n is None else order[:top_n]


def check_top_n(top_n: int | None) -> None:
    if top_n is not None and (not isinstance(top_n, int) or isinstance(top_n, bool) or top_n < 1):
        raise ValueError(f"top_n must be a positive int or None (every sentence), got {top_n!r}")


def ranked_sentences(sentences: list[Sentence], scores: np.ndarray, top_n: int | None) -> list[ScoredSentence]:
    """The sentences best first (at most ``top_n``), each with its score."""
    order = ranking_order(scores, top_n)
    return [
        ScoredSentence(sentences[i].text, sentences[i].start_char, sentences[i].end_char, float(scores[i]))
        for i in order
    ]
