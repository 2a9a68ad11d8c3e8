"""The staged training: the towers stage (bi-encoder top layers), the cheap fusion stage (cached document states,
the cached collator, window cropping, frozen towers) and the decoder stage."""

import math
import warnings

import lightning as L
import numpy as np
import pytest
import torch
from conftest import TINY_OVERRIDES

from gear_core.data.triples import Triple
from gear_core.scoring import bm25_sentence_scores, lexical_distribution
from gear_core.training import GeARDataModule, GeARLightningModule, TripleCollator
from gear_core.training.collator import CachedStateCollator, crop_to_window
from gear_core.training.document_states import DocumentStateCache, model_fingerprint, state_key

warnings.filterwarnings("ignore", ".*does not have many workers.*")

TRIPLES = [
    Triple("where is paris", "Paris is in France. The Seine flows through it.", "France", ((0, 19),), "p#0"),
    Triple("what river", "Paris is in France. The Seine flows through it.", "Seine", ((20, 47),), "p#0"),
    Triple("largest planet", "Jupiter is the largest planet.", "Jupiter", ((0, 30),), "j#0"),
]


def test_cached_batches_equal_what_the_document_tower_computes(tiny_model, tmp_path):
    cache = DocumentStateCache.build(tiny_model, [t.document for t in TRIPLES], tmp_path, show_progress=False)
    assert len(cache) == 2  # two distinct documents
    cached = CachedStateCollator(tiny_model.tokenizer, cache, 16, 12)(TRIPLES)
    plain = TripleCollator(tiny_model.tokenizer, 16, tiny_model.config.max_document_length, 12)(TRIPLES)
    assert torch.equal(cached["document_attention_mask"], plain["document_attention_mask"])
    assert torch.equal(cached["document_gold_mask"], plain["document_gold_mask"])
    assert torch.equal(cached["document_candidate_mask"], plain["document_candidate_mask"])
    tiny_model.eval()
    with torch.no_grad():
        states = tiny_model.document_encoder_module(
            input_ids=plain["document_input_ids"], attention_mask=plain["document_attention_mask"]
        ).last_hidden_state
    real = plain["document_attention_mask"].bool()
    assert torch.allclose(cached["document_states"][real], states[real], atol=2e-3)  # float16 storage
    assert torch.equal(cached["document_input_ids"], plain["document_input_ids"])  # what a copying decoder reads
    # The same losses as from the tower's own states (up to float16 rounding).
    lm, localization = tiny_model.fusion_losses(
        cached["query_input_ids"],
        cached["query_attention_mask"],
        cached["document_states"],
        cached["document_attention_mask"],
        cached["target_input_ids"],
        cached["target_attention_mask"],
        cached["target_labels"],
        cached["document_gold_mask"],
        cached["document_candidate_mask"],
        0.25,
        1.0,
    )
    full = tiny_model(**plain, lm_loss_weight=0.25, localization_loss_weight=1.0)
    assert lm.item() == pytest.approx(full.lm_loss.item(), abs=1e-3)
    assert localization.item() == pytest.approx(full.localization_loss.item(), abs=1e-3)


def test_the_cache_resumes_and_refuses_another_model(tiny_model, tiny_encoder_dir, tmp_path):
    from gear_core import GeARModel

    first = DocumentStateCache.build(tiny_model, [TRIPLES[0].document], tmp_path, show_progress=False)
    assert len(first) == 1 and len(first.meta["parts"]) == 1
    more = DocumentStateCache.build(tiny_model, [t.document for t in TRIPLES], tmp_path, show_progress=False)
    assert len(more) == 2 and len(more.meta["parts"]) == 2  # only the missing document was computed
    again = DocumentStateCache.build(tiny_model, [t.document for t in TRIPLES], tmp_path, show_progress=False)
    assert again.meta["parts"] == more.meta["parts"]
    assert np.array_equal(again.get(state_key(TRIPLES[2].document))[0], more.get(state_key(TRIPLES[2].document))[0])
    torch.manual_seed(1)
    other = GeARModel.from_encoder(tiny_encoder_dir, **TINY_OVERRIDES)
    assert model_fingerprint(other) != model_fingerprint(tiny_model)
    with pytest.raises(ValueError, match="another model"):
        DocumentStateCache.open(tmp_path, model_fingerprint(other))
    with pytest.raises(FileNotFoundError):
        DocumentStateCache.open(tmp_path / "nothing")
    with pytest.raises(KeyError, match="not in the state cache"):
        again.get("missing")


