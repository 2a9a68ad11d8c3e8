"""Lightning training on a tiny model and tiny SQuAD-format data: schedules, batching, fit, export, resume."""

import math
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from conftest import TINY_OVERRIDES

from gear_core import GeARModel
from gear_core.cli import main
from gear_core.data.triples import Triple, write_triples_jsonl
from gear_core.losses import IGNORE_INDEX
from gear_core.training import (
    GeARDataModule,
    GeARLightningModule,
    TripleCollator,
    learning_rate_at,
    soft_label_weight_at,
)
from gear_core.training.cli import run_training

warnings.filterwarnings("ignore", ".*does not have many workers.*")


def test_learning_rate_schedule_hand_cases():
    args = dict(total_steps=110, peak=1e-4, warmup_steps=10, warmup_start=1e-6, minimum=1e-6)
    assert learning_rate_at(0, **args) == pytest.approx(1e-6)
    assert learning_rate_at(5, **args) == pytest.approx(1e-6 + (1e-4 - 1e-6) / 2)
    assert learning_rate_at(10, **args) == pytest.approx(1e-4)
    assert learning_rate_at(60, **args) == pytest.approx(1e-6 + (1e-4 - 1e-6) / 2)  # half-way down the cosine
    assert learning_rate_at(110, **args) == pytest.approx(1e-6)
    assert learning_rate_at(500, **args) == pytest.approx(1e-6)


def test_soft_label_ramp():
    assert soft_label_weight_at(0.0, 0.4, 2.0) == 0.0
    assert soft_label_weight_at(1.0, 0.4, 2.0) == pytest.approx(0.2)
    assert soft_label_weight_at(5.0, 0.4, 2.0) == pytest.approx(0.4)
    assert soft_label_weight_at(0.0, 0.4, 0.0) == 0.4


def test_collator_batches_triples(tiny_model):
    triples = [
        Triple("q1", "Doc A. More.", "A", ((0, 6),), "a#0"),
        Triple("q2 longer query", "Doc A. More.", "answer two", ((7, 12),), "a#0"),
        Triple("q3", "Doc B.", "B", ((0, 6),), "b#0"),
    ]
    batch = TripleCollator(tiny_model.tokenizer, 16, 64, 12)(triples)
    assert batch["query_input_ids"].shape[0] == 3
    ids = batch["document_ids"].tolist()
    assert ids[0] == ids[1] != ids[2]
    assert (batch["target_input_ids"][:, 0] == tiny_model.tokenizer.bos_token_id).all()
    assert (batch["target_labels"][batch["target_attention_mask"] == 0] == IGNORE_INDEX).all()
    out = tiny_model(**batch)
    assert math.isfinite(out.loss.item())
    # Gold masks mark the tokens of the gold sentence, never [CLS]/[SEP] or padding.
    tokens = [tiny_model.tokenizer.convert_ids_to_tokens(row) for row in batch["document_input_ids"].tolist()]
    gold = [
        [t for t, g in zip(row, mask, strict=True) if g]
        for row, mask in zip(tokens, batch["document_gold_mask"], strict=True)
    ]
    assert gold == [["doc", "a", "."], ["more", "."], ["doc", "b", "."]]
    assert not (batch["document_gold_mask"] & ~batch["document_candidate_mask"]).any()
    assert batch["document_candidate_mask"].sum(dim=1).tolist() == [5, 5, 3]


def test_localization_loss_joins_the_training_loss(tiny_model):
    triples = [
        Triple("q1", "Doc A. More text here.", "A", ((0, 6),), "a#0"),
        Triple("q2", "Doc B. Other words.", "B", ((7, 19),), "b#0"),
    ]
    batch = TripleCollator(tiny_model.tokenizer, 16, 64, 12)(triples)
    plain = tiny_model(**batch, lm_loss_weight=0.0)
    assert plain.localization_loss is None  # weight 0 (the paper's recipe) does not read attention
    out = tiny_model(**batch, lm_loss_weight=0.0, localization_loss_weight=0.5)
    assert out.localization_loss.item() > 0
    assert out.loss.item() == pytest.approx(out.contrastive_loss.item() + 0.5 * out.localization_loss.item())
    out.loss.backward()
    ranking_block = tiny_model.cross_attention[str(tiny_model.config.ranking_layer_index)]
    assert ranking_block.key.weight.grad.abs().sum() > 0  # the loss trains the ranking layer's attention


