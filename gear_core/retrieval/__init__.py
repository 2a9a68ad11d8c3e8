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
from gear_core.retrieval.lexical import HybridFusion, LexicalIndex, reciprocal_rank_fusion
from gear_core.retrieval.searcher import SEARCH_MODES, GeARSearcher, SearchMode, SearchResult

__all__ = [
    "INDEX_TYPES",
    "SEARCH_MODES",
    "DocumentIndex",
    "GeARSearcher",
    "Hit",
    "HybridFusion",
    "IndexType",
    "LexicalIndex",
    "ModelMismatchError",
    "SearchMode",
    "SearchResult",
    "model_identity",
    "reciprocal_rank_fusion",
    "same_model",
]
