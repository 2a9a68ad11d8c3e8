"""Passages: documents cut into pieces that fit the document encoder, with their offsets into their source."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gear_core.demo.corpus import Document
from gear_core.text import Sentence, split_sentences

if TYPE_CHECKING:
    from gear_core.modeling import GeARModel

CHUNKING_VERSION = 1
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")


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


# ----------------------------------------------------------------------------------------------------------
# Chunking: passages that fit the document encoder, cut between sentences and preferably between paragraphs.


def chunk_spans(text: str, count_tokens: Callable[[list[str]], list[int]], max_tokens: int) -> list[tuple[int, int]]:
    """``[start, end)`` spans of ``text``'s passages, each of at most ``max_tokens`` tokens where possible.

    Whole paragraphs (blocks between blank lines) are packed together; a paragraph that does not fit the rest of
    a passage starts the next one, and one longer than a passage is split between its sentences. A single
    sentence longer than a passage becomes a passage of its own (the encoder truncates it; sentence ranking
    reads it whole, in windows). Spans start and end on sentence boundaries, so they hold no edge whitespace.
    """
    sentences = split_sentences(text)
    if not sentences:
        return []
    counts = count_tokens([s.text for s in sentences])
    paragraphs: list[list[tuple[Sentence, int]]] = [[]]
    for i, (sentence, count) in enumerate(zip(sentences, counts, strict=True)):
        if i and _PARAGRAPH_BREAK.search(text, sentences[i - 1].end_char, sentence.start_char):
            paragraphs.append([])
        paragraphs[-1].append((sentence, count))

    spans: list[tuple[int, int]] = []
    start = end = used = 0

    def close() -> None:
        nonlocal used
        if used:
            spans.append((start, end))
        used = 0

    for paragraph in paragraphs:
        if used + sum(count for _, count in paragraph) > max_tokens:
            close()
        for sentence, count in paragraph:
            if used + count > max_tokens:
                close()
            if not used:
                start = sentence.start_char
            end = sentence.end_char
            used += max(count, 1)  # a sentence of no tokens (stray symbols) still opens the passage
    close()
    return spans


def passage_tokens(model: GeARModel) -> int:
    """Tokens a passage may hold: the document encoder's limit less [CLS] and [SEP]."""
    return model.config.max_document_length - 2


def chunk_documents(documents: Sequence[Document], tokenizer, max_tokens: int) -> list[Passage]:
    """Every document's passages, in order (see :func:`chunk_spans`)."""

    def count_tokens(texts: list[str]) -> list[int]:
        # verbose=False: a sentence longer than the model's limit is expected here, not worth a warning.
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]

    return [
        Passage(document.source, start, document.text[start:end])
        for document in documents
        for start, end in chunk_spans(document.text, count_tokens, max_tokens)
    ]
