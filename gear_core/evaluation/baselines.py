"""The systems GeAR is compared with, each answering the same two questions GeAR answers.

- global retrieval: rank every paragraph of a corpus for a question -> the ids of the top ``k``;
- local retrieval: rank a paragraph's sentences for a question -> sentence indices, best first.

Dense baselines (all-MiniLM-L6-v2) run through ``GeARModel``'s own encoders: fresh from the encoder, GeAR's
query and document encoders *are* that model with sentence-transformers' mean pooling (tests/test_minilm.py), so
one pooling implementation serves GeAR and its baseline. BM25 is the bm25s library (Lucene's BM25 variant,
English stop words, Snowball stemming).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from gear_core.evaluation.metrics import ranking_from_scores
from gear_core.evaluation.tasks import QuestionExample
from gear_core.retrieval.index import DocumentIndex
from gear_core.retrieval.lexical import LexicalIndex
from gear_core.scoring import bm25_sentence_scores

if TYPE_CHECKING:
    from gear_core.modeling import GeARModel


def dense_encoder(name_or_path: str = "all-MiniLM-L6-v2", max_length: int = 256) -> GeARModel:
    """A bi-encoder baseline: a fresh GeAR from ``name_or_path`` with one shared encoder.

    ``max_length`` is the baseline's own token limit (256 is what sentence-transformers uses for all-MiniLM-L6-v2).
    """
    from transformers import AutoConfig

    from gear_core.folders import resolve_encoder_path
    from gear_core.modeling import GeARModel

    max_length = min(max_length, AutoConfig.from_pretrained(resolve_encoder_path(name_or_path)).max_position_embeddings)
    model = GeARModel.from_encoder(
        name_or_path,
        shared_encoder=True,
        cross_attention_layers=[-1],  # the baseline only encodes: keep the unused fusion and decoder parts minimal
        ranking_layer=-1,
        decoder_num_layers=1,
        max_document_length=max_length,
        max_query_length=min(64, max_length),
    )
    return model.eval()


def dense_search(
    model: GeARModel,
    queries: Sequence[str],
    corpus_ids: Sequence[str],
    corpus_texts: Sequence[str],
    k: int,
    batch_size: int = 32,
    show_progress: bool = False,
    corpus_embeddings: np.ndarray | None = None,
) -> list[list[str]]:
    """Top-``k`` corpus ids per query from an exact inner-product FAISS index of the model's document vectors."""
    if corpus_embeddings is None:
        corpus_embeddings = model.encode_documents(corpus_texts, batch_size=batch_size, show_progress=show_progress)
    index = DocumentIndex(model.config.hidden_size)
    index.add(corpus_embeddings, corpus_ids, corpus_texts)
    hits = index.search(model.encode_queries(queries, batch_size=batch_size), k)
    return [[hit.id for hit in row] for row in hits]


def dense_sentence_rankings(
    model: GeARModel, examples: Sequence[QuestionExample], batch_size: int = 64
) -> list[list[int]]:
    """Each paragraph's sentences ranked by cosine(question, sentence): what LlamaIndex's
    SentenceEmbeddingOptimizer does. Each distinct sentence is encoded once."""
    texts: dict[str, int] = {}
    for example in examples:
        for sentence in example.sentences:
            texts.setdefault(sentence.text, len(texts))
    sentence_vectors = model.encode_documents(list(texts), batch_size=batch_size)
    query_vectors = model.encode_queries([e.question for e in examples], batch_size=batch_size)
    rankings = []
    for example, query in zip(examples, query_vectors, strict=True):
        rows = [texts[s.text] for s in example.sentences]
        rankings.append(ranking_from_scores((sentence_vectors[rows] @ query).tolist()))
    return rankings


def bm25_search(
    queries: Sequence[str], corpus_ids: Sequence[str], corpus_texts: Sequence[str], k: int
) -> list[list[str]]:
    """Top-``k`` corpus ids per query by BM25 over the whole corpus (:class:`~gear_core.retrieval.LexicalIndex`:
    documents sharing no term with the query are not returned)."""
    index = LexicalIndex(corpus_ids, corpus_texts)
    return [[id_ for id_, _ in row] for row in index.search(queries, k)]


def bm25_sentence_rankings(examples: Sequence[QuestionExample]) -> list[list[int]]:
    """Each paragraph's sentences ranked by BM25, the paragraph's sentences being the corpus (statistics included):
    :func:`~gear_core.scoring.bm25_sentence_scores`, the lexical part of GeAR's ``ranking_lexical_weight``."""
    return [
        ranking_from_scores(bm25_sentence_scores(e.question, [s.text for s in e.sentences]).tolist()) for e in examples
    ]


def first_sentence_rankings(examples: Sequence[QuestionExample]) -> list[list[int]]:
    """Sentences in document order: the lead-sentence baseline."""
    return [list(range(len(e.sentences))) for e in examples]
