"""The evaluation tasks' examples, built once from SQuAD-format paragraphs and shared by every system.

Each question keeps its gold paragraph, that paragraph's sentences (``split_sentences``: the same splitter
sentence ranking uses, so sentence ``i`` is the same span everywhere) and its gold set: the sentences that hold
the start of any annotated answer (shared/EVALUATION.md).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from gear_core.data.squad import SquadParagraph
from gear_core.data.triples import Triple, gold_sentence_indices
from gear_core.text import Sentence, split_sentences


@dataclass(frozen=True)
class QuestionExample:
    """One question, its gold paragraph, that paragraph's sentences and the indices of the gold sentences."""

    id: str
    question: str
    answers: tuple[str, ...]
    paragraph_id: str
    context: str
    sentences: tuple[Sentence, ...]
    gold_sentences: frozenset[int]


def question_examples(
    paragraphs: Iterable[SquadParagraph], max_questions: int | None = None, seed: int = 0
) -> list[QuestionExample]:
    """Every question of ``paragraphs`` (or ``max_questions`` of them, sampled with ``seed``, in file order)."""
    examples = []
    for paragraph in paragraphs:
        sentences = tuple(split_sentences(paragraph.context))
        for qa in paragraph.questions:
            gold = gold_sentence_indices(sentences, qa.answer_starts)
            if not gold:  # an answer outside every sentence: nothing to rank against
                continue
            examples.append(
                QuestionExample(qa.id, qa.question, qa.answers, paragraph.id, paragraph.context, sentences, gold)
            )
    return sample_in_order(examples, max_questions, seed)


def sample_in_order(examples: list[QuestionExample], count: int | None, seed: int = 0) -> list[QuestionExample]:
    """``count`` of ``examples`` sampled with ``seed``, kept in their order (all of them when ``count`` is None)."""
    if count is None or len(examples) <= count:
        return examples
    keep = set(random.Random(seed).sample(range(len(examples)), count))
    return [e for i, e in enumerate(examples) if i in keep]


def examples_from_triples(triples: Iterable[Triple]) -> list[QuestionExample]:
    """Triples (whose gold spans are sentences of the project's splitter) as evaluation examples.

    Gold = the sentences holding a gold span's start (``gold_sentence_indices``, the SQuAD task's rule); triples
    without any are left out. This is how the validation sources (NQ, synthetic Wikipedia, whole articles) are
    scored like the SQuAD task.
    """
    examples = []
    sentence_cache: dict[str, tuple[Sentence, ...]] = {}
    for i, triple in enumerate(triples):
        sentences = sentence_cache.get(triple.document)
        if sentences is None:
            sentences = sentence_cache.setdefault(triple.document, tuple(split_sentences(triple.document)))
        gold = gold_sentence_indices(sentences, (start for start, _ in triple.gold_spans))
        if gold:
            examples.append(
                QuestionExample(
                    f"{triple.document_id}#{i}",
                    triple.query,
                    (triple.target,),
                    triple.document_id,
                    triple.document,
                    sentences,
                    gold,
                )
            )
    return examples
