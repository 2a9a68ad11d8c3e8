"""Sentences with exact character spans, and the alignment of tokens to sentences.

Every span indexes the original string: ``text[s.start_char:s.end_char] == s.text`` always holds, for any
Unicode, repeated sentences and surrounding whitespace, because spans come from the splitter's offsets and
never from searching the text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Text between blocks that belongs to no sentence; punkt (trained on English prose) would glue the blocks together.
_MARKDOWN_MARKER = r"(?:#{1,6}|[-*+\u2022]|>)[ \t]+"  # heading, bullet, quote (numbered items: _numbered_items)
# A numbered item's marker; it counts only as part of a numbered sequence ("1." then "2." ...), since a line can
# start with a number for other reasons (SQuAD writes the formula O2 as "O\n2.").
_NUMBERED_MARKER = re.compile(r"(?:^|\n)[ \t]*(\d{1,3})([.)])[ \t]+")
_BLOCK_SEPARATORS = [
    re.compile(r"\n[ \t\r\f\v]*\n\s*"),  # blank lines
    re.compile(rf"(?:^|\n)[ \t]*{_MARKDOWN_MARKER}"),  # a Markdown block's marker, with the line break before it
    re.compile(r"(?<=\n)[ \t]*#{1,6}[ \t][^\n]*(\n)|^[ \t]*#{1,6}[ \t][^\n]*(\n)"),  # the end of a heading line
    # HTML block-level tags, with the whitespace around them.
    re.compile(
        r"\s*</?(?:p|div|li|ul|ol|h[1-6]|br|hr|tr|td|th|table|thead|tbody|section|article|header|footer|nav|"
        r"aside|main|blockquote|pre|dl|dt|dd|figure|figcaption|caption)\b[^<>]*>\s*",
        re.IGNORECASE,
    ),
]
# A paragraph break (a blank line): passages are cut there first (passage_spans).
PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
# A sentence end in Chinese or Japanese text (no space follows it, so punkt does not see it), with closing marks.
_CJK_SENTENCE_END = re.compile(r"[\u3002\uff01\uff1f\uff61]+[\u300d\u300f\u201d\u2019\uff09\u3011)]*")


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


def use_bundled_nltk_data() -> None:
    """Let nltk find the data that llama-index-core's wheel ships (punkt_tab, stopwords): no download needed.

    Only the package's data folder is read (found without importing llama_index, which gear_core never does).
    """
    import importlib.util

    import nltk

    try:
        spec = importlib.util.find_spec("llama_index.core")
    except (ImportError, ValueError):  # pragma: no cover - llama-index-core is a dependency
        return
    for location in (spec.submodule_search_locations or []) if spec else []:
        cache = os.path.join(location, "_static", "nltk_cache")
        if os.path.isdir(cache) and cache not in nltk.data.path:
            nltk.data.path.append(cache)


@lru_cache(maxsize=1)
def _punkt():
    """The trained English punkt model that llama-index-core ships."""
    from nltk.tokenize.punkt import PunktTokenizer

    use_bundled_nltk_data()
    try:
        return PunktTokenizer("english")
    except LookupError as error:  # pragma: no cover - depends on the environment
        raise LookupError(
            "nltk's punkt_tab data was not found: install llama-index-core (which ships it) or run "
            "`python -m nltk.downloader punkt_tab`"
        ) from error


def split_sentences(text: str) -> list[Sentence]:
    """Split ``text`` into sentences with exact character spans.

    nltk punkt splits prose; blank lines, Markdown headings, list items and quotes, and HTML block tags (``<p>``,
    ``<li>``, ``<br>``, ...) always end a sentence, and their markers and tags belong to no sentence; Chinese and
    Japanese sentences end at ``。！？``. Whitespace between sentences belongs to no sentence; an empty or
    all-whitespace text has no sentences.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    punkt = _punkt()
    sentences: list[Sentence] = []
    for block_start, block_end in _blocks(text):
        block = text[block_start:block_end]
        for start, end in punkt.span_tokenize(block):
            for piece_start, piece_end in _cjk_pieces(block, start, end):
                raw = block[piece_start:piece_end]
                stripped = raw.strip()
                if stripped:  # punkt can leave surrounding whitespace in a span: trim it, keeping offsets exact
                    first = block_start + piece_start + (len(raw) - len(raw.lstrip()))
                    sentences.append(Sentence(stripped, first, first + len(stripped)))
    return sentences


