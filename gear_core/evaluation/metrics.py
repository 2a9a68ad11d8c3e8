"""Metrics exactly as defined in the project's evaluation protocol (shared/EVALUATION.md). Pure functions.

- ``recall_at_k``: |top-k ∩ G| / |G|.
- ``average_precision_at_k`` (MAP@k per query): (1 / min(k, |G|)) · Σ_{i≤k} P@i · rel_i.
- SQuAD answer metrics: official normalisation (lowercase, strip punctuation and articles, collapse
  whitespace), exact match and token F1, each the max over the annotated answers.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Sequence


def recall_at_k(ranked: Sequence[Hashable], gold: Collection[Hashable], k: int) -> float:
    """Share of the gold items found in the first ``k`` ranked items (0 when there is no gold item)."""
    if k < 1:
        raise ValueError("k must be >= 1")
    if not gold:
        return 0.0
    return len(set(ranked[:k]) & set(gold)) / len(set(gold))


def average_precision_at_k(ranked: Sequence[Hashable], gold: Collection[Hashable], k: int) -> float:
    """Average precision truncated at ``k``, normalised by ``min(k, |G|)``."""
    if k < 1:
        raise ValueError("k must be >= 1")
    gold = set(gold)
    if not gold:
        return 0.0
    hits, total = 0, 0.0
    for i, item in enumerate(ranked[:k], start=1):
        if item in gold:
            hits += 1
            total += hits / i
    return total / min(k, len(gold))


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def normalize_answer(text: str) -> str:
    """SQuAD v1.1's official answer normalisation."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answers: Iterable[str]) -> float:
    """1.0 if the normalised prediction equals any normalised answer."""
    normalized = normalize_answer(prediction)
    return float(any(normalized == normalize_answer(answer) for answer in answers))


def _f1(prediction_tokens: list[str], answer_tokens: list[str]) -> float:
    common = Counter(prediction_tokens) & Counter(answer_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(prediction_tokens), overlap / len(answer_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, answers: Iterable[str]) -> float:
    """SQuAD token F1 of the prediction against the best-matching answer."""
    prediction_tokens = normalize_answer(prediction).split()
    return max((_f1(prediction_tokens, normalize_answer(a).split()) for a in answers), default=0.0)
