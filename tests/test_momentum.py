import torch
from torch import nn

from gear_core.momentum import FeatureQueue, MomentumEncoder, ema_update_


def test_ema_step_hand_case():
    target, source = nn.Linear(1, 1), nn.Linear(1, 1)
    for p in target.parameters():
        nn.init.zeros_(p)
    for p in source.parameters():
        nn.init.ones_(p)
    ema_update_(target, source, momentum=0.9)
    assert torch.allclose(target.weight, torch.tensor([[0.1]]))
    ema_update_(target, source, momentum=0.9)
    assert torch.allclose(target.bias, torch.tensor([0.19]))


def test_queue_fills_then_wraps_around():
    queue = FeatureQueue(size=5, dim=2)
    assert queue.contents()[2].numel() == 0
    feats = lambda ids: torch.tensor(ids, dtype=torch.float32)[:, None].repeat(1, 2)  # noqa: E731
    queue.enqueue(feats([1, 2, 3]), feats([1, 2, 3]), torch.tensor([1, 2, 3]))
    assert queue.contents()[2].tolist() == [1, 2, 3]
    queue.enqueue(feats([4, 5, 6]), -feats([4, 5, 6]), torch.tensor([4, 5, 6]))
    _, documents, ids = queue.contents()
    assert ids.tolist() == [6, 2, 3, 4, 5]  # 6 overwrote the oldest slot
    assert documents[0].tolist() == [-6.0, -6.0]
    assert int(queue.pointer) == 1 and int(queue.num_filled) == 5


def test_batch_larger_than_queue_keeps_its_tail():
    queue = FeatureQueue(size=3, dim=1)
    values = torch.arange(7, dtype=torch.float32)[:, None]
    queue.enqueue(values, values, torch.arange(7))
    assert sorted(queue.contents()[2].tolist()) == [4, 5, 6]


def test_momentum_encoder_starts_equal_and_follows_the_model(tiny_model):
    momentum = MomentumEncoder(tiny_model, momentum=0.5)
    assert all(not p.requires_grad for p in momentum.parameters())
    momentum.train()  # e.g. Lightning switching the whole module to training mode
    assert not momentum.training and not momentum.query_encoder.training  # the teacher never uses dropout
    source = next(tiny_model.query_encoder.parameters())
    copy = next(momentum.query_encoder.parameters())
    assert torch.equal(source, copy)
    with torch.no_grad():
        source.add_(1.0)
    momentum.update(tiny_model)
    assert torch.allclose(copy, source - 0.5)
