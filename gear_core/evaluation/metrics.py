"""Metrics exactly as defined in the project's evaluation protocol (shared/EVALUATION.md). Pure functions.

- ``recall_at_k``: |top-k ∩ G| / |G|.
- ``average_precision_at_k`` (MAP@k per query): (1 / min(k, |G|)) · Σ_{i≤k} P@i · rel_i.
- ``expected_random_recall_at_k`` / ``expected_random_average_precision_at_k``: the same metrics' expected
  values under a uniformly random order (the "random sentence" baseline, exactly, without sampling).
- ``retrieval_metrics``: R@k and MAP@k averaged over queries, for the k a table reports.
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


def ranking_from_scores(scores: Sequence[float]) -> list[int]:
    """Item indices, best score first; ties keep the items' order."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def expected_random_recall_at_k(num_items: int, num_gold: int, k: int) -> float:
    """E[R@k] when ``num_items`` items (``num_gold`` of them gold) are shuffled uniformly: min(k, n) / n."""
    if k < 1:
        raise ValueError("k must be >= 1")
    if num_items == 0 or num_gold == 0:
        return 0.0
    return min(k, num_items) / num_items


def expected_random_average_precision_at_k(num_items: int, num_gold: int, k: int) -> float:
    """E[MAP@k] under a uniformly random order.

    E[rel_i · hits_i] = g/n + (i - 1) · g(g - 1) / (n(n - 1)) for position i ≤ n (hits_i counts gold items in the
    first i), so E[AP@k] = (1 / min(k, g)) · Σ_{i ≤ min(k, n)} E[rel_i · hits_i] / i.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    n, g = num_items, num_gold
    if n == 0 or g == 0:
        return 0.0
    if not 0 < g <= n:
        raise ValueError(f"{g} gold items among {n}")
    pair = g * (g - 1) / (n * (n - 1)) if n > 1 else 0.0
    total = sum((g / n + (i - 1) * pair) / i for i in range(1, min(k, n) + 1))
    return total / min(k, g)


def retrieval_metrics(
    rankings: Sequence[Sequence[Hashable]],
    golds: Sequence[Collection[Hashable]],
    recall_ks: Sequence[int] = (1, 3),
    map_ks: Sequence[int] = (1, 3),
) -> dict[str, float]:
    """Mean R@k and MAP@k over queries: ``{"R@1": ..., "MAP@1": ...}`` in the order given."""
    if len(rankings) != len(golds):
        raise ValueError(f"{len(rankings)} rankings for {len(golds)} gold sets")
    result = {}
    for k in sorted({*recall_ks, *map_ks}):
        if k in recall_ks:
            result[f"R@{k}"] = mean(recall_at_k(r, g, k) for r, g in zip(rankings, golds, strict=True))
        if k in map_ks:
            result[f"MAP@{k}"] = mean(average_precision_at_k(r, g, k) for r, g in zip(rankings, golds, strict=True))
    return result


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
