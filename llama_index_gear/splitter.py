"""GeARPassageSplitter: LlamaIndex nodes cut the way ``gear demo`` cuts passages.

The cut itself is ``GeARModel.passage_spans`` (whole paragraphs packed up to the model's document window, in its
own word pieces, cut between sentences, no overlap); this adapter only turns the spans into nodes. Before it, a
LlamaIndex engine (a ``SentenceSplitter`` with overlap) and the demo indexed different passages of the same files
and disagreed on the best sentence for 7 of 10 questions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.node_parser import NodeParser
from llama_index.core.node_parser.node_utils import build_nodes_from_splits
from llama_index.core.schema import BaseNode, Document, MetadataMode
from llama_index.core.utils import get_tqdm_iterable

from gear_core import GeARModel
from llama_index_gear._model import load_model


class GeARPassageSplitter(NodeParser):
    """Documents cut into passages that fit ``model``'s document window; each node's ``start_char_idx`` /
    ``end_char_idx`` slice its document exactly."""

    _model: GeARModel = PrivateAttr()

    def __init__(self, model: GeARModel | None = None, model_name: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._model = load_model(model, model_name)

    @classmethod
    def class_name(cls) -> str:
        return "GeARPassageSplitter"

    @property
    def model(self) -> GeARModel:
        return self._model

    def _parse_nodes(self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any) -> list[BaseNode]:
        passages: list[BaseNode] = []
        for node in get_tqdm_iterable(nodes, show_progress, "Cutting passages"):
            text = node.get_content(metadata_mode=MetadataMode.NONE)
            spans = self._model.passage_spans(text)
            cut = build_nodes_from_splits([text[start:end] for start, end in spans], node, id_func=self.id_func)
            for passage, (start, end) in zip(cut, spans, strict=True):
                passage.start_char_idx, passage.end_char_idx = start, end
            passages += cut
        return passages

    def _postprocess_parsed_nodes(self, nodes: list[BaseNode], parent_doc_map: dict[str, Document]) -> list[BaseNode]:
        # LlamaIndex finds each node's offsets again by searching its text in the document, which misplaces
        # passages whose text repeats (two equal passages overlap where they should follow each other): keep ours.
        offsets = [(node.start_char_idx, node.end_char_idx) for node in nodes]
        nodes = super()._postprocess_parsed_nodes(nodes, parent_doc_map)
        for node, (start, end) in zip(nodes, offsets, strict=True):
            node.start_char_idx, node.end_char_idx = start, end
        return nodes
