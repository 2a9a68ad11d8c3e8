"""Citation-aware answers: numbered GeAR sentences in the prompt, [n] markers mapped back to exact offsets.

Shown next to LlamaIndex's own CitationQueryEngine; both run with MockLLM, which echoes the prompt it is given.
"""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core import Document
from llama_index.core.base.response.schema import Response
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import CitationQueryEngine
from llama_index.core.schema import NodeWithScore, TextNode

from llama_index_gear import (
    HIGHLIGHTS_KEY,
    Citation,
    GeARCitationQueryEngine,
    GeARHighlighter,
    GeARRetriever,
    build_citations,
    citations_from_response,
    format_citations,
)
from llama_index_gear.citation import CITATIONS_KEY

TEXTS = {
    "paris": "Paris is the capital of France. The Seine flows through Paris. Paris hosted the Olympics in 1900.",
    "jupiter": "Jupiter is the largest planet. It has dozens of moons. Jupiter is a gas giant.",
    "water": "Water boils at 100 degrees. Water freezes at 0 degrees. Ice floats on water.",
}
QUERY = "Which city is the capital of France?"


@pytest.fixture
def docs() -> list[Document]:
    return [Document(text=" ".join([text] * 2), doc_id=key) for key, text in TEXTS.items()]


def check_citations(citations: list[Citation], sources: list[NodeWithScore], docs: list[Document]) -> None:
    nodes = {s.node.node_id: s.node for s in sources}
    texts = {d.doc_id: d.text for d in docs}
    assert [c.number for c in citations] == list(range(1, len(citations) + 1))
    for c in citations:
        assert nodes[c.node_id].get_content()[c.start_char_idx : c.end_char_idx] == c.text
        assert texts[c.ref_doc_id][c.doc_start_char_idx : c.doc_end_char_idx] == c.text


def test_gear_citations_next_to_llama_index_citation_engine(tiny_model, docs):
    retriever = GeARRetriever.from_defaults(documents=docs, model=tiny_model, similarity_top_k=3)
    highlighter = GeARHighlighter(model=tiny_model, top_n=2)

    # LlamaIndex's engine: numbered chunks ("Source 1:") of the retrieved nodes.
    theirs = CitationQueryEngine(retriever=retriever, llm=MockLLM(), node_postprocessors=[highlighter]).query(QUERY)
    assert "Source 1:" in str(theirs)

    # Ours: numbered sentences, with the highlighted nodes as the sources.
    engine = GeARCitationQueryEngine.from_args(retriever, llm=MockLLM(), highlighter=highlighter)
    response = engine.query(QUERY)
    prompt = str(response)  # MockLLM echoes the prompt
    assert "square brackets" in prompt and QUERY in prompt
    assert len(response.source_nodes) == 3
    for source in response.source_nodes:
        highlights = source.node.metadata[HIGHLIGHTS_KEY]
        assert len(highlights) == 2
        for h in highlights:
            assert source.node.get_content()[h["start_char_idx"] : h["end_char_idx"]] == h["text"]
    citations = response.metadata[CITATIONS_KEY]
    assert len(citations) == 6
    assert format_citations(citations) in prompt.replace("\n\n", "\n")
    for c in citations:
        assert f"[{c.number}] {c.text}" in prompt
    check_citations(citations, response.source_nodes, docs)
    # Response metadata still maps node ids to metadata, as LlamaIndex responses do.
    assert all(response.metadata[s.node.node_id] == s.node.metadata for s in response.source_nodes)

    # An answer's [n] markers map back to the citations, in order of first mention.
    answer = Response("Paris is the capital [3], see also [1, 2] and [3] [99].", source_nodes=response.source_nodes)
    answer.metadata = response.metadata
    assert citations_from_response(answer) == [citations[2], citations[0], citations[1]]
    assert citations_from_response("Only [2].", citations=citations) == [citations[1]]
    # Without stored citations they are rebuilt from the source nodes' highlights: same numbering.
    bare = Response("[4]", source_nodes=response.source_nodes)
    assert citations_from_response(bare) == [citations[3]]


def test_aquery_and_default_highlighter(tiny_model, docs):
    retriever = GeARRetriever.from_defaults(documents=docs, model=tiny_model, similarity_top_k=2)
    engine = GeARCitationQueryEngine.from_args(retriever, llm=MockLLM())  # highlighter from the retriever's model
    response = asyncio.run(engine.aquery(QUERY))
    citations = citations_from_response(response)  # the echoed prompt cites every sentence
    assert citations == response.metadata[CITATIONS_KEY] and len(citations) == 2 * 3
    check_citations(citations, response.source_nodes, docs)


def test_with_retriever_keeps_the_citations(tiny_model, docs):
    first = GeARRetriever.from_defaults(documents=docs[:1], model=tiny_model, similarity_top_k=1)
    second = GeARRetriever.from_defaults(documents=docs[1:], model=tiny_model, similarity_top_k=1)
    engine = GeARCitationQueryEngine.from_args(first, llm=MockLLM()).with_retriever(second)
    assert isinstance(engine, GeARCitationQueryEngine) and engine.retriever is second
    response = engine.query(QUERY)
    citations = response.metadata[CITATIONS_KEY]
    assert citations and {c.ref_doc_id for c in citations} <= {"jupiter", "water"}
    assert "[1] " in str(response)


def test_build_citations_order_and_fallbacks(tiny_model):
    highlighted = GeARHighlighter(model=tiny_model, top_n=2).postprocess_nodes(
        [NodeWithScore(node=TextNode(text=TEXTS["paris"]), score=0.9)], query_str=QUERY
    )
    water = TEXTS["water"]
    plain = NodeWithScore(node=TextNode(text=water, start_char_idx=10, end_char_idx=10 + len(water)), score=0.5)
    empty = NodeWithScore(node=TextNode(text="x", metadata={HIGHLIGHTS_KEY: []}), score=0.1)
    citations = build_citations([*highlighted, plain, empty])
    first, second, whole = citations
    assert first.start_char_idx < second.start_char_idx, "a node's sentences are numbered in document order"
    assert (whole.number, whole.text, whole.start_char_idx, whole.score) == (3, TEXTS["water"], 0, 0.5)
    assert (whole.doc_start_char_idx, whole.doc_end_char_idx) == (10, 10 + len(water)), (
        "un-highlighted nodes are cited whole"
    )
    assert first.doc_start_char_idx is None


def test_citations_keep_exact_offsets_on_odd_unicode(tiny_model):
    text = (
        "Cafe\u0301 de Flore is in Paris.\u00a0It opened in 1887. Zero\u200bwidth here. Cre\u0300me bru\u0302le\u0301e."
    )
    documents = [Document(text=text, doc_id="cafe"), Document(text=TEXTS["water"], doc_id="water")]
    retriever = GeARRetriever.from_defaults(documents=documents, model=tiny_model, similarity_top_k=2)
    engine = GeARCitationQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query("When did the cafe open?")
    citations = response.metadata[CITATIONS_KEY]
    assert citations
    check_citations(citations, response.source_nodes, documents)
