"""Evaluation: pure metric functions and the benchmark runner."""

from gear_core.evaluation.metrics import (
    average_precision_at_k,
    exact_match,
    expected_random_average_precision_at_k,
    expected_random_recall_at_k,
    mean,
    normalize_answer,
    ranking_from_scores,
    recall_at_k,
    retrieval_metrics,
    token_f1,
)

__all__ = [
    "average_precision_at_k",
    "exact_match",
    "expected_random_average_precision_at_k",
    "expected_random_recall_at_k",
    "mean",
    "normalize_answer",
    "ranking_from_scores",
    "recall_at_k",
    "retrieval_metrics",
    "token_f1",
]
