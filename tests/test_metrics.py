import itertools

import pytest

from gear_core.evaluation.metrics import (
    average_precision_at_k,
    exact_match,
    expected_random_average_precision_at_k,
    expected_random_recall_at_k,
    normalize_answer,
    ranking_from_scores,
    recall_at_k,
    retrieval_metrics,
    token_f1,
)


def test_recall_at_k_hand_cases():
    assert recall_at_k(["a", "b", "c"], {"b"}, 1) == 0.0
    assert recall_at_k(["a", "b", "c"], {"b"}, 2) == 1.0
    assert recall_at_k(["a", "b", "c", "d"], {"a", "d"}, 3) == 0.5
    assert recall_at_k(["a"], set(), 1) == 0.0
    with pytest.raises(ValueError):
        recall_at_k(["a"], {"a"}, 0)


def test_map_at_k_hand_cases():
    # gold {a, c}; ranking a, b, c: P@1 = 1 (hit), P@3 = 2/3 (hit) -> (1 + 2/3) / min(3, 2)
    assert average_precision_at_k(["a", "b", "c"], {"a", "c"}, 3) == pytest.approx((1 + 2 / 3) / 2)
    # k = 1 with two gold sentences: normalised by min(1, 2) = 1
    assert average_precision_at_k(["a", "b"], {"a", "b"}, 1) == 1.0
    assert average_precision_at_k(["b", "a"], {"a"}, 1) == 0.0
    # single gold item at rank 2 of 5: P@2 = 1/2
    assert average_precision_at_k(["x", "g", "y", "z", "w"], {"g"}, 5) == 0.5


def test_squad_normalisation_and_scores():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert exact_match("denver broncos", ["The Denver Broncos", "Broncos"]) == 1.0
    assert exact_match("Broncos of Denver", ["Denver Broncos"]) == 0.0
    # prediction "denver broncos team" vs "denver broncos": P = 2/3, R = 1 -> F1 = 0.8
    assert token_f1("Denver Broncos team", ["Carolina", "the Denver Broncos"]) == pytest.approx(0.8)
    assert token_f1("", ["x"]) == 0.0


def test_ranking_from_scores_is_best_first_and_stable():
    assert ranking_from_scores([0.1, 0.9, 0.5, 0.9]) == [1, 3, 2, 0]
    assert ranking_from_scores([]) == []


def test_expected_random_metrics_hand_cases():
    # 3 sentences, 1 gold: the gold one is first a third of the time
    assert expected_random_recall_at_k(3, 1, 1) == pytest.approx(1 / 3)
    assert expected_random_average_precision_at_k(3, 1, 1) == pytest.approx(1 / 3)
    # 2 sentences, 1 gold, k = 2: AP is 1 (gold first) or 1/2 (gold second) -> 0.75
    assert expected_random_average_precision_at_k(2, 1, 2) == pytest.approx(0.75)
    assert expected_random_recall_at_k(2, 1, 2) == 1.0
    # a single sentence is always right; no gold is always 0
    assert expected_random_average_precision_at_k(1, 1, 3) == 1.0
    assert expected_random_recall_at_k(4, 0, 1) == 0.0


@pytest.mark.parametrize(("n", "g", "k"), [(4, 1, 1), (4, 2, 1), (4, 2, 3), (5, 3, 3), (5, 2, 5), (3, 3, 2)])
def test_expected_random_metrics_equal_the_average_over_all_orders(n, g, k):
    gold = set(range(g))
    orders = list(itertools.permutations(range(n)))
    recall = sum(recall_at_k(o, gold, k) for o in orders) / len(orders)
    ap = sum(average_precision_at_k(o, gold, k) for o in orders) / len(orders)
    assert expected_random_recall_at_k(n, g, k) == pytest.approx(recall)
    assert expected_random_average_precision_at_k(n, g, k) == pytest.approx(ap)


def test_retrieval_metrics_averages_over_queries():
    rankings = [["a", "b", "c"], ["c", "b", "a"]]
    golds = [{"a"}, {"a"}]
    result = retrieval_metrics(rankings, golds, recall_ks=(1, 5), map_ks=(5,))
    assert list(result) == ["R@1", "R@5", "MAP@5"]
    assert result["R@1"] == 0.5 and result["R@5"] == 1.0
    assert result["MAP@5"] == pytest.approx((1 + 1 / 3) / 2)
    with pytest.raises(ValueError):
        retrieval_metrics(rankings, golds[:1])
