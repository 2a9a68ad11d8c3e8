"""GeARHighlighter: the metadata contract, prune mode, non-text nodes, async, instrumentation, other retrievers."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import stub_evidence, ticks_while
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.bridge.pydantic import Field
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import ImageNode, IndexNode, MediaResource, MetadataMode, Node, NodeWithScore, TextNode

from gear_core import ScoredSentence, split_sentences
from llama_index_gear import (
    EVIDENCE_KEY,
    HIGHLIGHTS_KEY,
    PRUNED_KEY,
    GeARHighlightEndEvent,
    GeARHighlighter,
    GeARHighlightStartEvent,
)

PARIS = (
    "Paris is the capital of France. The Seine flows through Paris. Paris hosted the Olympics in 1900.\n\n"
    "The Louvre is the most visited museum in the world. It holds the Mona Lisa."
)
JUPITER = "Jupiter is the largest planet. It has dozens of moons. Jupiter is a gas giant made of hydrogen."
QUERY = "Which city is the capital of France?"


def scored(*nodes) -> list[NodeWithScore]:
    return [NodeWithScore(node=node, score=1.0 - i / 10) for i, node in enumerate(nodes)]


def check_highlights(node, document_text: str | None = None) -> None:
    """The contract: offsets slice node.get_content() (and the source document where known), best first."""
    highlights = node.metadata[HIGHLIGHTS_KEY]
    content = node.get_content()
    for h in highlights:
        assert content[h["start_char_idx"] : h["end_char_idx"]] == h["text"]
        if document_text is not None:
            assert document_text[h["doc_start_char_idx"] : h["doc_end_char_idx"]] == h["text"]
    scores = [h["score"] for h in highlights]
    assert scores == sorted(scores, reverse=True)


def test_contract_on_split_document(tiny_model):
    document = Document(text=PARIS * 3, metadata={"title": "Paris"})
    nodes = SentenceSplitter(chunk_size=60, chunk_overlap=10).get_nodes_from_documents([document])
    assert len(nodes) > 1 and any(n.start_char_idx for n in nodes)
    highlighter = GeARHighlighter(model=tiny_model, top_n=2)
    out = highlighter.postprocess_nodes(scored(*nodes), query_str=QUERY)

    assert [n.node.node_id for n in out] == [n.node_id for n in nodes]
    assert [n.score for n in out] == [n.score for n in scored(*nodes)]
    for result in out:
        assert len(result.node.metadata[HIGHLIGHTS_KEY]) == 2
        assert set(result.node.metadata[HIGHLIGHTS_KEY][0]) == {
            "text",
            "start_char_idx",
            "end_char_idx",
            "score",
            "doc_start_char_idx",
            "doc_end_char_idx",
        }
        check_highlights(result.node, document.text)
        # The highlights stay out of prompts and embeddings; the node's own metadata does not.
        for mode in (MetadataMode.LLM, MetadataMode.EMBED):
            content = result.node.get_content(metadata_mode=mode)
            assert "title: Paris" in content
            assert HIGHLIGHTS_KEY not in content and "start_char_idx" not in content
    assert all(HIGHLIGHTS_KEY not in n.metadata for n in nodes), "the input nodes are not modified"

    # Running twice adds the exclusions once.
    again = highlighter.postprocess_nodes(out, query_str=QUERY)
    for result in again:
        for keys in (result.node.excluded_llm_metadata_keys, result.node.excluded_embed_metadata_keys):
            assert keys.count(HIGHLIGHTS_KEY) == 1 and keys.count(EVIDENCE_KEY) == 1


def test_min_score_top_n_and_evidence(tiny_model):
    nodes = scored(TextNode(text=PARIS), TextNode(text=JUPITER))
    everything = GeARHighlighter(model=tiny_model, top_n=100).postprocess_nodes(nodes, query_str=QUERY)
    assert len(everything[0].node.metadata[HIGHLIGHTS_KEY]) == len(split_sentences(PARIS))
    assert "doc_start_char_idx" not in everything[0].node.metadata[HIGHLIGHTS_KEY][0]  # offsets unknown

    scores = sorted(h["score"] for h in everything[0].node.metadata[HIGHLIGHTS_KEY])
    cutoff = scores[len(scores) // 2]
    highlighter = GeARHighlighter(model=tiny_model, top_n=100, min_score=cutoff, generate_evidence=True)
    out = highlighter.postprocess_nodes(nodes, query_str=QUERY)
    kept = out[0].node.metadata[HIGHLIGHTS_KEY]
    assert kept and all(h["score"] >= cutoff for h in kept) and len(kept) < len(scores)
    for result in out:
        check_highlights(result.node)
        evidence = result.node.metadata[EVIDENCE_KEY]
        assert isinstance(evidence["text"], str) and 0 <= evidence["support"] <= 1
        if evidence["start_char_idx"] is not None:
            assert evidence["end_char_idx"] <= len(result.node.get_content())
        assert EVIDENCE_KEY not in result.node.get_content(metadata_mode=MetadataMode.LLM)
    assert out[0].node.text == PARIS, "annotate mode keeps the text"


def test_prune_keeps_only_selected_sentences(tiny_model):
    document = Document(text=PARIS)
    [node] = SentenceSplitter(chunk_size=200, chunk_overlap=0).get_nodes_from_documents([document])
    sentences = split_sentences(PARIS)
    best = GeARHighlighter(model=tiny_model, top_n=1).postprocess_nodes(scored(node), query_str=QUERY)
    top = best[0].node.metadata[HIGHLIGHTS_KEY][0]

    pruned = GeARHighlighter(model=tiny_model, top_n=1, mode="prune").postprocess_nodes(scored(node), query_str=QUERY)
    assert pruned[0].node.text == top["text"]
    [highlight] = pruned[0].node.metadata[HIGHLIGHTS_KEY]
    assert (highlight["start_char_idx"], highlight["end_char_idx"]) == (0, len(top["text"]))
    check_highlights(pruned[0].node, document.text)  # doc offsets still point into the source document
    assert pruned[0].node.metadata[PRUNED_KEY] == {
        "original_length": len(PARIS),
        "kept_spans": [[top["start_char_idx"], top["end_char_idx"]]],
    }
    assert PRUNED_KEY not in pruned[0].node.get_content(metadata_mode=MetadataMode.LLM)
    assert node.text == PARIS, "the input node is not modified"

    # Two selected sentences plus one neighbour each: runs of adjacent sentences keep the text between them.
    highlighter = GeARHighlighter(model=tiny_model, top_n=2, mode="prune", neighbors=1, separator=" ~ ")
    [result] = highlighter.postprocess_nodes(scored(node), query_str=QUERY)
    position = {s.start_char: i for i, s in enumerate(sentences)}
    chosen = {position[h["doc_start_char_idx"]] for h in result.node.metadata[HIGHLIGHTS_KEY]}
    kept = sorted({j for i in chosen for j in (i - 1, i, i + 1) if 0 <= j < len(sentences)})
    spans = result.node.metadata[PRUNED_KEY]["kept_spans"]
    assert result.node.text == " ~ ".join(PARIS[s:e] for s, e in spans)
    assert [s.start_char for s in sentences if any(a <= s.start_char < b for a, b in spans)] == [
        sentences[j].start_char for j in kept
    ]
    check_highlights(result.node, document.text)


def test_evidence_is_grounded_to_a_span_in_node_document_and_pruned_text(tiny_model, monkeypatch):
    """With known decoder outputs: the evidence's span slices the node's text, the source document, and in prune
    mode the pruned text (or is None when its sentence was pruned away)."""
    outputs = {"supported": "the Mona Lisa", "unsupported": "zebra crossing"}
    answer = {"value": outputs["supported"]}
    stub_evidence(monkeypatch, tiny_model, lambda queries, texts, **kwargs: [answer["value"]] * len(texts))
    document = Document(text="Intro sentence here. " + PARIS)
    [node] = SentenceSplitter(chunk_size=200, chunk_overlap=0).get_nodes_from_documents([document])
    highlighter = GeARHighlighter(model=tiny_model, top_n=100, generate_evidence=True)
    [result] = highlighter.postprocess_nodes(scored(node), query_str="What does the Louvre hold?")
    evidence = result.node.metadata[EVIDENCE_KEY]
    assert evidence["grounded"] and evidence["support"] == 1.0
    assert result.node.get_content()[evidence["start_char_idx"] : evidence["end_char_idx"]] == "Mona Lisa"
    assert document.text[evidence["doc_start_char_idx"] : evidence["doc_end_char_idx"]] == "Mona Lisa"

    # Prune mode keeping every sentence: the span moves with the text; keeping one sentence that is not the
    # evidence's: the span is gone from the text (None) but still known in the source document.
    [kept_all] = GeARHighlighter(
        model=tiny_model, top_n=100, mode="prune", separator=" | ", generate_evidence=True
    ).postprocess_nodes(scored(node), query_str="x")
    moved = kept_all.node.metadata[EVIDENCE_KEY]
    assert kept_all.node.get_content()[moved["start_char_idx"] : moved["end_char_idx"]] == "Mona Lisa"

    def first_sentence_best(queries, texts, **kwargs):
        sentences = split_sentences(texts[0])
        return [[ScoredSentence(s.text, s.start_char, s.end_char, float(i == 0)) for i, s in enumerate(sentences)]]

    monkeypatch.setattr(tiny_model, "rank_sentences_batch", first_sentence_best)
    [pruned] = GeARHighlighter(model=tiny_model, top_n=1, mode="prune", generate_evidence=True).postprocess_nodes(
        scored(node), query_str="x"
    )
    gone = pruned.node.metadata[EVIDENCE_KEY]
    assert pruned.node.get_content() == "Intro sentence here."
    assert (
        gone["start_char_idx"] is None
        and document.text[gone["doc_start_char_idx"] : gone["doc_end_char_idx"]] == "Mona Lisa"
    )

    answer["value"] = outputs["unsupported"]
    [ungrounded] = highlighter.postprocess_nodes(scored(node), query_str="x")
    assert ungrounded.node.metadata[EVIDENCE_KEY] == {
        "text": "zebra crossing",
        "grounded": False,
        "support": 0.0,
        "start_char_idx": None,
        "end_char_idx": None,
    }


def test_prune_drops_nodes_with_nothing_selected(tiny_model):
    nodes = scored(TextNode(text=PARIS), TextNode(text=""))
    out = GeARHighlighter(model=tiny_model, mode="prune", min_score=1e9).postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.text for n in out] == [""], "nothing of the Paris node scored high enough: it is dropped"
    assert out[0].node.metadata[HIGHLIGHTS_KEY] == []


def test_non_text_empty_and_long_nodes(tiny_model):
    image = ImageNode(image_url="https://example.com/cat.png", metadata={"kind": "image"})
    image_only = Node(image_resource=MediaResource(url="https://example.com/dog.png"))
    multimodal_text = Node(text_resource=MediaResource(text=JUPITER))
    empty, blank = TextNode(text=""), TextNode(text="  \n ")
    long_text = " ".join(f"Sentence number {i} talks about topic {i}." for i in range(40))
    long_node = TextNode(text=long_text)
    assert len(tiny_model.tokenizer.tokenize(long_text)) > 3 * tiny_model.config.max_document_length

    nodes = scored(image, empty, multimodal_text, image_only, blank, long_node)
    highlighter = GeARHighlighter(model=tiny_model, top_n=100, generate_evidence=True)
    out = highlighter.postprocess_nodes(nodes, query_str="topic 37")
    assert [n.node.node_id for n in out] == [n.node.node_id for n in nodes]
    assert out[0].node.metadata == {"kind": "image"} and out[3].node.metadata == {}, "non-text nodes untouched"
    for result in (out[1], out[4]):
        assert result.node.metadata[HIGHLIGHTS_KEY] == [] and EVIDENCE_KEY not in result.node.metadata
    check_highlights(out[2].node)
    assert out[2].node.metadata[HIGHLIGHTS_KEY]
    # Beyond the window: every sentence is read (gear_core windows the text) and gets a score.
    highlights = out[5].node.metadata[HIGHLIGHTS_KEY]
    assert len(highlights) == 40 and all(h["score"] > 0 for h in highlights)
    check_highlights(out[5].node)


def test_index_nodes_are_not_deep_copied_and_stale_evidence_goes(tiny_model):
    target = object()  # an IndexNode's obj may be any object (a retriever, a query engine, ...)
    index_node = IndexNode(text=PARIS, index_id="paris", obj=target)
    with_evidence = GeARHighlighter(model=tiny_model, generate_evidence=True).postprocess_nodes(
        scored(index_node), query_str=QUERY
    )
    assert with_evidence[0].node.obj is target and EVIDENCE_KEY in with_evidence[0].node.metadata
    again = GeARHighlighter(model=tiny_model).postprocess_nodes(with_evidence, query_str="Who won in 1900?")
    assert EVIDENCE_KEY not in again[0].node.metadata, "evidence for another query is not kept"
    assert EVIDENCE_KEY in with_evidence[0].node.metadata and index_node.metadata == {}


def test_needs_a_query(tiny_model):
    with pytest.raises(ValueError, match="needs the query"):
        GeARHighlighter(model=tiny_model).postprocess_nodes(scored(TextNode(text=PARIS)))


def test_async_postprocess_matches_sync(tiny_model):
    highlighter = GeARHighlighter(model=tiny_model, top_n=2, mode="prune", neighbors=1)
    nodes = scored(TextNode(text=PARIS), TextNode(text=JUPITER))
    sync = highlighter.postprocess_nodes(nodes, query_str=QUERY)
    result = asyncio.run(highlighter.apostprocess_nodes(nodes, query_str=QUERY))
    assert [(n.node.text, n.node.metadata) for n in result] == [(n.node.text, n.node.metadata) for n in sync]


class Collector(BaseEventHandler):
    events: list = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "Collector"

    def handle(self, event, **kwargs) -> None:
        self.events.append(event)


def test_instrumentation_events_and_span(tiny_model):
    root = get_dispatcher()
    events, spans = Collector(), SimpleSpanHandler()
    root.add_event_handler(events)
    root.add_span_handler(spans)
    try:
        nodes = scored(TextNode(text=PARIS), ImageNode(image_url="https://example.com/cat.png"), TextNode(text=""))
        GeARHighlighter(model=tiny_model, top_n=2).postprocess_nodes(nodes, query_str=QUERY)
    finally:
        root.event_handlers.remove(events)
        root.span_handlers.remove(spans)
    [start] = [e for e in events.events if isinstance(e, GeARHighlightStartEvent)]
    [end] = [e for e in events.events if isinstance(e, GeARHighlightEndEvent)]
    assert (start.query_str, start.num_nodes) == (QUERY, 3)
    assert (end.num_nodes, end.num_ranked, end.num_skipped, end.num_dropped) == (3, 1, 1, 0)
    assert (end.num_highlights, end.num_evidence) == (2, 0)
    assert start.span_id is not None and start.span_id == end.span_id
    assert start.span_id.startswith("GeARHighlighter._postprocess_nodes")
    assert any(s.id_ == start.span_id for s in spans.completed_spans)


def non_gear_retriever(kind: str, nodes: list) -> BaseRetriever:
    if kind == "bm25":
        bm25 = pytest.importorskip("llama_index.retrievers.bm25", reason="llama-index-retrievers-bm25 is not installed")
        return bm25.BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=3)
    return VectorStoreIndex(nodes, embed_model=MockEmbedding(embed_dim=8)).as_retriever(similarity_top_k=3)


@pytest.mark.parametrize("kind", ["vector", "bm25"])
def test_after_a_non_gear_retriever(tiny_model, kind):
    documents = [Document(text=PARIS, doc_id="paris"), Document(text=JUPITER, doc_id="jupiter")]
    nodes = SentenceSplitter(chunk_size=40, chunk_overlap=0).get_nodes_from_documents(documents)
    retriever = non_gear_retriever(kind, nodes)
    highlighter = GeARHighlighter(model=tiny_model, top_n=2)
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM(), node_postprocessors=[highlighter])
    response = engine.query(QUERY)
    assert len(response.source_nodes) == 3
    texts = {d.doc_id: d.text for d in documents}
    for source in response.source_nodes:
        assert source.node.metadata[HIGHLIGHTS_KEY]
        check_highlights(source.node, texts[source.node.ref_doc_id])
    assert HIGHLIGHTS_KEY not in str(response) and "start_char_idx" not in str(response), (
        "MockLLM echoes the prompt: no highlights leaked into it"
    )
    # The async path gives the same sources; the retriever's own nodes are not changed by highlighting.
    async_response = asyncio.run(engine.aquery(QUERY))
    assert [(s.node.node_id, s.node.metadata) for s in async_response.source_nodes] == [
        (s.node.node_id, s.node.metadata) for s in response.source_nodes
    ]
    assert all(HIGHLIGHTS_KEY not in n.metadata for n in nodes)


def test_async_postprocess_does_not_block_the_event_loop(tiny_model, monkeypatch):
    rank = tiny_model.rank_sentences_batch

    def slow_rank(*args, **kwargs):
        time.sleep(0.3)  # stands in for a long forward pass
        return rank(*args, **kwargs)

    monkeypatch.setattr(tiny_model, "rank_sentences_batch", slow_rank)
    highlighter = GeARHighlighter(model=tiny_model)
    assert ticks_while(highlighter.apostprocess_nodes(scored(TextNode(text=PARIS)), query_str=QUERY)) >= 5


def test_lone_surrogates_in_nodes_and_queries(tiny_model):
    text = "Paris \ud800 is the capital. The Seine \udc00 flows."
    [result] = GeARHighlighter(model=tiny_model, top_n=2, generate_evidence=True).postprocess_nodes(
        scored(TextNode(text=text)), query_str="capital \ud800?"
    )
    check_highlights(result.node)
    assert len(result.node.metadata[HIGHLIGHTS_KEY]) == 2 and isinstance(result.node.metadata[EVIDENCE_KEY], dict)


ODD = (
    "Cafe\u0301 de Flore is in Paris.\u00a0It opened in 1887. Zero\u200bwidth joiners\u200d stay here. "
    "The menu lists cre\u0300me bru\u0302le\u0301e. It is famous."
)


@pytest.mark.parametrize("mode", ["annotate", "prune"])
def test_offsets_stay_exact_on_decomposed_accents_zero_width_characters_and_nbsp(tiny_model, mode):
    document = Document(text=ODD + "\n\n" + ODD)
    nodes = SentenceSplitter(chunk_size=40, chunk_overlap=5).get_nodes_from_documents([document])
    assert len(nodes) > 1
    highlighter = GeARHighlighter(model=tiny_model, top_n=2, mode=mode, neighbors=1 if mode == "prune" else 0)
    for result in highlighter.postprocess_nodes(scored(*nodes), query_str="When did the cafe open?"):
        assert result.node.metadata[HIGHLIGHTS_KEY]
        check_highlights(result.node, document.text)
        if mode == "prune":
            text, spans = result.node.text, result.node.metadata[PRUNED_KEY]["kept_spans"]
            original = next(n for n in nodes if n.node_id == result.node.node_id).text
            assert all(original[a:b] in text for a, b in spans)


def test_highlights_html_marks_each_highlight_at_its_offsets(tiny_model, monkeypatch):
    from llama_index_gear import highlights_html

    node = TextNode(text="A <tag> & one. Second sentence here. Third.", id_="n1")
    [result] = GeARHighlighter(model=tiny_model, top_n=2).postprocess_nodes(scored(node), query_str="second")
    page = highlights_html(result, title="Doc <1>")
    for rank, h in enumerate(result.node.metadata[HIGHLIGHTS_KEY], start=1):
        text = h["text"].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert (
            f'title="#{rank} · score {h["score"]:.4f} · chars {h["start_char_idx"]}-{h["end_char_idx"]}">{text}</mark>'
            in page
        )
    assert "Doc &lt;1&gt;" in page and "(score 1.000)" in page and "<tag>" not in page
    assert page.count("<mark") == 2 and "evidence" not in page
