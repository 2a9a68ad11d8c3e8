"""Passages: documents cut into pieces that fit the document encoder, with their offsets into their source."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gear_core.demo.corpus import Document

if TYPE_CHECKING:
    from gear_core.modeling import GeARModel

CHUNKING_VERSION = 1


@dataclass(frozen=True)
class Passage:
    """A piece of a document that fits the model: ``document.text[start:end] == text``."""

    source: str
    start: int
    text: str

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def id(self) -> str:
        """``SOURCE:START``: unique in a corpus, and it is all a cached index needs to locate the passage again."""
        return f"{self.source}:{self.start}"

    @classmethod
    def from_id(cls, passage_id: str, text: str) -> Passage:
        source, start = passage_id.rsplit(":", 1)
        return cls(source, int(start), text)

    def location(self, start: int, end: int) -> str:
        """Where the span ``[start, end)`` of this passage lies in its document, as ``source:start-end``."""
        return f"{self.source}:{self.start + start}-{self.start + end}"


def chunk_documents(documents: Sequence[Document], model: GeARModel, max_tokens: int | None = None) -> list[Passage]:
    """Every document's passages, in order: :meth:`GeARModel.passage_spans`, the cut LlamaIndex's
    ``GeARPassageSplitter`` makes too."""
    return [
        Passage(document.source, start, document.text[start:end])
        for document in documents
        for start, end in model.passage_spans(document.text, max_tokens)
    ]