def test_datamodule_holds_out_articles_and_filters_every_source(tiny_squad, tmp_path):
    squad, split = tiny_squad
    synthetic = tmp_path / "synthetic.jsonl"
    write_triples_jsonl(
        [
            Triple("mars keywords", "Mars is red.", "Mars is red.", ((0, 12),), "wiki:Mars", "ri"),  # a test title
            Triple("paris keywords", "Paris text.", "Paris text.", ((0, 11),), "wiki:Paris", "ri"),
            Triple("water keywords", "Water text.", "Water text.", ((0, 11),), "wiki:Water", "ri"),
        ],
        synthetic,
    )
    dm = GeARDataModule(squad_path=squad, split_path=split, triples_paths=[str(synthetic)], validation_articles=1)
    dm.setup("fit")
    held_out = {i.rsplit("#", 1)[0] for i in dm.validation_sets[0].corpus_ids}
    assert len(held_out) == 1 and dm.validation_triples
    train_titles = {t.document_id.split("#")[0].removeprefix("wiki:") for t in dm.train_triples}
    assert not train_titles & held_out
    assert "Mars" not in train_titles
    assert len(dm.train_triples) == 3 * 4 + 2 - (1 if held_out & {"Paris", "Water"} else 0)


def _module_and_data(tiny_encoder_dir, tiny_squad, config_overrides=None, **module_args):
    squad, split = tiny_squad
    module = GeARLightningModule(
        tiny_encoder_dir,
        config_overrides=dict(TINY_OVERRIDES) | (config_overrides or {}),
        learning_rate=1e-3,
        warmup_steps=2,
        **module_args,
    )
    data = GeARDataModule(squad_path=squad, split_path=split, validation_articles=1, batch_size=4, num_workers=0)
    return module, data


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_fast_dev_run(tiny_encoder_dir, tiny_squad, precision):
    module, data = _module_and_data(tiny_encoder_dir, tiny_squad)
    trainer = L.Trainer(fast_dev_run=2, accelerator="cpu", precision=precision, logger=False, enable_progress_bar=False)
    trainer.fit(module, data)
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
    metrics = trainer.callback_metrics
    assert "val/squad/local_r1" in metrics and "val/squad/global_r5" in metrics and "val/long/local_r1" in metrics
    assert int(module.momentum.queue.num_filled) == 8  # two batches of 4 queued


