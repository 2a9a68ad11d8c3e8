"""Local retrieval: rank a question's gold paragraph's sentences, and score every way of reading attention.

``gear_rankings`` is what the evaluation reports (``scoring_rankings``: several scorings at once);
``scoring_ablation`` reads the cross-attention of every fusion layer once per pair and pools it every way the
config allows, so choosing the ranking layer and poolings on a validation slice costs one pass
(benchmarks/sentence_ranking_ablation.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gear_core.evaluation.metrics import ranking_from_scores, retrieval_metrics
from gear_core.evaluation.tasks import QuestionExample
from gear_core.scoring import HEAD_POOLINGS, QUERY_POOLINGS, SENTENCE_POOLINGS, SentenceScoring, fill_unscored

if TYPE_CHECKING:
    from gear_core.modeling import GeARModel


def all_scorings(model: GeARModel, layers: Sequence[int] | None = None) -> list[SentenceScoring]:
    """Every (layer, head pooling, query pooling, sentence pooling) the model's config allows."""
    layers = model.config.cross_attention_layer_indices if layers is None else layers
    return [
        SentenceScoring(layer, head, query, sentence)
        for layer, head, query, sentence in itertools.product(
            layers,
            HEAD_POOLINGS,
            QUERY_POOLINGS,
            SENTENCE_POOLINGS,
        )
    ]


def _check_sentences(examples: Sequence[QuestionExample], sentences: list[list]) -> None:
    for example, found in zip(examples, sentences, strict=True):
        if tuple(found) != example.sentences:  # the same splitter on the same text: a mismatch is a bug
            raise RuntimeError(f"sentence split of {example.paragraph_id} differs between evaluation and model")


def scoring_ablation(
    model: GeARModel,
    examples: Sequence[QuestionExample],
    scorings: Sequence[SentenceScoring] | None = None,
    batch_size: int = 16,
    chunk_size: int = 256,
    show_progress: bool = False,
) -> dict[SentenceScoring, dict[str, float]]:
    """R@1, MAP@1, R@3, MAP@3 of every scoring on ``examples``, from one fusion pass per pair."""
    scorings = all_scorings(model) if scorings is None else list(scorings)
    rankings: list[list[list[int]]] = [[] for _ in scorings]
    chunks = range(0, len(examples), chunk_size)
    if show_progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="Ablation", unit="chunk")
    for start in chunks:
        chunk_rankings = scoring_rankings(model, examples[start : start + chunk_size], scorings, batch_size)
        for k, ranked in enumerate(chunk_rankings):
            rankings[k] += ranked
    golds = [e.gold_sentences for e in examples]
    return {s: retrieval_metrics(rankings[k], golds) for k, s in enumerate(scorings)}


def scoring_rankings(
    model: GeARModel, examples: Sequence[QuestionExample], scorings: Sequence[SentenceScoring], batch_size: int = 16
) -> list[list[list[int]]]:
    """Each scoring's rankings (sentence indices, best first, per example), from one fusion pass."""
    sentences, scores = model.sentence_scores_batch(
        [e.question for e in examples], [e.context for e in examples], scorings, batch_size=batch_size
    )
    _check_sentences(examples, sentences)
    return [[ranking_from_scores(fill_unscored(s).tolist()) for s in per_scoring] for per_scoring in scores]


def gear_rankings(model: GeARModel, examples: Sequence[QuestionExample], batch_size: int = 16) -> list[list[int]]:
    """Each example's sentence indices, best first, by the model's configured scoring."""
    return scoring_rankings(model, examples, [model.config.sentence_scoring], batch_size)[0]
