"""Asking: each question searched on its own, and the report the renderers show."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gear_core.retrieval import GeARSearcher, SearchResult

# Sentences scoring less are not highlighted (they print as 0.000).
MIN_SHOWN_SCORE = 0.0005


# ----------------------------------------------------------------------------------------------------------
# Asking.


@dataclass
class Answer:
    """One question, its hits (best first) and how long the search took."""

    question: str
    results: list[SearchResult]
    seconds: float


@dataclass
class DemoReport:
    """Everything the renderers show."""

    model: str
    corpus: str
    documents: int
    passages: int
    index_built: bool
    index_dir: str
    model_seconds: float
    index_seconds: float
    answers: list[Answer]
    attribution: str | None = None
    search_mode: str = "dense"  # "hybrid": each passage says which retrievers found it


def ask(
    searcher: GeARSearcher, questions: Sequence[str], top_k: int, top_sentences: int, generate: bool
) -> list[Answer]:
    """Search each question on its own, so each gets its own time."""
    # One untimed search first: one-time costs (loading punkt's model, the first forward pass) are not search time.
    if questions:
        searcher.search(questions[0], k=1, top_sentences=1, generate=generate, max_new_tokens=1)
    answers = []
    for question in questions:
        started = time.perf_counter()
        results = searcher.search(question, k=top_k, top_sentences=top_sentences, generate=generate)
        for result in results:  # a sentence that would print as 0.000 got no attention worth marking
            result.sentences = [s for s in result.sentences if s.score >= MIN_SHOWN_SCORE]
        answers.append(Answer(question, results, time.perf_counter() - started))
    return answers