def test_a_long_document_is_cut_to_a_window_around_its_gold_sentence(tiny_model):
    sentences = [f"Sentence number {i} talks about topic {i}." for i in range(30)]
    document = " ".join(sentences)
    gold_start = document.index(sentences[22])
    triple = Triple("topic 22", document, "22", ((gold_start, gold_start + len(sentences[22])),), "long#0")
    cropped = crop_to_window(triple, tiny_model.tokenizer, 48)
    assert cropped.document_id.startswith("long#0@")
    start = int(cropped.document_id.rsplit("@", 1)[1])
    assert document[start : start + len(cropped.document)] == cropped.document
    assert len(tiny_model.tokenizer(cropped.document)["input_ids"]) <= 48
    ((s, e),) = cropped.gold_spans
    assert cropped.document[s:e] == sentences[22]
    assert cropped.document.startswith("Sentence") and cropped.document.endswith(".")
    short = TRIPLES[0]
    assert crop_to_window(short, tiny_model.tokenizer, 48) is short


def test_batches_carry_bm25s_share_of_the_gold_sentence(tiny_model, tmp_path):
    cache = DocumentStateCache.build(tiny_model, [t.document for t in TRIPLES], tmp_path, show_progress=False)
    cached = CachedStateCollator(tiny_model.tokenizer, cache, 16, 12, lexical_temperature=1.0)(TRIPLES)
    plain = TripleCollator(tiny_model.tokenizer, 16, 64, 12, lexical_temperature=1.0)(TRIPLES)
    assert "lexical_gold_share" not in TripleCollator(tiny_model.tokenizer, 16, 64, 12)(TRIPLES)
    assert torch.allclose(cached["lexical_gold_share"], plain["lexical_gold_share"])
    sentences = ["Paris is in France.", "The Seine flows through it."]
    expected = lexical_distribution(bm25_sentence_scores("what river", sentences), 1.0)[1]
    assert plain["lexical_gold_share"][1].item() == pytest.approx(expected)
    assert plain["lexical_gold_share"][1].item() == pytest.approx(0.5)  # no query word in either: a tie
    assert plain["lexical_gold_share"][0].item() > 0.5  # "paris" is in the gold sentence only
    assert plain["lexical_gold_share"][2].item() == pytest.approx(1.0)  # a one-sentence document
    # The loss reads it: with BM25 mixed in the gold term is the mixture's cross-entropy, so it changes.
    args = [
        cached[k] for k in ("query_input_ids", "query_attention_mask", "document_states", "document_attention_mask")
    ]
    _, alone = tiny_model.fusion_losses(
        *args,
        document_gold_mask=cached["document_gold_mask"],
        document_candidate_mask=cached["document_candidate_mask"],
        localization_loss_weight=1.0,
        lm_loss_weight=0.0,
    )
    tiny_model.config.ranking_lexical_weight = 0.5
    _, mixed = tiny_model.fusion_losses(
        *args,
        document_gold_mask=cached["document_gold_mask"],
        document_candidate_mask=cached["document_candidate_mask"],
        localization_loss_weight=1.0,
        lm_loss_weight=0.0,
        lexical_gold_share=cached["lexical_gold_share"],
    )
    assert mixed.item() != pytest.approx(alone.item())


