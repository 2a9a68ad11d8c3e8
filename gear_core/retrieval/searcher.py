"""GeARSearcher: GeAR's three uses in one call: find documents, the sentences in them that answer, and evidence.

1. Global retrieval: the query encoder's vector against the :class:`DocumentIndex` of document vectors (and, when
   ``GeARConfig.retrieval_sentence_weight`` asks for it, each document's best sentence vector too); with
   ``mode="hybrid"``, merged with BM25 over the same documents (:mod:`gear_core.retrieval.lexical`:
   BM25 rebuilt from the index's texts, so nothing more is saved; :class:`HybridFusion`, how the two are merged).
2. Local retrieval: each hit's sentences ranked by the fusion encoder's cross-attention
   (``GeARModel.rank_sentences_batch``), with character spans into the hit's text.
3. Optionally, the decoder's generated evidence for each hit (``GeARModel.generate_evidence_batch``; with 2, one
   ranking pass serves both: ``rank_and_generate_batch``), grounded to the span of the hit's text it was quoted
   from or that best supports it (:mod:`gear_core.evidence`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

from gear_core.evidence import GroundedEvidence
from gear_core.retrieval.index import DocumentIndex, Hit, IndexType, check_model, model_identity
from gear_core.retrieval.lexical import HybridFusion, LexicalIndex
from gear_core.text import ScoredSentence
from gear_core.tokenization import check_batch_size

if TYPE_CHECKING:
    from gear_core.modeling import GeARModel


SearchMode = Literal["dense", "hybrid"]
SEARCH_MODES: tuple[str, ...] = get_args(SearchMode)

#: What :meth:`DocumentIndex.add` takes besides ids and texts: document vectors, and the sentence vectors and their
#: counts per document (both None for an index without sentence vectors).
EncodedDocuments = tuple[np.ndarray, np.ndarray | None, np.ndarray | None]


def encode_for_index(
    model: GeARModel, texts: Sequence[str], sentences: bool, batch_size: int = 32, show_progress: bool = False
) -> EncodedDocuments:
    """``texts`` encoded for a :class:`DocumentIndex`: their vectors, and with ``sentences`` their sentences'
    (``GeARModel.encode_document_sentences``)."""
    embeddings = model.encode_documents(texts, batch_size=batch_size, show_progress=show_progress)
    if not sentences:
        return embeddings, None, None
    return embeddings, *model.encode_document_sentences(texts, batch_size=batch_size, show_progress=show_progress)


@dataclass
class SearchResult:
    """One retrieved document with what GeAR found inside it.

    ``score`` is the cosine of query and document (with sentence vectors, ``cos(query, document) + w * cos(query,
    its best sentence)``: :func:`~gear_core.retrieval.index.document_scores`), or in hybrid mode the fused score (by
    default the weighted sum of GeAR's and BM25's standardised scores: :class:`~gear_core.retrieval.HybridFusion`);
    ``found_by`` names those retrievers (``"dense"``, ``"bm25"``). ``sentences`` are best first and each satisfies
    ``text[s.start_char:s.end_char] == s.text``; ``evidence`` is the generated text with the span of ``text`` that
    supports it (:class:`~gear_core.evidence.GroundedEvidence`), or None when generation was not asked for.
    """

    id: str
    text: str
    score: float
    rank: int
    sentences: list[ScoredSentence] = field(default_factory=list)
    evidence: GroundedEvidence | None = None
    found_by: tuple[str, ...] = ("dense",)

    @classmethod
    def from_hit(cls, hit: Hit) -> SearchResult:
        return cls(id=hit.id, text=hit.text, score=hit.score, rank=hit.rank)


class GeARSearcher:
    """A GeARModel and a DocumentIndex of its document vectors.

    Build one with :meth:`from_documents`, or from an existing index (which must come from the same model:
    see :func:`~gear_core.retrieval.index.model_identity`). ``batch_size`` bounds how many (query, document)
    pairs the fusion encoder and the decoder see at once. ``mode`` chooses global retrieval: ``"dense"`` (GeAR's
    vectors) or ``"hybrid"`` (GeAR's and BM25's rankings merged as ``fusion`` says: by default each one's top 50, or
    top ``k`` when more are asked for, by standardised score).
    """

    def __init__(
        self,
        model: GeARModel,
        index: DocumentIndex,
        batch_size: int = 16,
        check: bool = True,
        mode: SearchMode = "hybrid",
        fusion: HybridFusion | None = None,
    ) -> None:
        if index.dim != model.config.hidden_size:
            raise ValueError(
                f"the index holds {index.dim}-dim vectors but the model makes {model.config.hidden_size}-dim ones"
            )
        if check and index.model is not None:
            check_model(index.model, model_identity(model))
        self.model = model
        self.index = index
        self.batch_size = batch_size
        self.mode = mode
        self.fusion = fusion or HybridFusion()
        self._lexical: LexicalIndex | None = None  # built on the first hybrid search, from the index's texts
        self._lexical_lock = threading.Lock()

    @property
    def mode(self) -> SearchMode:
        """Global retrieval: ``"dense"`` or ``"hybrid"`` (dense and BM25 merged as ``fusion`` says)."""
        return self._mode

    @mode.setter
    def mode(self, value: SearchMode) -> None:
        if value not in SEARCH_MODES:
            raise ValueError(f"mode must be one of {SEARCH_MODES}, got {value!r}")
        self._mode = value

    @property
    def batch_size(self) -> int:
        """How many (query, document) pairs the fusion encoder and the decoder see at once."""
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        check_batch_size(value)
        self._batch_size = value

    @classmethod
    def from_documents(
        cls,
        model: GeARModel,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        index_type: IndexType = "flat",
        batch_size: int = 32,
        show_progress: bool = False,
        sentences: bool | None = None,
        **index_params: int,
    ) -> GeARSearcher:
        """Encode ``texts`` with the document encoder and index them (ids default to "0", "1", ...).

        ``sentences``: keep each document's sentence vectors too (default: when the model scores documents by their
        best sentence, ``GeARConfig.indexes_sentences``). ``index_params`` go to :class:`DocumentIndex`
        (``m``/``ef_construction``/``ef_search``, ``nlist``/``nprobe``).
        """
        if sentences is None:
            sentences = model.config.indexes_sentences
        index = DocumentIndex(
            model.config.hidden_size, index_type, model=model_identity(model), sentences=sentences, **index_params
        )
        searcher = cls(model, index, check=False)  # the index is new: nothing to check
        searcher.add_documents(texts, ids, batch_size=batch_size, show_progress=show_progress)
        return searcher

    def add_documents(
        self,
        texts: Sequence[str],
        ids: Sequence[str] | None = None,
        batch_size: int = 32,
        show_progress: bool = False,
    ) -> None:
        """Encode and add more documents (ids default to their positions in the index, as strings); their sentences
        too when the index keeps sentence vectors."""
        if isinstance(texts, str):
            raise TypeError("expected a list of document texts, got a single string")
        texts = list(texts)
        if ids is None:
            ids = [str(len(self.index) + i) for i in range(len(texts))]
        encoded = encode_for_index(self.model, texts, self.index.has_sentences, batch_size, show_progress)
        with self._lexical_lock:
            self.index.add(encoded[0], ids, texts, *encoded[1:])
            self._lexical = None  # rebuilt with the new documents on the next hybrid search

    def search(
        self,
        query: str,
        k: int = 5,
        rank_sentences: bool = True,
        top_sentences: int | None = 3,
        generate: bool = False,
        max_new_tokens: int | None = None,
    ) -> list[SearchResult]:
        """The ``k`` best documents for ``query``, each with its ``top_sentences`` best sentences (all if None)
        and, with ``generate``, the decoder's evidence."""
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        return self.search_batch([query], k, rank_sentences, top_sentences, generate, max_new_tokens)[0]

    def search_batch(
        self,
        queries: Sequence[str],
        k: int = 5,
        rank_sentences: bool = True,
        top_sentences: int | None = 3,
        generate: bool = False,
        max_new_tokens: int | None = None,
    ) -> list[list[SearchResult]]:
        """:meth:`search` for several queries: one encoder pass for all queries, then batched pairs."""
        if isinstance(queries, str):
            raise TypeError("expected a list of queries, got a single string (use search())")
        queries = list(queries)
        hybrid = self.mode == "hybrid"
        depth = self.fusion.candidates(k) if hybrid else k
        hits = self.index.search(self.model.encode_queries(queries), depth, self.sentence_weight)
        if hybrid:
            results = self._fuse(hits, self.lexical_index().search(queries, depth), k)
        else:
            results = [[SearchResult.from_hit(hit) for hit in row] for row in hits]
        # Every (query, hit) pair, flattened so the fusion encoder and decoder run in full batches.
        pairs = [(queries[q], result) for q, row in enumerate(results) for result in row]
        if not pairs:
            return results
        pair_queries = [query for query, _ in pairs]
        pair_texts = [result.text for _, result in pairs]
        ranked: list[list[ScoredSentence]] | None = None
        evidence: list[GroundedEvidence] | None = None
        if rank_sentences and generate:  # one ranking pass serves the sentences and the evidence
            ranked, evidence = self.model.rank_and_generate_batch(
                pair_queries, pair_texts, top_n=top_sentences, max_new_tokens=max_new_tokens, batch_size=self.batch_size
            )
        elif rank_sentences:
            ranked = self.model.rank_sentences_batch(
                pair_queries, pair_texts, top_n=top_sentences, batch_size=self.batch_size
            )
        elif generate:
            evidence = self.model.generate_evidence_batch(
                pair_queries, pair_texts, max_new_tokens=max_new_tokens, batch_size=self.batch_size
            )
        for p, (_, result) in enumerate(pairs):
            if ranked is not None:
                result.sentences = ranked[p]
            if evidence is not None:
                result.evidence = evidence[p]
        return results

    @property
    def sentence_weight(self) -> float:
        """How much a document's best sentence counts in dense scores: the model's ``retrieval_sentence_weight``
        when the index keeps sentence vectors, else 0 (an index built without them scores documents alone)."""
        return float(self.model.config.retrieval_sentence_weight) if self.index.has_sentences else 0.0

    def lexical_index(self) -> LexicalIndex:
        """BM25 over the index's documents (what hybrid mode fuses), built on first use from their stored texts."""
        with self._lexical_lock:
            if self._lexical is None:
                ids = self.index.ids
                self._lexical = LexicalIndex(ids, [self.index.get_text(id_) for id_ in ids])
            return self._lexical

    def _fuse(self, dense: list[list[Hit]], lexical: list[list[tuple[str, float]]], k: int) -> list[list[SearchResult]]:
        """Each query's dense and BM25 hits merged by ``self.fusion``, the best ``k``."""
        results = []
        for dense_row, lexical_row in zip(dense, lexical, strict=True):
            rankings = {"dense": [(hit.id, hit.score) for hit in dense_row], "bm25": lexical_row}
            fused = self.fusion.fuse(rankings["dense"], rankings["bm25"], k)
            found = {name: {id_ for id_, _ in ranking} for name, ranking in rankings.items()}
            results.append(
                [
                    SearchResult(
                        id=id_,
                        text=self.index.get_text(id_),
                        score=score,
                        rank=rank,
                        found_by=tuple(name for name, ids in found.items() if id_ in ids),
                    )
                    for rank, (id_, score) in enumerate(fused, start=1)
                ]
            )
        return results

    def save(self, folder: str | os.PathLike) -> Path:
        """Save the index (the model is not saved: keep it with ``model.save_pretrained``)."""
        return self.index.save(folder)

    @classmethod
    def load(
        cls,
        folder: str | os.PathLike,
        model: GeARModel,
        batch_size: int = 16,
        check: bool = True,
        mode: SearchMode = "hybrid",
        fusion: HybridFusion | None = None,
    ) -> GeARSearcher:
        """Load a saved index for ``model``; an index built with another model raises ModelMismatchError
        (``check=False`` skips that check, at your own risk)."""
        index = DocumentIndex.load(folder, expected_model=model_identity(model) if check else None)
        # The model was checked above, before the big read.
        return cls(model, index, batch_size=batch_size, check=False, mode=mode, fusion=fusion)
