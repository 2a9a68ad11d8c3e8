"""Evaluation: pure metric functions and the benchmark runner."""

from gear_core.evaluation.metrics import (
    average_precision_at_k,
    exact_match,
    mean,
    normalize_answer,
    recall_at_k,
    token_f1,
)

__all__ = ["average_precision_at_k", "exact_match", "mean", "normalize_answer", "recall_at_k", "token_f1"]