def fit_three_steps(module, squad, split, tmp_path):
    """Three cached-state steps on the tiny SQuAD and one validation: ``(trainer, data, names of changed weights)``."""
    data = GeARDataModule(
        squad_path=squad,
        split_path=split,
        validation_articles=1,
        batch_size=4,
        num_workers=0,
        document_states_dir=str(tmp_path / "states"),
    )
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    trainer = L.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        enable_checkpointing=False,
        limit_val_batches=1,
        val_check_interval=3,
    )
    trainer.fit(module, data)
    return trainer, data, {n for n, p in module.model.named_parameters() if not torch.equal(p, before[n])}


def test_the_fusion_stage_trains_cross_attention_and_decoder_only(tiny_encoder_dir, tiny_squad, tmp_path):
    squad, split = tiny_squad
    module = GeARLightningModule(
        tiny_encoder_dir,
        config_overrides=dict(TINY_OVERRIDES),
        learning_rate=1e-3,
        warmup_steps=1,
        localization_loss_weight=1.0,
        stage="fusion",
    )
    assert module.momentum is None
    trainer, data, changed = fit_three_steps(module, squad, split, tmp_path)
    assert isinstance(data.collator, CachedStateCollator)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    assert "val/squad/local_r1" in trainer.callback_metrics
    assert changed and all(n.startswith(("cross_attention.", "decoder.")) for n in changed)
    assert any(n.startswith("cross_attention.") for n in changed)
    assert not any(n.startswith(("query_encoder.", "document_encoder.")) for n in changed)
    folders = list((tmp_path / "states").iterdir())
    assert len(folders) == 1 and (folders[0] / "cache.json").is_file()


def test_the_fusion_stage_can_train_the_mixture_with_bm25(tiny_encoder_dir, tiny_squad, tmp_path):
    with pytest.raises(ValueError, match="ranking_lexical_weight"):
        GeARLightningModule(tiny_encoder_dir, config_overrides=dict(TINY_OVERRIDES), lexical_localization=True)
    squad, split = tiny_squad
    module = GeARLightningModule(
        tiny_encoder_dir,
        config_overrides={**TINY_OVERRIDES, "ranking_lexical_weight": 0.5, "ranking_lexical_temperature": 2.0},
        learning_rate=1e-3,
        warmup_steps=1,
        lm_loss_weight=0.0,
        localization_loss_weight=1.0,
        lexical_localization=True,
        stage="fusion",
    )
    trainer, data, changed = fit_three_steps(module, squad, split, tmp_path)
    assert data.collator.lexical_temperature == 2.0
    assert math.isfinite(float(trainer.callback_metrics["train/localization_loss"]))
    assert any(n.startswith("cross_attention.") for n in changed)


def test_an_unknown_stage_is_refused(tiny_encoder_dir):
    with pytest.raises(ValueError, match="stage"):
        GeARLightningModule(tiny_encoder_dir, config_overrides=dict(TINY_OVERRIDES), stage="bi-encoder")


def test_the_towers_stage_trains_the_towers_above_the_span_readers_layers(tiny_encoder_dir, tiny_squad, tmp_path):
    squad, split = tiny_squad
    overrides = {**TINY_OVERRIDES, "span_reader_layers": 1, "span_reader_shared_layers": 1}
    module = GeARLightningModule(
        tiny_encoder_dir,
        config_overrides=overrides,
        learning_rate=1e-3,
        warmup_steps=1,
        stage="towers",
        score_metrics=["global_r5"],
    )
    assert module.momentum is not None  # the paper's contrastive recipe: momentum encoder and queue
    reader_inputs = torch.tensor([[2, 5, 6, 3, 7, 8, 3]])

    def read() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return module.model.eval().span_logits(reader_inputs, torch.ones_like(reader_inputs), None)

    reader_before = read()
    module.model.train()
    trainer, _, changed = fit_three_steps(module, squad, split, tmp_path)
    assert any(n.startswith("query_encoder.encoder.layer.1.") for n in changed)
    # the embeddings and layer 0 (which the span reader shares), cross-attention and decoder stay as they were
    top_layers = ("query_encoder.encoder.layer.1.", "document_encoder.encoder.layer.1.")  # two towers here
    assert all(n.startswith(top_layers) or n == "temperature" for n in changed)
    assert all(torch.equal(after, start) for after, start in zip(read(), reader_before, strict=True))
    metrics = trainer.callback_metrics
    assert "val/squad/local_r1" in metrics  # logged, but only global R@5 picks the export
    assert float(metrics["val/score"]) == pytest.approx(float(metrics["val/squad/global_r5"]))


