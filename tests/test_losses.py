import math

import pytest
import torch

from gear_core.losses import (
    IGNORE_INDEX,
    contrastive_loss,
    lm_loss,
    lm_loss_at_positions,
    localization_loss,
    next_token_positions,
    positive_targets,
    soft_cross_entropy,
)

E = math.e


def test_positive_targets_normalise_duplicates():
    targets = positive_targets(torch.tensor([3, 3, 4]), torch.tensor([3, 3, 4, 9]))
    assert torch.allclose(targets, torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1.0, 0]]))


def test_soft_cross_entropy_hand_case():
    logits = torch.tensor([[0.0, math.log(3.0)]])
    assert soft_cross_entropy(logits, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(-math.log(0.75))
    assert soft_cross_entropy(logits, torch.tensor([[0.5, 0.5]])).item() == pytest.approx(
        -(0.5 * math.log(0.25) + 0.5 * math.log(0.75))
    )


def test_in_batch_contrastive_hand_case():
    eye = torch.eye(2)
    loss = contrastive_loss(eye, eye, torch.tensor([0, 1]), temperature=1.0)
    assert loss.item() == pytest.approx(math.log(1 + 1 / E))  # -log(e / (e + 1)) both ways


def test_shared_document_is_a_positive_for_both_queries():
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    documents = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    loss = contrastive_loss(queries, documents, torch.tensor([0, 0]), temperature=1.0)
    query_side = math.log(2)  # each query: two equal logits, half the target on each
    document_side = math.log(1 + E) - 0.5  # each document: logits (1, 0), targets (.5, .5)
    assert loss.item() == pytest.approx((query_side + document_side) / 2)


def test_queue_candidates_with_the_same_id_are_positives():
    query = torch.tensor([[1.0, 0.0]])
    document = torch.tensor([[1.0, 0.0]])
    loss = contrastive_loss(
        query,
        document,
        torch.tensor([5]),
        temperature=1.0,
        momentum_query_embeds=query,
        momentum_document_embeds=document,
        queued_query_embeds=torch.tensor([[0.0, 1.0]]),
        queued_document_embeds=torch.tensor([[1.0, 0.0]]),
        queued_ids=torch.tensor([7]),
    )
    # q->d: candidates (d, queued d) both score 1; only the first is positive (id 5 vs 7): log 2.
    # d->q: candidates (q, queued q) score (1, 0); the first is positive: -log(e / (e + 1)).
    expected = (math.log(2) + math.log(1 + 1 / E)) / 2
    assert loss.item() == pytest.approx(expected)


def test_full_soft_labels_give_the_entropy_of_the_momentum_softmax():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    d = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    loss = contrastive_loss(q, d, torch.arange(3), 0.5, q, d, soft_label_weight=1.0)
    entropy = lambda logits: -(logits.softmax(1) * logits.log_softmax(1)).sum(1).mean()  # noqa: E731
    assert loss.item() == pytest.approx(((entropy(q @ d.T / 0.5) + entropy(d @ q.T / 0.5)) / 2).item(), rel=1e-5)


def test_soft_labels_need_momentum_embeddings():
    with pytest.raises(ValueError):
        contrastive_loss(torch.eye(2), torch.eye(2), torch.arange(2), 1.0, soft_label_weight=0.4)


def test_lm_loss_shifts_and_ignores_padding():
    logits = torch.tensor([[[math.log(3.0), 0.0], [5.0, -5.0], [0.0, 0.0]]])
    labels = torch.tensor([[1, 0, -100]])  # position 0 predicts label 0 (p = 3/4); the padded one is skipped
    assert lm_loss(logits, labels).item() == pytest.approx(-math.log(0.75))


def test_lm_loss_with_nothing_to_predict_is_zero_with_gradient():
    logits = torch.zeros(1, 2, 3, requires_grad=True)
    loss = lm_loss(logits, torch.tensor([[1, -100]]))
    loss.backward()
    assert loss.item() == 0.0


def test_localization_loss_hand_case():
    # Row 0: [CLS] 0.1, sentence tokens 0.2 (gold), 0.3 (gold), 0.4; the [CLS] mass is not a candidate.
    attention = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25]])
    candidates = torch.tensor([[False, True, True, True], [True, True, True, True]])
    gold = torch.tensor([[False, True, True, False], [False, False, False, False]])
    loss = localization_loss(attention, gold, candidates, eps=0.0)
    assert loss.item() == pytest.approx(-math.log(0.5 / 0.9))  # the row without gold tokens is skipped


