import pytest

from gear_core.evaluation.metrics import (
    average_precision_at_k,
    exact_match,
    normalize_answer,
    recall_at_k,
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
