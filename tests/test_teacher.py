"""The sentence teacher: cached soft labels, the collator's sentence targets, and the mixed localization loss."""

import math

import numpy as np
import pytest
import torch

from gear_core.data.triples import Triple
from gear_core.losses import localization_loss, sentence_distillation_loss
from gear_core.text import split_sentences
from gear_core.training.collator import CachedStateCollator
from gear_core.training.document_states import DocumentStateCache
from gear_core.training.teacher import SentenceTeacher

TRIPLES = [
    Triple("where is paris", "Paris is in France. The Seine flows through it.", "France", ((0, 19),), "p#0"),
    Triple("what river", "Paris is in France. The Seine flows through it.", "Seine", ((20, 47),), "p#0"),
    Triple("largest planet", "Jupiter is the largest planet. It has moons.", "Jupiter", ((0, 30),), "j#0"),
]


def test_distillation_loss_is_the_cross_entropy_of_sentence_shares():
    attention = torch.tensor([[0.1, 0.3, 0.2, 0.4, 0.0], [0.5, 0.5, 0.0, 0.0, 0.0]])
    token_sentence = torch.tensor([[-1, 0, 0, 1, -1], [0, 1, -1, -1, -1]])
    teacher = torch.tensor([[0.25, 0.75], [0.0, 0.0]])  # the second row has no teacher: skipped
    expected = -(0.25 * math.log(5 / 9) + 0.75 * math.log(4 / 9))
    loss = sentence_distillation_loss(attention, token_sentence, teacher, eps=0.0)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert sentence_distillation_loss(attention, token_sentence, torch.zeros(2, 2)).item() == 0.0


def test_the_teacher_is_built_once_and_resumes(tiny_encoder_dir, tmp_path):
    teacher = SentenceTeacher.build(tiny_encoder_dir, TRIPLES[:2], tmp_path, show_progress=False)
    parts = sorted(p.name for p in tmp_path.glob("*.json"))
    assert parts == ["queries-00000.json", "sentences-00000.json", "teacher.json"]
    sentences = [s.text for s in split_sentences(TRIPLES[0].document)]
    probs = teacher.distribution("where is paris", sentences)
    assert probs.shape == (2,) and probs.sum() == pytest.approx(1.0, abs=1e-6)
    again = SentenceTeacher.build(tiny_encoder_dir, TRIPLES[:2], tmp_path, show_progress=False)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == parts  # nothing was missing: nothing encoded
    assert np.allclose(again.distribution("where is paris", sentences), probs)
    more = SentenceTeacher.build(tiny_encoder_dir, TRIPLES, tmp_path, show_progress=False)
    assert len(list(tmp_path.glob("*-00001.json"))) == 2  # only the new query and sentences
    assert more.distribution("largest planet", ["It has moons."]) == pytest.approx([1.0])
    with pytest.raises(KeyError, match="missing from the sentence teacher"):
        more.distribution("never seen", sentences)
    with pytest.raises(ValueError, match="another teacher"):
        SentenceTeacher.build("other-encoder", TRIPLES, tmp_path, show_progress=False)


def test_cached_batches_carry_each_tokens_sentence_and_the_teacher_target(tiny_model, tiny_encoder_dir, tmp_path):
    cache = DocumentStateCache.build(tiny_model, [t.document for t in TRIPLES], tmp_path / "s", show_progress=False)
    teacher = SentenceTeacher.build(tiny_encoder_dir, TRIPLES, tmp_path / "t", temperature=0.1, show_progress=False)
    batch = CachedStateCollator(tiny_model.tokenizer, cache, 16, 12, teacher)(TRIPLES)
    token_sentence, probs = batch["document_token_sentence"], batch["teacher_sentence_probs"]
    assert torch.equal(token_sentence >= 0, batch["document_candidate_mask"])  # the one candidate rule
    for row, triple in enumerate(TRIPLES):
        sentences = [s.text for s in split_sentences(triple.document)]
        expected = teacher.distribution(triple.query, sentences)
        assert np.allclose(probs[row, : len(sentences)].numpy(), expected, atol=1e-6)
        assert (token_sentence[row] >= 0).sum() == batch["document_candidate_mask"][row].sum()
    # The mixed localization loss is (1 - w) * gold + w * teacher, from the same attention.
    w = 0.3
    args = [batch[k] for k in ("query_input_ids", "query_attention_mask", "document_states", "document_attention_mask")]
    masks = {k: batch[k] for k in ("document_gold_mask", "document_candidate_mask")}
    tiny_model.eval()
    with torch.no_grad():
        _, gold_only = tiny_model.fusion_losses(*args, **masks, lm_loss_weight=0.0, localization_loss_weight=1.0)
        _, mixed = tiny_model.fusion_losses(
            *args,
            **masks,
            lm_loss_weight=0.0,
            localization_loss_weight=1.0,
            document_token_sentence=token_sentence,
            teacher_sentence_probs=probs,
            teacher_weight=w,
        )
        logits = tiny_model.fuse(*args, attention_layers=[tiny_model.config.ranking_layer_index])[1]
    from gear_core.scoring import pool_attention

    attention = pool_attention(
        logits[tiny_model.config.ranking_layer_index].softmax(-1), batch["query_attention_mask"], "mean", "mean"
    )
    assert gold_only.item() == pytest.approx(
        localization_loss(attention, batch["document_gold_mask"], batch["document_candidate_mask"]).item(), rel=1e-5
    )
    distill = sentence_distillation_loss(attention, token_sentence, probs).item()
    assert mixed.item() == pytest.approx((1 - w) * gold_only.item() + w * distill, rel=1e-5)
    with pytest.raises(ValueError, match="sentence teacher"):
        tiny_model.fusion_losses(*args, **masks, lm_loss_weight=0.0, localization_loss_weight=1.0, teacher_weight=0.5)


def test_the_full_stage_batch_carries_the_same_teacher_targets(tiny_model, tiny_encoder_dir, tmp_path):
    from gear_core.training import TripleCollator

    cache = DocumentStateCache.build(tiny_model, [t.document for t in TRIPLES], tmp_path / "s", show_progress=False)
    teacher = SentenceTeacher.build(tiny_encoder_dir, TRIPLES, tmp_path / "t", show_progress=False)
    cached = CachedStateCollator(tiny_model.tokenizer, cache, 16, 12, teacher)(TRIPLES)
    plain = TripleCollator(tiny_model.tokenizer, 16, tiny_model.config.max_document_length, 12, teacher)(TRIPLES)
    for key in ("document_token_sentence", "teacher_sentence_probs"):
        assert torch.equal(cached[key], plain[key])
    with torch.no_grad():
        gold_only = tiny_model(**plain, lm_loss_weight=0.0, localization_loss_weight=1.0)
        mixed = tiny_model(**plain, lm_loss_weight=0.0, localization_loss_weight=1.0, teacher_weight=1.0)
    assert mixed.contrastive_loss.item() == pytest.approx(gold_only.contrastive_loss.item())
    assert mixed.localization_loss.item() != pytest.approx(gold_only.localization_loss.item())