class LossRecorder(L.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append((trainer.global_step, float(outputs["loss"])))


class StopAfterFirstEpoch(L.Callback):
    """Simulates an interruption without changing max_epochs (which would change the cosine schedule)."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def _fit(tiny_encoder_dir, tiny_squad, root, max_epochs=2, ckpt_path=None, interrupt=False):
    L.seed_everything(0)
    module, data = _module_and_data(tiny_encoder_dir, tiny_squad)
    recorder = LossRecorder()
    extra = [StopAfterFirstEpoch()] if interrupt else []
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        default_root_dir=root,
        callbacks=[recorder, L.pytorch.callbacks.ModelCheckpoint(dirpath=root, save_last=True), *extra],
    )
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return trainer, recorder.losses


def test_resuming_continues_the_step_count_and_reproduces_the_next_loss(tiny_encoder_dir, tiny_squad, tmp_path):
    _, straight = _fit(tiny_encoder_dir, tiny_squad, tmp_path / "straight")
    _, first = _fit(tiny_encoder_dir, tiny_squad, tmp_path / "resumed", interrupt=True)
    trainer, resumed = _fit(
        tiny_encoder_dir, tiny_squad, tmp_path / "resumed", ckpt_path=str(tmp_path / "resumed" / "last.ckpt")
    )
    steps_per_epoch = len(first)
    assert resumed[0][0] == steps_per_epoch + 1  # the step count carries on
    assert trainer.global_step == 2 * steps_per_epoch
    straight_second_epoch = [loss for _, loss in straight[steps_per_epoch:]]
    assert [loss for _, loss in resumed] == pytest.approx(straight_second_epoch, rel=1e-5)


def test_gear_train_and_validate_commands(tiny_encoder_dir, tiny_squad, tmp_path, capsys):
    squad, split = tiny_squad
    config = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": 1,
            "logger": False,
            "enable_progress_bar": False,
            "default_root_dir": str(tmp_path / "run"),
        },
        "model": {
            "model_name_or_path": tiny_encoder_dir,
            "config_overrides": dict(TINY_OVERRIDES),
            "warmup_steps": 1,
            "export_dir": str(tmp_path / "best"),
        },
        "data": {"squad_path": squad, "split_path": split, "validation_articles": 1, "batch_size": 4, "num_workers": 0},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    assert main(["train", "-c", str(path), "--model.lm_loss_weight", "0"]) == 0
    exported = GeARModel.from_pretrained(tmp_path / "best")
    assert exported.rank_sentences("capital", "Paris is the capital. It is big.")
    # `gear validate` reads the exported model and logs the validation metrics of the same config.
    validate = ["validate", "-c", str(path), "--model.model_name_or_path", str(tmp_path / "best")]
    assert main(validate) == 0
    printed = capsys.readouterr().out
    assert "val/squad/local_R@1" in printed or "val/score" in printed
    assert main(["train", "-c", "no-such-config"]) == 2
    assert "no config 'no-such-config'" in capsys.readouterr().err


def test_lm_weight_zero_trains_retrieval_only(tiny_encoder_dir, tiny_squad):
    module, data = _module_and_data(tiny_encoder_dir, tiny_squad, lm_loss_weight=0.0)
    data.setup("fit")
    data.use_model(module.model)
    batch = next(iter(data.train_dataloader()))
    out = module.model(**batch, lm_loss_weight=0.0)
    assert torch.equal(out.loss, out.contrastive_loss)
    assert out.lm_loss is None  # the decoder did not run
    assert module.model(**batch).lm_loss is not None


def test_ddp_ranks_share_one_queue(tiny_encoder_dir, tiny_squad):
    """Two CPU processes (gloo): every rank's momentum features join the queue, so it fills twice as fast."""
    squad, split = tiny_squad
    module = GeARLightningModule(
        tiny_encoder_dir, config_overrides={**TINY_OVERRIDES, "queue_size": 64}, learning_rate=1e-3, warmup_steps=1
    )
    data = GeARDataModule(squad_path=squad, split_path=split, validation_articles=1, batch_size=2, num_workers=0)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_steps=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
    )
    trainer.fit(module, data)
    # 2 steps x 2 ranks x batch 2; the spawned rank 0's state comes back to this process after fit.
    assert int(module.momentum.queue.num_filled) == 8


