"""BM25 over a document index's texts, and two ways to merge several rankings, by standardised score or by reciprocal
rank (:class:`HybridFusion`: how hybrid search merges GeAR's and BM25's).

A :class:`LexicalIndex` is built from texts alone (bm25s, with the analysis of
:func:`gear_core.scoring.bm25_tokenize`), so a searcher rebuilds it from its :class:`DocumentIndex`'s stored texts
instead of saving a second index: nothing more to persist, and nothing that could disagree with the dense index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from gear_core.scoring import bm25_tokenize
from gear_core.tokenization import check_positive_int


class LexicalIndex:
    """BM25 (bm25s, Lucene's variant) over ``texts``, searched by id."""

    def __init__(self, ids: Sequence[str], texts: Sequence[str]) -> None:
        import bm25s

        if len(ids) != len(texts):
            raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
        self.ids = list(ids)
        self._bm25 = bm25s.BM25()
        corpus = bm25_tokenize(texts)
        self._empty = not any(corpus)  # bm25s cannot index a corpus without a single term
        if not self._empty:
            self._bm25.index(corpus, show_progress=False)

    def __len__(self) -> int:
        return len(self.ids)

    def search(self, queries: Sequence[str], k: int) -> list[list[tuple[str, float]]]:
        """The ``k`` best ``(id, score)`` per query, best first; documents sharing no term with a query are left out
        (BM25 scores them 0: they were not found), so a row may hold fewer than ``k``."""
        check_positive_int(k, "k")
        rows: list[list[tuple[str, float]]] = []
        for terms in bm25_tokenize(queries):
            if not terms or self._empty or not self.ids:
                rows.append([])
                continue
            scores = np.asarray(self._bm25.get_scores(terms))
            best = np.argsort(-scores, kind="stable")[:k]  # ties: the earlier document first
            rows.append([(self.ids[i], float(scores[i])) for i in best if scores[i] > 0])
        return rows


def _check_weights(weights: Sequence[float] | None, count: int) -> Sequence[float]:
    if weights is None:
        return [1.0] * count
    if len(weights) != count:
        raise ValueError(f"{len(weights)} weights for {count} rankings")
    return weights


def z_score_fusion(
    rankings: Sequence[Sequence[tuple[str, float]]],
    weights: Sequence[float] | None = None,
    missing: Sequence[float | None] | None = None,
) -> list[tuple[str, float]]:
    """``(id, score)`` rankings merged by the weighted sum of each one's standardised scores, best first with their
    fused scores. BM25 and cosine live on different scales; standardising puts them on one while keeping how far
    ahead a retriever's best result is, which ranks alone lose.

    Every id any ranking holds is a candidate. Each ranking gives every candidate a score: its own, or for an id it
    lacks, ``missing[r]`` (None: its lowest score, since it scored that id no higher), and is standardised, (score -
    mean) / sd, over the candidates; a ranking that gives every candidate the same score adds 0. Ties keep the
    order in which ids were first seen."""
    weights = _check_weights(weights, len(rankings))
    missing = [None] * len(rankings) if missing is None else missing
    if len(missing) != len(rankings):
        raise ValueError(f"{len(missing)} missing scores for {len(rankings)} rankings")
    ids = list(dict.fromkeys(id_ for ranking in rankings for id_, _ in ranking))
    fused = np.zeros(len(ids))
    for ranking, weight, absent in zip(rankings, weights, missing, strict=True):
        given = dict(ranking)
        if absent is None:
            absent = min(given.values(), default=0.0)
        scores = np.asarray([given.get(id_, absent) for id_ in ids], dtype=np.float64)
        spread = scores.std() if len(ids) else 0.0
        if spread > 0:
            fused += weight * (scores - scores.mean()) / spread
    return sorted(zip(ids, fused.tolist(), strict=True), key=lambda item: -item[1])


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], k: float = 60.0, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Ids of several rankings merged by the sum of weight / (k + rank), rank counted from 0, best first with their
    fused scores: with unit weights, what LlamaIndex's ``QueryFusionRetriever(mode="reciprocal_rerank")`` does with
    its retrievers' results (k = 60, Cormack et al., 2009). Ranks, not scores, are fused: BM25 and cosine live on
    different scales. Ties keep the order in which ids were first seen."""
    weights = _check_weights(weights, len(rankings))
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, id_ in enumerate(ranking):
            fused[id_] = fused.get(id_, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])


FusionMethod = Literal["z_score", "reciprocal_rank"]
FUSION_METHODS: tuple[str, ...] = get_args(FusionMethod)


@dataclass(frozen=True)
class HybridFusion:
    """How hybrid search merges GeAR's ranking with BM25's: each one's top ``depth`` (never fewer than the ``k``
    asked for), merged by ``method``: ``"z_score"`` (:func:`z_score_fusion`) or ``"reciprocal_rank"``
    (:func:`reciprocal_rank_fusion` with constant ``rank_constant``, which only this method uses), GeAR's part
    weighted by ``dense_weight`` (BM25's by 1).

    The defaults are chosen on the validation sources (``benchmarks/hybrid_retrieval.py``, its fusion grid): scores
    beat ranks on R@1 by keeping how sure each retriever is (BM25 far ahead on a rare name wins; a near tie defers
    to the other), fusing 50 deep lets a document both rank fairly high come first, and equal weights had the best
    mean over the six validation corpora once GeAR scored documents with their best sentence (GeAR weighted 1.5, the
    default before that, came within 0.001)."""

    depth: int = 50
    rank_constant: float = 10.0
    dense_weight: float = 1.0
    method: FusionMethod = "z_score"

    def __post_init__(self) -> None:
        check_positive_int(self.depth, "depth")
        if not self.rank_constant > 0:  # ranks count from 0: 1 / (0 + 0) is not a score
            raise ValueError(f"rank_constant must be > 0, got {self.rank_constant!r}")
        if not self.dense_weight > 0:
            raise ValueError(f"dense_weight must be > 0, got {self.dense_weight!r}")
        if self.method not in FUSION_METHODS:
            raise ValueError(f"method must be one of {FUSION_METHODS}, got {self.method!r}")

    def candidates(self, k: int) -> int:
        """How many results to ask each retriever for when ``k`` fused ones are wanted."""
        check_positive_int(k, "k")
        return max(k, self.depth)

    def fuse(
        self, dense: Sequence[tuple[str, float]], lexical: Sequence[tuple[str, float]], k: int
    ) -> list[tuple[str, float]]:
        """The best ``k`` ``(id, fused score)`` of GeAR's ranking ``dense`` and BM25's ``lexical``, each
        ``(id, score)`` best first and cut to :meth:`candidates`."""
        depth = self.candidates(k)
        rankings, weights = [dense[:depth], lexical[:depth]], (self.dense_weight, 1.0)
        if self.method == "z_score":
            # BM25 returns every document it scores above 0, up to the depth: in a shorter ranking, the rest scored 0.
            missing = [None, 0.0 if len(lexical) < depth else None]
            return z_score_fusion(rankings, weights, missing)[:k]
        return reciprocal_rank_fusion([[id_ for id_, _ in r] for r in rankings], self.rank_constant, weights)[:k]
