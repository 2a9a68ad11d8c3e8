"""LlamaIndex adapters for GeAR: an embedding model, a retriever, a sentence highlighter, a passage splitter and
citation helpers.

The adapters convert between LlamaIndex nodes and text and call into ``gear_core``; the model is
``gear_core.GeARModel``.
"""

from llama_index_gear.citation import (
    GEAR_CITATION_QA_TEMPLATE,
    GEAR_CITATION_REFINE_TEMPLATE,
    Citation,
    GeARCitationQueryEngine,
    build_citations,
    citations_from_response,
    format_citations,
)
from llama_index_gear.display import highlights_html
from llama_index_gear.embedding import GeAREmbedding
from llama_index_gear.highlighter import (
    EVIDENCE_KEY,
    HIGHLIGHTS_KEY,
    PRUNED_KEY,
    GeARHighlightEndEvent,
    GeARHighlighter,
    GeARHighlightStartEvent,
)
from llama_index_gear.retriever import FOUND_BY_KEY, GeARRetriever, default_node_parser
from llama_index_gear.splitter import GeARPassageSplitter

__all__ = [
    "EVIDENCE_KEY",
    "FOUND_BY_KEY",
    "GEAR_CITATION_QA_TEMPLATE",
    "GEAR_CITATION_REFINE_TEMPLATE",
    "HIGHLIGHTS_KEY",
    "PRUNED_KEY",
    "Citation",
    "GeARCitationQueryEngine",
    "GeAREmbedding",
    "GeARHighlightEndEvent",
    "GeARHighlightStartEvent",
    "GeARHighlighter",
    "GeARPassageSplitter",
    "GeARRetriever",
    "build_citations",
    "citations_from_response",
    "default_node_parser",
    "format_citations",
    "highlights_html",
]
