"""BM25 over a document index's texts, and reciprocal rank fusion of several rankings (:class:`HybridFusion`: how
hybrid search merges GeAR's and BM25's).

A :class:`LexicalIndex` is built from texts alone (bm25s, with the analysis of
:func:`gear_core.scoring.bm25_tokenize`), so a searcher rebuilds it from its :class:`DocumentIndex`'s stored texts
instead of saving a second index: nothing more to persist, and nothing that could disagree with the dense index.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], k: float = 60.0, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Ids of several rankings merged by the sum of weight / (k + rank), rank counted from 0, best first with their
    fused scores: with unit weights, what LlamaIndex's ``QueryFusionRetriever(mode="reciprocal_rerank")`` does with
    its retrievers' results (k = 60, Cormack et al., 2009). Ranks, not scores, are fused: BM25 and cosine live on
    different scales. Ties keep the order in which ids were first seen."""
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, id_ in enumerate(ranking):
            fused[id_] = fused.get(id_, 0.0) + weight / (k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])


@dataclass(frozen=True)
class HybridFusion:
    """How hybrid search merges GeAR's ranking with BM25's: each one's top ``depth`` (never fewer than the ``k``
    asked for) by reciprocal rank with constant ``rank_constant``, GeAR's ranks weighted by ``dense_weight`` (BM25's
    by 1). The defaults are chosen on the validation sources (``benchmarks/hybrid_retrieval.py``, its fusion grid):
    fusing deeper than ``k`` lets a document both retrievers rank fairly high beat one that a single retriever
    ranks first, and a constant of 10 (LlamaIndex's is 60) keeps a retriever's first result worth more than
    another's tenth. Equal weights: weighting either retriever won on one source and lost on another."""

    depth: int = 50
    rank_constant: float = 10.0
    dense_weight: float = 1.0

    def __post_init__(self) -> None:
        check_positive_int(self.depth, "depth")
        if not self.rank_constant > 0:  # ranks count from 0: 1 / (0 + 0) is not a score
            raise ValueError(f"rank_constant must be > 0, got {self.rank_constant!r}")
        if not self.dense_weight > 0:
            raise ValueError(f"dense_weight must be > 0, got {self.dense_weight!r}")

    def candidates(self, k: int) -> int:
        """How many results to ask each retriever for when ``k`` fused ones are wanted."""
        check_positive_int(k, "k")
        return max(k, self.depth)

    def fuse(self, dense: Sequence[str], lexical: Sequence[str], k: int) -> list[tuple[str, float]]:
        """The best ``k`` ``(id, fused score)`` of GeAR's ranking ``dense`` and BM25's ``lexical`` (each cut to
        :meth:`candidates`)."""
        depth = self.candidates(k)
        return reciprocal_rank_fusion(
            [dense[:depth], lexical[:depth]], self.rank_constant, weights=(self.dense_weight, 1.0)
        )[:k]