@pytest.mark.parametrize(
    "name", sorted(path.stem for path in (Path(__file__).parents[1] / "gear_core/training/configs").glob("*.yaml"))
)
def test_shipped_configs_parse(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_training(["-c", name, "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["model_name_or_path"] and printed["data"]["squad_path"]


@pytest.mark.parametrize("reader_lr_scale", [None, 7.0])
def test_cross_attention_and_decoder_learn_at_their_own_rates(tiny_encoder_dir, tiny_squad, reader_lr_scale):
    module, data = _module_and_data(
        tiny_encoder_dir,
        tiny_squad,
        config_overrides={"share_decoder_embeddings": True, "decoder_copy": True, "decoder_reader_layers": 1},
        cross_attention_lr_scale=10.0,
        decoder_lr_scale=3.0,
        reader_lr_scale=reader_lr_scale,
        weight_decay=0.05,
    )
    trainer = L.Trainer(
        max_steps=1,
        limit_val_batches=0,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    trainer.fit(module, data)
    optimizer = trainer.optimizers[0]
    model = module.model
    shared_embeddings = model.query_encoder.embeddings.word_embeddings.weight
    assert model.decoder.bert.embeddings.word_embeddings.weight is shared_embeddings  # tied: one rate, the base
    expected = {id(p): 1e-2 for p in model.cross_attention.parameters()}
    expected |= {id(p): 3e-3 for p in model.decoder.parameters() if p is not shared_embeddings}
    expected |= {id(p): 3e-3 for p in model.copy_head.parameters()}
    reader_rate = 3e-3 if reader_lr_scale is None else 7e-3  # None: the decoder's
    for part in (model.reader, model.reader_output):
        expected |= {id(p): reader_rate for p in part.parameters()}
    for group in optimizer.param_groups:
        rates = {expected.get(id(p), 1e-3) for p in group["params"]}
        assert len(rates) == 1  # a group holds parameters of one rate only
        assert group["initial_lr"] == pytest.approx(rates.pop())
        assert group["weight_decay"] == (0.05 if group["params"][0].ndim >= 2 else 0.0)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_training_from_a_saved_gear_model_runs_in_train_mode(tiny_encoder_dir, tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "saved")
    module = GeARLightningModule(str(tmp_path / "saved"))
    assert all(m.training for m in module.model.modules())  # dropout on, as for a fresh model


def test_the_data_order_seed_does_not_move_the_validation_articles(tiny_squad):
    squad, split = tiny_squad

    def held_out(**seeds) -> tuple[set[str], list[str]]:
        dm = GeARDataModule(
            squad_path=squad, split_path=split, validation_articles=1, validation_max_questions=2, **seeds
        )
        dm.setup("fit")
        return {i.rsplit("#", 1)[0] for i in dm.validation_sets[0].corpus_ids}, [t.query for t in dm.validation_triples]

    # A later stage run with another data order validates on the same articles and questions, never trains on them.
    reference = held_out(seed=0)
    assert all(held_out(seed=seed) == reference for seed in range(1, 6))
    assert any(held_out(validation_seed=seed)[0] != reference[0] for seed in range(1, 6))


def test_squad_split_readers_and_the_held_out_articles(tiny_squad, tmp_path):
    """load_split / split_paragraphs / hold_out_articles, and validation_paragraphs holds out exactly the
    articles GeARDataModule validates on (benchmarks tune on that slice and must never train on it)."""
    import random

    from gear_core.data.squad import hold_out_articles, load_split, split_paragraphs, validation_paragraphs

    squad, split = tiny_squad
    assert load_split(split) == {"train": ["Paris", "Jupiter", "Hamlet", "Water"], "test": ["Mars"]}
    paragraphs = split_paragraphs(squad, split, "train")
    assert [p.title for p in paragraphs] == ["Paris"] * 2 + ["Jupiter"] * 2 + ["Hamlet"] * 2 + ["Water"] * 2
    assert split_paragraphs(squad, split, "test") == []  # Mars has no paragraphs in the file
    with pytest.raises(KeyError, match="no 'validation' part"):
        split_paragraphs(squad, split, "validation")

    titles = ["b", "a", "c", "a"]
    assert hold_out_articles(titles, 2, random.Random(0)) == hold_out_articles(titles[::-1], 2, random.Random(0))
    assert len(hold_out_articles(titles, 10, random.Random(0))) == 2  # one of the 3 titles is left to train on
    assert hold_out_articles(["only"], 1, random.Random(0)) == set()

    for seed in (0, 1, 2):
        data = GeARDataModule(squad_path=squad, split_path=split, validation_articles=2, validation_seed=seed)
        data.setup("fit")
        expected = data.excluded_titles - {"Mars"}
        held_out = validation_paragraphs(squad, split, count=2, seed=seed)
        assert {p.title for p in held_out} == expected and len(held_out) == 4


def test_a_dry_run_saves_nothing(tiny_encoder_dir, tiny_squad, tmp_path):
    """--trainer.fast_dev_run (the README's smoke test) left 570 MB: a best-model export and last.ckpt."""
    module, data = _module_and_data(tiny_encoder_dir, tiny_squad, export_dir=str(tmp_path / "best"))
    trainer = L.Trainer(
        fast_dev_run=2,
        accelerator="cpu",
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True)],
    )
    trainer.fit(module, data)
    assert trainer.global_step == 2 and module.best_score > float("-inf")  # it validated, and would have exported
    assert not (tmp_path / "best").exists() and not list(tmp_path.rglob("*.ckpt"))
