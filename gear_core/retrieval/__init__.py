"""Document retrieval with GeAR: a FAISS document index persisted with self-describing metadata, and a searcher
that returns documents, the sentences inside them that answer, and optionally generated evidence."""

from gear_core.retrieval.index import (
    INDEX_TYPES,
    DocumentIndex,
    Hit,
    IndexType,
    ModelMismatchError,
    model_identity,
    same_model,
)
from gear_core.retrieval.searcher import GeARSearcher, SearchResult

__all__ = [
    "INDEX_TYPES",
    "DocumentIndex",
    "GeARSearcher",
    "Hit",
    "IndexType",
    "ModelMismatchError",
    "SearchResult",
    "model_identity",
    "same_model",
]
