"""Citation-aware answers: the LLM sees GeAR's highlighted sentences numbered ``[1] ...`` and cites them.

``GeARCitationQueryEngine`` is a ``RetrieverQueryEngine`` whose node postprocessors end with a
:class:`GeARHighlighter`; its prompt lists the highlighted sentences (not whole nodes) as numbered evidence, while
the response's ``source_nodes`` stay the highlighted nodes themselves. :func:`citations_from_response` maps the
``[n]`` markers of the answer back to :class:`Citation` objects: node id, exact character offsets into the node's
text and, where known, into the source document.

Compared with LlamaIndex's ``CitationQueryEngine``, which numbers fixed-size chunks of each node ("Source 1:"),
the unit cited here is a sentence GeAR found relevant, with offsets that point back into the original text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import RESPONSE_TYPE
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms import LLM
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.prompts import BasePromptTemplate, PromptTemplate
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.response_synthesizers import BaseSynthesizer, ResponseMode, get_response_synthesizer
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from llama_index_gear.highlighter import HIGHLIGHTS_KEY, GeARHighlighter, node_text, source_start
from llama_index_gear.retriever import GeARRetriever

dispatcher = get_dispatcher(__name__)

CITATIONS_KEY = "gear_citations"
_MARKER = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")  # [3], [1, 4]

GEAR_CITATION_QA_TEMPLATE = PromptTemplate(
    "Answer the query using only the numbered evidence sentences below. After each statement, cite the "
    "sentence(s) that support it by their numbers in square brackets, like [n]. Cite only sentences you use. "
    "If the sentences do not answer the query, say so.\n"
    "------\n"
    "{context_str}\n"
    "------\n"
    "Query: {query_str}\n"
    "Answer: "
)

GEAR_CITATION_REFINE_TEMPLATE = PromptTemplate(
    "Answer the query using only the numbered evidence sentences, citing the sentence(s) that support each "
    "statement by their numbers in square brackets, like [n].\n"
    "The existing answer is: {existing_answer}\n"
    "Refine it with the further numbered sentences below; if they do not help, repeat the existing answer.\n"
    "------\n"
    "{context_msg}\n"
    "------\n"
    "Query: {query_str}\n"
    "Answer: "
)


@dataclass(frozen=True)
class Citation:
    """Evidence sentence ``[number]``: ``text == node.get_content()[start_char_idx:end_char_idx]`` of node
    ``node_id`` and, where known, ``document.text[doc_start_char_idx:doc_end_char_idx]`` of ``ref_doc_id``."""

    number: int
    node_id: str
    text: str
    start_char_idx: int
    end_char_idx: int
    score: float | None
    doc_start_char_idx: int | None = None
    doc_end_char_idx: int | None = None
    ref_doc_id: str | None = None


def build_citations(nodes: Sequence[NodeWithScore]) -> list[Citation]:
    """Number the highlighted sentences of ``nodes``: node by node, each node's sentences in document order.

    A text node without ``gear_highlights`` (no highlighter ran on it) is cited whole; one with an empty list
    contributes nothing; non-text nodes are skipped.
    """
    citations: list[Citation] = []
    for scored in nodes:
        node = scored.node
        highlights = node.metadata.get(HIGHLIGHTS_KEY)
        if highlights is None:
            text = node_text(node)
            if not text or not text.strip():
                continue
            highlights = [{"text": text, "start_char_idx": 0, "end_char_idx": len(text), "score": scored.score}]
            start = source_start(node, text)
            if start is not None:
                highlights[0] |= {"doc_start_char_idx": start, "doc_end_char_idx": start + len(text)}
        for highlight in sorted(highlights, key=lambda h: h["start_char_idx"]):
            citations.append(
                Citation(
                    number=len(citations) + 1,
                    node_id=node.node_id,
                    text=highlight["text"],
                    start_char_idx=highlight["start_char_idx"],
                    end_char_idx=highlight["end_char_idx"],
                    score=highlight.get("score"),
                    doc_start_char_idx=highlight.get("doc_start_char_idx"),
                    doc_end_char_idx=highlight.get("doc_end_char_idx"),
                    ref_doc_id=node.ref_doc_id,
                )
            )
    return citations


def format_citations(citations: Sequence[Citation]) -> str:
    """``[1] first sentence`` lines, as the LLM sees them."""
    return "\n".join(f"[{c.number}] {c.text}" for c in citations)


def citations_from_response(
    response: RESPONSE_TYPE | str, citations: Sequence[Citation] | None = None
) -> list[Citation]:
    """The citations an answer refers to with ``[n]`` markers, in order of first mention.

    ``citations`` default to those the engine stored on the response (or, failing that, those rebuilt from its
    source nodes); unknown numbers are ignored.
    """
    if citations is None:
        if isinstance(response, str):
            raise ValueError("pass citations= along with a plain answer string")
        citations = (response.metadata or {}).get(CITATIONS_KEY) or build_citations(response.source_nodes)
    by_number = {c.number: c for c in citations}
    numbers: list[int] = []
    for match in _MARKER.finditer(str(response)):
        numbers.extend(int(n) for n in match.group(1).split(","))
    return [by_number[n] for n in dict.fromkeys(numbers) if n in by_number]


class GeARCitationQueryEngine(RetrieverQueryEngine):
    """A RetrieverQueryEngine that answers from GeAR's highlighted sentences, numbered for citation.

    Build it with :meth:`from_args`. ``response.source_nodes`` are the highlighted nodes;
    ``response.metadata["gear_citations"]`` holds the numbered :class:`Citation` list the LLM saw.
    """

    @classmethod
    def from_args(
        cls,
        retriever: BaseRetriever,
        llm: LLM | None = None,
        highlighter: GeARHighlighter | None = None,
        node_postprocessors: list[BaseNodePostprocessor] | None = None,
        response_synthesizer: BaseSynthesizer | None = None,
        citation_qa_template: BasePromptTemplate = GEAR_CITATION_QA_TEMPLATE,
        citation_refine_template: BasePromptTemplate = GEAR_CITATION_REFINE_TEMPLATE,
        response_mode: ResponseMode = ResponseMode.COMPACT,
        use_async: bool = False,
        streaming: bool = False,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> GeARCitationQueryEngine:
        """Retrieve with ``retriever``, run ``node_postprocessors`` then ``highlighter``, answer with ``llm``.

        ``highlighter`` defaults to a :class:`GeARHighlighter` on the retriever's model when the retriever is a
        :class:`GeARRetriever` that does not highlight already. ``kwargs`` go to ``get_response_synthesizer``.
        """
        postprocessors = list(node_postprocessors or [])
        if highlighter is None and isinstance(retriever, GeARRetriever) and retriever.highlighter is None:
            highlighter = GeARHighlighter(model=retriever.model)
        if highlighter is not None:
            postprocessors.append(highlighter)  # last: it highlights (or prunes) the nodes the LLM will see
        response_synthesizer = response_synthesizer or get_response_synthesizer(
            llm=llm,
            text_qa_template=citation_qa_template,
            refine_template=citation_refine_template,
            response_mode=response_mode,
            use_async=use_async,
            streaming=streaming,
            callback_manager=callback_manager,
            **kwargs,
        )
        return cls(
            retriever=retriever,
            response_synthesizer=response_synthesizer,
            node_postprocessors=postprocessors,
            callback_manager=callback_manager,
        )

    def with_retriever(self, retriever: BaseRetriever) -> GeARCitationQueryEngine:
        # RetrieverQueryEngine's version returns a plain RetrieverQueryEngine, which would drop the citations.
        return GeARCitationQueryEngine(
            retriever=retriever,
            response_synthesizer=self._response_synthesizer,
            callback_manager=self.callback_manager,
            node_postprocessors=self._node_postprocessors,
        )

    def synthesize(
        self,
        query_bundle: QueryBundle,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
    ) -> RESPONSE_TYPE:
        citations = build_citations(nodes)
        response = self._response_synthesizer.synthesize(query=query_bundle, nodes=_citation_nodes(citations))
        return _with_sources(response, [*nodes, *(additional_source_nodes or [])], citations)

    async def asynthesize(
        self,
        query_bundle: QueryBundle,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
    ) -> RESPONSE_TYPE:
        citations = build_citations(nodes)
        response = await self._response_synthesizer.asynthesize(query=query_bundle, nodes=_citation_nodes(citations))
        return _with_sources(response, [*nodes, *(additional_source_nodes or [])], citations)

    # RetrieverQueryEngine's _query calls the synthesizer directly; these route it through synthesize().
    @dispatcher.span
    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        with self.callback_manager.event(
            CBEventType.QUERY, payload={EventPayload.QUERY_STR: query_bundle.query_str}
        ) as query_event:
            response = self.synthesize(query_bundle, self.retrieve(query_bundle))
            query_event.on_end(payload={EventPayload.RESPONSE: response})
        return response

    @dispatcher.span
    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        with self.callback_manager.event(
            CBEventType.QUERY, payload={EventPayload.QUERY_STR: query_bundle.query_str}
        ) as query_event:
            response = await self.asynthesize(query_bundle, await self.aretrieve(query_bundle))
            query_event.on_end(payload={EventPayload.RESPONSE: response})
        return response


def _citation_nodes(citations: Sequence[Citation]) -> list[NodeWithScore]:
    """One small node per numbered sentence: what the response synthesizer packs into the prompt."""
    return [NodeWithScore(node=TextNode(text=f"[{c.number}] {c.text}"), score=c.score) for c in citations]


def _with_sources(response: RESPONSE_TYPE, nodes: list[NodeWithScore], citations: list[Citation]) -> RESPONSE_TYPE:
    response.source_nodes = nodes
    response.metadata = {n.node.node_id: n.node.metadata for n in nodes} | {CITATIONS_KEY: citations}
    return response
