"""Grounding: where in the document a generated evidence string stands, and how well that span supports it.

A decoder can write words the document does not contain. ``ground_evidence`` finds the span of the document
whose words best match the evidence (token F1 under SQuAD's normalisation: case folded, punctuation and the
articles a/an/the dropped) and calls the evidence grounded when that F1 reaches ``min_support``. The span is a
run of whole words of the document, so ``document[start_char:end_char]`` is what a citation can point at.

Evidence decoded as a quote (``GeARConfig.generation_spans_only``) needs no search: ``quoted_evidence`` keeps the
characters the decoder copied it from, which a search could confuse with an earlier occurrence of the same words.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

_WORD = re.compile(r"\w+")
_ARTICLES = frozenset({"a", "an", "the"})

#: The support (token F1 with the best span) from which evidence counts as grounded.
DEFAULT_MIN_SUPPORT = 0.5


@dataclass(frozen=True)
class GroundedEvidence:
    """Generated ``text`` and the document span that best supports it.

    ``start_char`` / ``end_char`` frame that span (``document[start_char:end_char]``), or are None when no
    word of the evidence occurs in the document. ``support`` is the token F1 between the evidence and the span
    (0 to 1); ``grounded`` says whether it reaches the ``min_support`` asked for.
    """

    text: str
    start_char: int | None
    end_char: int | None
    support: float
    grounded: bool


def check_min_support(min_support: float) -> None:
    """``min_support`` is a support threshold: a number in [0, 1]."""
    if not 0 <= min_support <= 1:
        raise ValueError(f"min_support must lie in [0, 1], got {min_support}")


def _words(text: str) -> list[tuple[str, int, int]]:
    """(normalised word, start, end) for each word of ``text`` that SQuAD's normalisation keeps."""
    return [
        (word, m.start(), m.end())
        for m in _WORD.finditer(text)
        if (word := m.group().casefold().replace("_", "")) and word not in _ARTICLES
    ]


def ground_evidence(text: str, document: str, min_support: float = DEFAULT_MIN_SUPPORT) -> GroundedEvidence:
    """The span of ``document`` that best supports ``text`` (highest token F1, then shortest, then first).

    Spans start and end on a word of the evidence (any other end word only lowers F1) and are at most twice the
    evidence's length, so the search is linear in the document's length.
    """
    for name, value in (("text", text), ("document", document)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    check_min_support(min_support)
    wanted = Counter(word for word, _, _ in _words(text))
    size = sum(wanted.values())
    document_words = _words(document)
    best: tuple[float, int, int, int] | None = None  # (f1, -length, -start index, end index)
    for i, (word, _, _) in enumerate(document_words):
        if word not in wanted:
            continue
        seen: Counter[str] = Counter()
        overlap = 0
        for j in range(i, min(len(document_words), i + 2 * size)):
            candidate = document_words[j][0]
            if candidate in wanted:
                if seen[candidate] < wanted[candidate]:
                    overlap += 1
                seen[candidate] += 1
                f1 = 2 * overlap / (size + j - i + 1)
                key = (f1, -(j - i + 1), -i, j)
                if best is None or key > best:
                    best = key
    if best is None:
        return GroundedEvidence(text, None, None, 0.0, False)
    f1, _, start_index, end_index = best
    start, end = document_words[-start_index][1], document_words[end_index][2]
    return GroundedEvidence(text, start, end, f1, f1 >= min_support)


def quoted_evidence(
    text: str, start_char: int, end_char: int, document: str, min_support: float = DEFAULT_MIN_SUPPORT
) -> GroundedEvidence:
    """Evidence that is ``document[start_char:end_char]`` itself, grounded where it was quoted from.

    Its support is 1 (the span is the evidence), or 0 when it holds no word that counts (only punctuation or
    articles), as :func:`ground_evidence` would score it.
    """
    check_min_support(min_support)
    if not 0 <= start_char <= end_char <= len(document) or document[start_char:end_char] != text:
        raise ValueError(f"text is not document[{start_char}:{end_char}]")
    support = 1.0 if _words(text) else 0.0
    return GroundedEvidence(text, start_char, end_char, support, support >= min_support)
