"""Sentences with exact character spans, and the alignment of tokens to sentences.

Every span indexes the original string: ``text[s.start_char:s.end_char] == s.text`` always holds, for any
Unicode, repeated sentences and surrounding whitespace, because spans come from the splitter's offsets and
never from searching the text.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Blank lines separate blocks (headings, list items, paragraphs) that punkt would otherwise glue together.
_BLOCK_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")


@dataclass(frozen=True)
class Sentence:
    """A sentence of a document: its text and ``[start_char, end_char)`` span in that document."""

    text: str
    start_char: int
    end_char: int


@dataclass(frozen=True)
class ScoredSentence(Sentence):
    """A sentence with the relevance score the model gave it for a query (higher is better)."""

    score: float = 0.0


def use_llama_index_nltk_data() -> None:
    """Let nltk find the data that llama-index-core's wheel ships (punkt_tab, stopwords): no download needed."""
    import nltk

    try:
        import llama_index.core
    except ImportError:  # pragma: no cover - llama-index-core is a dependency
        return
    cache = os.path.join(os.path.dirname(llama_index.core.__file__), "_static", "nltk_cache")
    if os.path.isdir(cache) and cache not in nltk.data.path:
        nltk.data.path.append(cache)


@lru_cache(maxsize=1)
def _punkt():
    """The trained English punkt model that llama-index-core ships."""
    from nltk.tokenize.punkt import PunktTokenizer

    use_llama_index_nltk_data()
    try:
        return PunktTokenizer("english")
    except LookupError as error:  # pragma: no cover - depends on the environment
        raise LookupError(
            "nltk's punkt_tab data was not found: install llama-index-core (which ships it) or run "
            "`python -m nltk.downloader punkt_tab`"
        ) from error


def split_sentences(text: str) -> list[Sentence]:
    """Split ``text`` into sentences with exact character spans (nltk punkt, plus breaks at blank lines).

    Whitespace between sentences belongs to no sentence; an empty or all-whitespace text has no sentences.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    punkt = _punkt()
    sentences: list[Sentence] = []
    block_start = 0
    for block_end, next_start in [(m.start(), m.end()) for m in _BLOCK_BREAK.finditer(text)] + [(len(text), len(text))]:
        block = text[block_start:block_end]
        for start, end in punkt.span_tokenize(block):
            raw = block[start:end]
            stripped = raw.strip()
            if stripped:  # punkt can leave surrounding whitespace in a span: trim it, keeping offsets exact
                start = block_start + start + (len(raw) - len(raw.lstrip()))
                sentences.append(Sentence(stripped, start, start + len(stripped)))
        block_start = next_start
    return sentences


def token_sentence_index(token_starts: np.ndarray, token_ends: np.ndarray, sentences: list[Sentence]) -> np.ndarray:
    """For each token (character offsets into the document), the index of the sentence holding it, or -1.

    A token belongs to the sentence that contains its first character; special tokens (empty offsets) and
    tokens in the whitespace between sentences get -1.
    """
    token_starts = np.asarray(token_starts)
    token_ends = np.asarray(token_ends)
    if not sentences:
        return np.full(token_starts.shape, -1, dtype=np.int64)
    starts = np.array([s.start_char for s in sentences])
    ends = np.array([s.end_char for s in sentences])
    index = np.searchsorted(starts, token_starts, side="right") - 1
    clipped = np.clip(index, 0, len(sentences) - 1)
    inside = (index >= 0) & (token_starts < ends[clipped]) & (token_ends > token_starts)
    return np.where(inside, clipped, -1)