def test_localization_loss_with_a_prior_is_the_mixture_cross_entropy():
    # Attention gives the gold sentence 0.2 of the sentence mass; BM25 gives it 0.8; mixed half and half: 0.5.
    attention = torch.tensor([[0.1, 0.2, 0.8]], requires_grad=True)
    candidates = torch.tensor([[False, True, True]])
    gold = torch.tensor([[False, True, False]])
    loss = localization_loss(
        attention, gold, candidates, eps=0.0, prior_gold_share=torch.tensor([0.8]), prior_weight=0.5
    )
    assert loss.item() == pytest.approx(math.log(2.0))
    # Weight 0 is the plain loss; a prior that already finds the gold sentence leaves the attention less to learn.
    plain = localization_loss(
        attention, gold, candidates, eps=0.0, prior_gold_share=torch.tensor([0.8]), prior_weight=0.0
    )
    assert plain.item() == pytest.approx(-math.log(0.2))
    (grad_plain,) = torch.autograd.grad(plain, attention)
    (grad_mixed,) = torch.autograd.grad(loss, attention)
    assert grad_mixed.abs().sum() < grad_plain.abs().sum()
    with pytest.raises(ValueError, match="prior_weight"):
        localization_loss(attention, gold, candidates, prior_gold_share=torch.tensor([0.8]), prior_weight=1.5)


def test_localization_loss_without_gold_is_zero_with_gradient():
    attention = torch.full((2, 3), 1 / 3, requires_grad=True)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    loss = localization_loss(attention, mask, ~mask)
    loss.backward()
    assert loss.item() == 0.0 and attention.grad is not None


def test_localization_loss_falls_as_attention_moves_to_gold():
    gold = torch.tensor([[False, True, False]])
    candidates = torch.ones(1, 3, dtype=torch.bool)
    spread = localization_loss(torch.tensor([[1 / 3, 1 / 3, 1 / 3]]), gold, candidates)
    focused = localization_loss(torch.tensor([[0.1, 0.8, 0.1]]), gold, candidates)
    assert focused < spread


def test_lm_loss_at_positions_equals_lm_loss_on_every_position():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    labels = torch.tensor([[5, 1, 2, IGNORE_INDEX], [5, 3, IGNORE_INDEX, IGNORE_INDEX]])
    positions = next_token_positions(labels)
    assert positions.tolist() == [[True, True, False, False], [True, False, False, False]]
    assert torch.allclose(lm_loss_at_positions(logits[positions], labels), lm_loss(logits, labels))
    with pytest.raises(ValueError, match="positions"):
        lm_loss_at_positions(logits[0], labels)


def test_copy_mixture_hand_case():
    from gear_core.layers import copy_mixture_log_probs

    # Uniform vocabulary (0.25 each), gate 0.5, both window tokens are id 2 (copy share 1.0 on id 2):
    # p(2) = 0.5 * 0.25 + 0.5 * 1.0 = 0.625; the other ids 0.5 * 0.25 = 0.125.
    log_probs = copy_mixture_log_probs(torch.zeros(1, 4), torch.zeros(1, 2), torch.zeros(1, 1), torch.tensor([[2, 2]]))
    assert torch.allclose(log_probs.exp(), torch.tensor([[0.125, 0.125, 0.625, 0.125]]))
    # A gate of +inf generates only; -inf copies only (other ids get the floor, not -inf).
    only_copy = copy_mixture_log_probs(
        torch.zeros(1, 4), torch.tensor([[0.0, -1e9]]), torch.tensor([[-1e9]]), torch.tensor([[1, 3]])
    )
    assert only_copy.exp()[0, 1].item() == pytest.approx(1.0) and torch.isfinite(only_copy).all()