def passage_spans(text: str, count_tokens: Callable[[list[str]], list[int]], max_tokens: int) -> list[tuple[int, int]]:
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
        if i and PARAGRAPH_BREAK.search(text, sentences[i - 1].end_char, sentence.start_char):
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


# Frequent words of English questions, and of the languages a user most often tries instead (German, French,
# Spanish, Italian, Portuguese, Dutch), without the words they share with English ("die", "was", "come", ...).
_WORD = re.compile(r"\w+")
_ENGLISH_WORDS = frozenset(
    _WORD.findall(
        "the of and to in is was what who whom whose when where which why how did does do are were a an for on with by "
        "from that this it its his her their has have had be been many much"
    )
)
_OTHER_WORDS = (
    frozenset(
        _WORD.findall(
            "de der das und ist sind wer wie wann wo warum nicht ein eine einer mit von den dem des im hat welche "
            "le la les et est qui quoi quand où pourquoi comment une des du au aux dans pour par sur quel quelle "
            "el los las es quién qué cuándo dónde cómo una del con para cuál cuántos "
            "il lo gli è chi che quando dove perché della di per quale ha "
            "os é quem onde porque uma em qual "
            "het een en wie wat wanneer waar waarom hoe van met voor welke heeft"
        )
    )
    - _ENGLISH_WORDS
)
#: What ``gear highlight`` and ``gear demo`` say beside a query that does not look English.
NOT_ENGLISH_NOTE = (
    "this question does not look English: the shipped GeAR model was trained on English text only, so its scores "
    "and evidence mean little here"
)


def looks_english(text: str) -> bool:
    """Whether ``text`` looks like English: mostly Latin letters, and not two or more of another language's frequent
    words outnumbering English ones. A heuristic for a warning (the shipped model was trained on English only), not
    a language detector: a short query with one foreign word ("La La Land", "El Niño") counts as English."""
    letters = [c for c in text if c.isalpha()]
    if letters and sum(c < "\u0250" for c in letters) < len(letters) / 2:  # Latin scripts end at U+024F
        return False
    words = {w.lower() for w in _WORD.findall(text)}
    other = len(words & _OTHER_WORDS)
    return other < 2 or other <= len(words & _ENGLISH_WORDS)


def _blocks(text: str) -> list[tuple[int, int]]:
    """The ``[start, end)`` spans of ``text`` between block separators (see ``_BLOCK_SEPARATORS``)."""
    separators = []
    for pattern in _BLOCK_SEPARATORS:
        for match in pattern.finditer(text):
            groups = [g for g in range(1, (pattern.groups or 0) + 1) if match.start(g) >= 0]
            span = match.span(groups[0]) if groups else match.span()
            if span[1] > span[0]:
                separators.append(span)
    separators += _numbered_items(text)
    blocks, position = [], 0
    for start, end in sorted(separators):
        if start > position:
            blocks.append((position, start))
        position = max(position, end)
    if position < len(text):
        blocks.append((position, len(text)))
    return blocks


def _numbered_items(text: str) -> list[tuple[int, int]]:
    """The markers (with the line break before each) of numbered lists: runs of lines numbered 1, 2, 3, ...
    (one delimiter, ``.`` or ``)``) of at least two items."""
    items: list[tuple[int, int]] = []
    run: list[tuple[int, int]] = []
    expected = None
    for match in _NUMBERED_MARKER.finditer(text):
        number, delimiter = int(match.group(1)), match.group(2)
        if (number, delimiter) == expected:
            run.append(match.span())
        else:
            if len(run) >= 2:
                items += run
            run = [match.span()] if number == 1 else []
        expected = (number + 1, delimiter) if run else None
    if len(run) >= 2:
        items += run
    return items


def _cjk_pieces(block: str, start: int, end: int) -> list[tuple[int, int]]:
    """``block[start:end]`` cut after each Chinese or Japanese sentence end inside it."""
    pieces = []
    for match in _CJK_SENTENCE_END.finditer(block, start, end):
        if match.end() < end:
            pieces.append((start, match.end()))
            start = match.end()
    pieces.append((start, end))
    return pieces


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
