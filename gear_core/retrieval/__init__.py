"""Document retrieval with GeAR: a FAISS document index persisted with self-describing metadata, and a searcher
that returns documents, the sentences inside them that answer, and optionally generated evidence."""

from gear_core.retrieval.index import (
    INDEX_TYPES,
    DocumentIndex,
    Hit,
    IndexType,
    ModelMismatchError,
    document_scores,
    model_identity,
    same_model,
)
from gear_core.retrieval.lexical import (
    FUSION_METHODS,
    FusionMethod,
    HybridFusion,
    LexicalIndex,
    reciprocal_rank_fusion,
    z_score_fusion,
)
from gear_core.retrieval.searcher import SEARCH_MODES, GeARSearcher, SearchMode, SearchResult, encode_for_index

__all__ = [
    "FUSION_METHODS",
    "INDEX_TYPES",
    "SEARCH_MODES",
    "DocumentIndex",
    "FusionMethod",
    "GeARSearcher",
    "Hit",
    "HybridFusion",
    "IndexType",
    "LexicalIndex",
    "ModelMismatchError",
    "SearchMode",
    "SearchResult",
    "document_scores",
    "encode_for_index",
    "model_identity",
    "reciprocal_rank_fusion",
    "same_model",
    "z_score_fusion",
]
