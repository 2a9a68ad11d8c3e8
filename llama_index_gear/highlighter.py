"""GeARHighlighter: mark (or keep only) the sentences of each retrieved node that answer the query.

Works after any retriever. For every (query, node) pair it asks GeAR's fusion encoder which sentences the query
attends to (``GeARModel.rank_sentences_batch``, one batched call for all nodes) and writes evidence from that same
ranking pass (``GeARModel.rank_and_generate_batch``): the span reader's answer read from the best sentences, or
the paper's decoder's text, as the model's ``evidence_from`` says. What it writes on each text node (the contract
in DESIGN.md):

- ``metadata["gear_highlights"]``: ``[{"text", "start_char_idx", "end_char_idx", "score"}, ...]`` best first, with
  ``node.get_content()[start_char_idx:end_char_idx] == text``; plus ``"doc_start_char_idx"`` /
  ``"doc_end_char_idx"`` into the source document when the node knows where it sits there (its
  ``start_char_idx``) and its text is a verbatim slice of the document.
- ``metadata["gear_evidence"]``, with evidence on (``generate_evidence``; by default on for a model whose evidence
  comes from its span reader): ``{"text", "grounded", "support", "start_char_idx", "end_char_idx"}`` (plus
  ``"doc_start_char_idx"`` / ``"doc_end_char_idx"`` as for highlights). From the span reader: the answer, a span of
  the node's text, ``support`` the reader's probability for it against giving no answer; below
  ``min_evidence_support`` (None: the model's
  ``span_reader_min_support``) the reader abstains: empty text, no offsets, not grounded. From the decoder: its
  text and its span in the node's text, where it was quoted from when the decoder quotes (support 1), else the span
  that best supports it (token F1 ``support``, 0 to 1; :func:`gear_core.evidence.ground_evidence`); ``grounded``
  from ``min_evidence_support`` (None: 0.5). Offsets are None when there is no span, or in prune mode when its span
  was pruned away.
- ``metadata["gear_pruned"]`` in prune mode: ``{"original_length": n, "kept_spans": [[start, end], ...]}``, the
  parts of the original text that were kept, in original-text offsets.

These keys are added to ``excluded_llm_metadata_keys`` and ``excluded_embed_metadata_keys``.

Modes: ``"annotate"`` (default) leaves the text as it is. ``"prune"`` replaces the text with the selected
sentences (plus ``neighbors`` sentences around each), in document order: adjacent kept sentences stay joined by
the original text between them, separate runs are joined by ``separator``. Highlight offsets then index the new
text; ``doc_*`` offsets still point into the source document. A node with no sentence left (all below
``min_score``) is dropped in prune mode. Nodes are copied: the retriever's own nodes are never changed, and
evidence left on a node by an earlier run is removed (it answered another query).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any, Literal

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import BaseNode, ImageNode, Node, NodeWithScore, QueryBundle, TextNode

from gear_core import GeARModel, ScoredSentence
from gear_core.evidence import GroundedEvidence
from llama_index_gear._model import load_model

dispatcher = get_dispatcher(__name__)

HIGHLIGHTS_KEY = "gear_highlights"
EVIDENCE_KEY = "gear_evidence"
PRUNED_KEY = "gear_pruned"
GEAR_METADATA_KEYS = (HIGHLIGHTS_KEY, EVIDENCE_KEY, PRUNED_KEY)


class GeARHighlightStartEvent(BaseEvent):
    """GeARHighlighter started on ``num_nodes`` nodes for ``query_str``."""

    query_str: str
    num_nodes: int

    @classmethod
    def class_name(cls) -> str:
        return "GeARHighlightStartEvent"


class GeARHighlightEndEvent(BaseEvent):
    """GeARHighlighter finished: how many nodes it ranked, skipped (not text), dropped (prune) and returned."""

    num_nodes: int
    num_ranked: int
    num_skipped: int
    num_dropped: int
    num_highlights: int
    num_evidence: int

    @classmethod
    def class_name(cls) -> str:
        return "GeARHighlightEndEvent"


class GeARHighlighter(BaseNodePostprocessor):
    """Highlights the sentences of each node that answer the query, using GeAR's fusion cross-attention.

    Pass ``model=`` a loaded :class:`gear_core.GeARModel` or ``model_name=`` a saved one's folder (default:
    ``gear_core.DEFAULT_MODEL``). See the module docstring for the metadata written and the two modes.

    Example:
        >>> highlighter = GeARHighlighter(model=model, top_n=2)
        >>> query_engine = index.as_query_engine(node_postprocessors=[highlighter])
    """

    top_n: int = Field(default=3, ge=1, description="Sentences highlighted per node (best first).")
    min_score: float | None = Field(
        default=None, allow_inf_nan=False, description="Drop highlights scoring below this."
    )
    generate_evidence: bool | None = Field(
        default=None,
        description="Also write evidence (None: when the model's evidence comes from its span reader, as the shipped "
        "model's does).",
    )
    max_new_tokens: int | None = Field(default=None, ge=0, description="Evidence length (None: the model's default).")
    min_evidence_support: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Support from which evidence counts as grounded: the span reader's probability for its answer "
        "against none (below it, it abstains), the decoder's token F1. None: the model's default.",
    )
    batch_size: int = Field(default=16, ge=1, description="(query, node) pairs per forward pass.")
    device: str | None = Field(default=None, description="Device to run on (None: where the model already is).")
    mode: Literal["annotate", "prune"] = Field(default="annotate", description="Keep the text, or prune it.")
    neighbors: int = Field(default=0, ge=0, description="Prune mode: sentences kept on each side of a selected one.")
    separator: str = Field(default=" ... ", description="Prune mode: joins runs of kept text that are not adjacent.")
    model_name: str | None = Field(default=None, description="Folder of a saved GeAR model (if no model= given).")

    _model: GeARModel = PrivateAttr()

    def __init__(self, model: GeARModel | None = None, **data: Any) -> None:
        if isinstance(data.get("model_name"), os.PathLike):
            data["model_name"] = os.fspath(data["model_name"])
        super().__init__(**data)
        self._model = load_model(model, self.model_name, self.device)

    @classmethod
    def class_name(cls) -> str:
        return "GeARHighlighter"

    @property
    def model(self) -> GeARModel:
        """The wrapped GeARModel."""
        return self._model

    @property
    def writes_evidence(self) -> bool:
        """Whether evidence is written: ``generate_evidence``, or by default when the model reads it with its span
        reader (cheap and measured; the decoder's evidence is asked for explicitly)."""
        if self.generate_evidence is not None:
            return self.generate_evidence
        return self._model.config.evidence_from == "span_reader"

    @dispatcher.span
    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("GeARHighlighter needs the query: pass query_bundle= or query_str=")
        query = query_bundle.query_str
        dispatcher.event(GeARHighlightStartEvent(query_str=query, num_nodes=len(nodes)))
        copies = [NodeWithScore(node=_copy(n.node), score=n.score) for n in nodes]
        texts = [node_text(n.node) for n in copies]
        ranked_positions = [i for i, text in enumerate(texts) if text is not None and text.strip()]
        pair_texts = [texts[i] for i in ranked_positions]
        grounded: list[GroundedEvidence | None] = [None] * len(pair_texts)
        if self.writes_evidence and pair_texts:  # one ranking pass serves the highlights and the evidence
            ranked, evidence = self._model.rank_and_generate_batch(
                [query] * len(pair_texts),
                pair_texts,
                max_new_tokens=self.max_new_tokens,
                batch_size=self.batch_size,
                min_support=self.min_evidence_support,
            )
            grounded = list(evidence)
        else:
            ranked = self._model.rank_sentences_batch(
                [query] * len(pair_texts), pair_texts, top_n=None, batch_size=self.batch_size
            )
        found = dict(zip(ranked_positions, zip(ranked, grounded, strict=True), strict=True))

        results, num_highlights, num_dropped = [], 0, 0
        for i, (scored, text) in enumerate(zip(copies, texts, strict=True)):
            if text is None:  # not a text node: passed on untouched
                results.append(scored)
                continue
            sentences, generated = found.get(i, ([], None))
            keep = self._annotate(scored.node, text, sentences, generated)
            num_dropped += not keep
            if keep:
                num_highlights += len(scored.node.metadata[HIGHLIGHTS_KEY])
                results.append(scored)
        dispatcher.event(
            GeARHighlightEndEvent(
                num_nodes=len(results),
                num_ranked=len(ranked_positions),
                num_skipped=texts.count(None),
                num_dropped=num_dropped,
                num_highlights=num_highlights,
                num_evidence=sum(e is not None for e in grounded),
            )
        )
        return results

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        # The model runs in this process: off the event loop, in a worker thread (older llama-index-core
        # versions ran the sync method on the loop by default).
        return await asyncio.to_thread(self._postprocess_nodes, nodes, query_bundle)

    def _annotate(
        self, node: BaseNode, text: str, sentences: list[ScoredSentence], evidence: GroundedEvidence | None
    ) -> bool:
        """Write the metadata on ``node`` (and prune it); False when prune mode leaves nothing to keep."""
        selected = [s for s in sentences[: self.top_n] if self.min_score is None or s.score >= self.min_score]
        doc_start = source_start(node, text)
        # new_start[s] maps a selected sentence's original offset to its offset in the node's final text.
        new_start = {s.start_char: s.start_char for s in selected}
        kept_spans: list[list[int]] | None = None  # prune mode: the original text's kept parts
        if self.mode == "prune" and sentences:
            if not selected:
                return False
            new_text, spans, new_start = _prune(text, sentences, selected, self.neighbors, self.separator)
            node.set_content(new_text)
            node.metadata[PRUNED_KEY] = {"original_length": len(text), "kept_spans": spans}
            kept_spans = spans
        highlights = []
        for s in selected:
            start = new_start[s.start_char]
            highlight: dict[str, Any] = {
                "text": s.text,
                "start_char_idx": start,
                "end_char_idx": start + len(s.text),
                "score": s.score,
            }
            if doc_start is not None:
                highlight["doc_start_char_idx"] = doc_start + s.start_char
                highlight["doc_end_char_idx"] = doc_start + s.end_char
            highlights.append(highlight)
        node.metadata[HIGHLIGHTS_KEY] = highlights
        node.metadata.pop(EVIDENCE_KEY, None)  # evidence from an earlier query would be stale
        if evidence is not None:
            node.metadata[EVIDENCE_KEY] = _evidence_metadata(evidence, doc_start, kept_spans, len(self.separator))
        exclude_from_prompts(node, GEAR_METADATA_KEYS)
        return True


def exclude_from_prompts(node: BaseNode, keys: Sequence[str]) -> None:
    """Add ``keys`` to the node's excluded LLM and embedding metadata keys (once each): the library's annotations
    never leak into prompts or embeddings."""
    for excluded in (node.excluded_llm_metadata_keys, node.excluded_embed_metadata_keys):
        excluded.extend(key for key in keys if key not in excluded)


def _evidence_metadata(
    evidence: GroundedEvidence, doc_start: int | None, kept_spans: list[list[int]] | None, separator_length: int
) -> dict[str, Any]:
    """``gear_evidence``: the text, its support, and its span in the node's final text (and source document)."""
    start, end = evidence.start_char, evidence.end_char
    metadata: dict[str, Any] = {"text": evidence.text, "grounded": evidence.grounded, "support": evidence.support}
    if start is not None and doc_start is not None:
        metadata["doc_start_char_idx"], metadata["doc_end_char_idx"] = doc_start + start, doc_start + end
    if start is not None and kept_spans is not None:  # the pruned text joins kept spans with the separator
        offset, moved = 0, None
        for kept_start, kept_end in kept_spans:
            if kept_start <= start and end <= kept_end:
                moved = offset + start - kept_start
                break
            offset += kept_end - kept_start + separator_length
        start, end = (None, None) if moved is None else (moved, moved + end - start)
    metadata["start_char_idx"], metadata["end_char_idx"] = start, end
    return metadata


def _copy(node: BaseNode) -> BaseNode:
    """A copy whose metadata and exclusion lists can change without touching ``node`` (the rest is shared:
    set_content replaces the text, and an IndexNode's ``obj`` may be too big or too odd to deep-copy)."""
    return node.model_copy(
        update={
            "metadata": dict(node.metadata),
            "excluded_llm_metadata_keys": list(node.excluded_llm_metadata_keys),
            "excluded_embed_metadata_keys": list(node.excluded_embed_metadata_keys),
        }
    )


def node_text(node: BaseNode) -> str | None:
    """The node's plain text, or None for nodes that are not text (images, audio, video)."""
    if isinstance(node, ImageNode):
        return None
    if isinstance(node, TextNode):
        return node.text if isinstance(node.text, str) else None
    if isinstance(node, Node) and not (node.image_resource or node.audio_resource or node.video_resource):
        text = node.text_resource.text if node.text_resource is not None else None
        return text if isinstance(text, str) else None
    return None


def source_start(node: BaseNode, text: str) -> int | None:
    """Where ``text`` starts in the source document, when the node's offsets show it is a verbatim slice."""
    start, end = getattr(node, "start_char_idx", None), getattr(node, "end_char_idx", None)
    # A node already pruned, or one whose parser rewrote the text, has offsets that do not frame its text.
    if start is None or end is None or end - start != len(text) or PRUNED_KEY in node.metadata:
        return None
    return start


def _prune(
    text: str, sentences: list[ScoredSentence], selected: list[ScoredSentence], neighbors: int, separator: str
) -> tuple[str, list[list[int]], dict[int, int]]:
    """The selected sentences (and neighbours) in document order; runs of adjacent sentences keep the original
    text between them. Returns the new text, the kept spans (original offsets) and, for each selected sentence's
    original start, its start in the new text."""
    ordered = sorted(sentences, key=lambda s: s.start_char)
    position = {s.start_char: i for i, s in enumerate(ordered)}
    keep = sorted(
        {j for s in selected for j in range(position[s.start_char] - neighbors, position[s.start_char] + neighbors + 1)}
        & set(range(len(ordered)))
    )
    runs: list[list[int]] = []  # [first, last] sentence indices of each run of adjacent kept sentences
    for j in keep:
        if runs and runs[-1][1] == j - 1:
            runs[-1][1] = j
        else:
            runs.append([j, j])
    parts, spans, new_start, offset = [], [], {}, 0
    for first, last in runs:
        start, end = ordered[first].start_char, ordered[last].end_char
        for s in ordered[first : last + 1]:
            new_start[s.start_char] = offset + s.start_char - start
        parts.append(text[start:end])
        spans.append([start, end])
        offset += end - start + len(separator)
    return separator.join(parts), spans, new_start