def test_the_towers_stage_trains_retrieval_layers_alone(tiny_encoder_dir, tiny_squad, tmp_path):
    """With retrieval layers the towers stage trains those (and the temperature) alone: the encoder that sentence
    ranking reads stays, so the rankings are the same after training."""
    squad, split = tiny_squad
    overrides = {**TINY_OVERRIDES, "shared_encoder": True, "retrieval_layers": 1}
    module = GeARLightningModule(
        tiny_encoder_dir, config_overrides=overrides, learning_rate=1e-3, warmup_steps=1, stage="towers"
    )
    document = "Paris is in France. The Seine flows through it. " * 6  # two windows: window weighting runs

    def ranked() -> list:
        return [(s.start_char, s.score) for s in module.model.eval().rank_sentences("which river", document, None)]

    before, embedding = ranked(), module.model.encode_documents([document])
    module.model.train()
    _, _, changed = fit_three_steps(module, squad, split, tmp_path)
    assert any(n.startswith("retrieval_layers.0.") for n in changed)
    assert all(n.startswith("retrieval_layers.") or n == "temperature" for n in changed)
    assert ranked() == before
    assert not np.allclose(module.model.encode_documents([document]), embedding)
    with pytest.raises(ValueError, match="does not apply to a model with retrieval_layers"):
        GeARLightningModule(tiny_encoder_dir, config_overrides=overrides, stage="towers", frozen_encoder_layers=1)


def test_the_towers_stage_can_train_every_layer_and_refuses_a_frozen_tower(tiny_encoder_dir, tiny_squad, tmp_path):
    squad, split = tiny_squad
    module = GeARLightningModule(
        tiny_encoder_dir,
        config_overrides=dict(TINY_OVERRIDES),
        learning_rate=1e-3,
        warmup_steps=1,
        stage="towers",
        frozen_encoder_layers=0,
    )
    _, _, changed = fit_three_steps(module, squad, split, tmp_path)
    assert any(n.startswith("query_encoder.encoder.layer.0.") for n in changed)
    assert not any(n.startswith("query_encoder.embeddings.") for n in changed)
    with pytest.raises(ValueError, match="frozen_encoder_layers must lie in"):
        GeARLightningModule(
            tiny_encoder_dir, config_overrides=dict(TINY_OVERRIDES), stage="towers", frozen_encoder_layers=2
        )
    with pytest.raises(ValueError, match="towers stage"):
        GeARLightningModule(
            tiny_encoder_dir, config_overrides=dict(TINY_OVERRIDES), stage="fusion", frozen_encoder_layers=1
        )


def test_the_decoder_stage_trains_the_copying_decoder_only(tiny_encoder_dir, tiny_squad, tmp_path):
    squad, split = tiny_squad
    start = GeARLightningModule(tiny_encoder_dir, config_overrides=dict(TINY_OVERRIDES)).model
    start.save_pretrained(tmp_path / "start")
    module = GeARLightningModule(
        str(tmp_path / "start"),
        config_overrides={"decoder_memory": "query_and_document", "decoder_copy": True},
        learning_rate=1e-3,
        warmup_steps=1,
        lm_loss_weight=1.0,
        localization_loss_weight=0.0,
        stage="decoder",
        validate_generation=True,
    )
    assert module.model.copy_head is not None
    trainer, _, changed = fit_three_steps(module, squad, split, tmp_path)
    metrics = trainer.callback_metrics
    assert 0 <= float(metrics["val/squad/answer_f1"]) <= 1 and "val/squad/answer_em" in metrics
    assert any(n.startswith("copy_head.") for n in changed) and any(n.startswith("decoder.") for n in changed)
    assert all(n.startswith(("decoder.", "copy_head.")) for n in changed)  # ranking parts untouched
