"""BM25 over a document index's texts, and reciprocal rank fusion of several rankings.

A :class:`LexicalIndex` is built from texts alone (bm25s, with the analysis of
:func:`gear_core.scoring.bm25_tokenize`), so a searcher rebuilds it from its :class:`DocumentIndex`'s stored texts
instead of saving a second index: nothing more to persist, and nothing that could disagree with the dense index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gear_core.scoring import bm25_tokenize


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
        if not isinstance(k, int) or isinstance(k, bool) or k <= 0:
            raise ValueError(f"k must be a positive int, got {k!r}")
        rows: list[list[tuple[str, float]]] = []
        for terms in bm25_tokenize(queries):
            if not terms or self._empty or not self.ids:
                rows.append([])
                continue
            scores = np.asarray(self._bm25.get_scores(terms))
            best = np.argsort(-scores, kind="stable")[:k]  # ties: the earlier document first
            rows.append([(self.ids[i], float(scores[i])) for i in best if scores[i] > 0])
        return rows


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: float = 60.0) -> list[tuple[str, float]]:
    """Ids of several rankings merged by the sum of 1 / (k + rank), rank counted from 0, best first with their fused
    scores: what LlamaIndex's ``QueryFusionRetriever(mode="reciprocal_rerank")`` does with its retrievers' results
    (k = 60, Cormack et al., 2009). Ranks, not scores, are fused: BM25 and cosine live on different scales. Ties keep
    the order in which ids were first seen."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, id_ in enumerate(ranking):
            fused[id_] = fused.get(id_, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])
