"""The span reader: its input, its token <-> character rule, its span choice, its loss, its training data and the
model plumbing (tiny random configs: these are about plumbing, not quality)."""

from __future__ import annotations

import math
import random

import lightning as L
import pytest
import torch
from conftest import TINY_OVERRIDES, tiny_gear
from transformers import AutoTokenizer

from gear_core import GeARConfig, GeARModel
from gear_core.cli import main
from gear_core.data.triples import Triple, answer_span
from gear_core.evidence import GroundedEvidence
from gear_core.losses import span_distillation_loss, span_loss
from gear_core.span_reader import ReaderContext, best_spans, encode_reader_inputs
from gear_core.text import split_sentences
from gear_core.training import GeARDataModule, GeARLightningModule
from gear_core.training.collator import SpanReaderCollator, reader_training_sentences

DOCUMENT = "Intro line here. The tower is in Paris. It was finished in 1889. It is tall."


def test_a_context_maps_its_characters_back_to_the_document():
    sentences = split_sentences(DOCUMENT)
    third, second = sentences[2], sentences[1]  # best first, as the ranking gives them
    context = ReaderContext.of([third, second])
    assert context.text == "It was finished in 1889. The tower is in Paris."
    year = context.text.index("1889")
    assert context.to_document(year, year + 4) == (DOCUMENT.index("1889"), DOCUMENT.index("1889") + 4)
    paris = context.text.index("Paris")
    assert DOCUMENT[slice(*context.to_document(paris, paris + 5))] == "Paris"
    assert context.to_document(24, 25) is None  # the separator is not the document's
    assert context.to_context(DOCUMENT.index("1889"), DOCUMENT.index("1889") + 4) == (year, year + 4)
    assert context.to_context(0, 5) is None  # a sentence the reader was not given
    assert ReaderContext.of([]).text == ""


def test_answer_tokens_cover_the_answer_and_the_question_is_never_a_candidate(minilm_path):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    contexts = ["It was finished in 1889.", "The tower is in Paris, France."]
    inputs = encode_reader_inputs(tokenizer, ["when was it finished?", "where is 1889?"], contexts, 64)
    start = contexts[0].index("1889")
    first, last = inputs.answer_tokens(0, start, start + 4)
    assert tokenizer.decode(inputs.input_ids[0, first : last + 1]) == "1889"
    start = contexts[1].index("Paris, France")
    first, last = inputs.answer_tokens(1, start, start + len("Paris, France"))
    assert tokenizer.decode(inputs.input_ids[1, first : last + 1]) == "paris, france"
    # "1889" in the second question is a question token: never a candidate, no offsets
    question_tokens = (inputs.token_type_ids[1] == 0) & (inputs.attention_mask[1] == 1)
    question_tokens[0] = False  # [CLS] is the null answer
    assert not inputs.candidates[1][question_tokens].any() and inputs.candidates[:, 0].all()
    # an answer cut off by truncation is the null answer
    short = encode_reader_inputs(tokenizer, ["when was it finished?"], contexts[:1], 10)
    assert short.answer_tokens(0, start=contexts[0].index("1889"), end=contexts[0].index("1889") + 4) == (0, 0)


def test_best_spans_hand_case():
    # tokens: [CLS] q [SEP] c1 c2 c3 [SEP]; candidates: [CLS], c1..c3
    candidates = torch.tensor([[True, False, False, True, True, True, False]])
    start = torch.tensor([[1.0, 9.0, 0.0, 2.0, 0.0, 0.0, 0.0]])
    end = torch.tensor([[1.0, 9.0, 0.0, 0.0, 0.0, 3.0, 0.0]])
    first, last, probability, null, support = best_spans(start, end, candidates, max_answer_tokens=3)
    assert (int(first), int(last)) == (3, 5)  # start 2 + end 3; the question's 9s are not candidates
    # every allowed span (i <= j, j - i < 3) among c1..c3, and the null answer (1 + 1)
    scores = [start[0, i] + end[0, j] for i in (3, 4, 5) for j in (3, 4, 5) if i <= j]
    normaliser = math.log(sum(math.exp(s) for s in scores) + math.exp(2.0))
    assert float(probability) == pytest.approx(math.exp(5.0 - normaliser))
    assert float(null) == pytest.approx(math.exp(2.0 - normaliser))
    assert float(support) == pytest.approx(1 / (1 + math.exp(2.0 - 5.0)))  # the span (5) against null (2) alone
    assert float(support) == pytest.approx(float(probability) / float(probability + null))
    # too long for max_answer_tokens=2: the best span then ends earlier
    spans = best_spans(start, end, candidates, max_answer_tokens=2)
    assert (int(spans.start), int(spans.end)) == (4, 5)
    # a row with no context token: (0, 0), probability and support 0, the null answer certain
    none = torch.tensor([[True, False, False, False, False, False, False]])
    first, last, probability, null, support = best_spans(start, end, none, 3)
    assert (int(first), int(last), float(probability), float(null), float(support)) == (0, 0, 0.0, 1.0, 0.0)


def test_span_loss_hand_case():
    start = torch.tensor([[0.0, 5.0, 1.0, 2.0]])
    end = torch.tensor([[0.0, 5.0, 2.0, 1.0]])
    candidates = torch.tensor([[True, False, True, True]])  # token 1 is the question's: excluded
    loss = span_loss(start, end, torch.tensor([2]), torch.tensor([2]), candidates)
    log_z = math.log(math.exp(0) + math.exp(1) + math.exp(2))
    expected = ((log_z - 1.0) + (log_z - 2.0)) / 2
    assert float(loss) == pytest.approx(expected)
    loss.requires_grad_(False)
    null = span_loss(start, end, torch.tensor([0]), torch.tensor([0]), candidates)
    assert float(null) == pytest.approx(log_z - 0.0)


def test_span_distillation_loss_hand_case():
    candidates = torch.tensor([[True, False, True]])  # token 1 is the question's: no probability in either
    student = torch.tensor([[0.0, 9.0, 0.0]])  # uniform over the candidates: (1/2, 1/2)
    teacher = torch.tensor([[math.log(3.0), -4.0, 0.0]])  # (3/4, 1/4) at temperature 1
    at_one = span_distillation_loss(student, teacher, teacher, teacher, candidates, temperature=1.0)
    start_kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert float(at_one) == pytest.approx(start_kl / 2)  # the end logits agree: KL 0
    p = math.sqrt(3.0) / (1 + math.sqrt(3.0))  # temperature 2: (sqrt 3, 1), normalised
    at_two = span_distillation_loss(student, student, teacher, student, candidates, temperature=2.0)
    expected = p * math.log(p / 0.5) + (1 - p) * math.log((1 - p) / 0.5)
    assert float(at_two) == pytest.approx(4 * expected / 2)
    assert float(span_distillation_loss(teacher, teacher, teacher, teacher, candidates)) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="temperature"):
        span_distillation_loss(student, student, teacher, teacher, candidates, temperature=0.0)


def _triple(target: str = "1889", kind: str = "qa") -> Triple:
    sentences = split_sentences(DOCUMENT)
    gold = next(s for s in sentences if target in s.text) if kind == "qa" else sentences[2]
    return Triple("when was the tower finished?", DOCUMENT, target, ((gold.start_char, gold.end_char),), "d", kind)


def test_answer_span_finds_the_answer_inside_its_gold_sentence():
    triple = _triple("It")  # "It" first occurs in the gold sentence's own start, not elsewhere
    start, end = answer_span(triple)
    assert DOCUMENT[start:end] == "It" and start == DOCUMENT.index("It was")
    assert answer_span(_triple()) == (DOCUMENT.index("1889"), DOCUMENT.index("1889") + 4)
    assert answer_span(_triple(kind="ri", target=split_sentences(DOCUMENT)[2].text)) is None
    missing = Triple("q", DOCUMENT, "Berlin", ((0, 16),), "d")
    assert answer_span(missing) is None


def test_training_sentences_hold_the_gold_sentence_unless_abstaining():
    triple = _triple()
    gold = split_sentences(DOCUMENT)[2]
    for count in (1, 2, 3):
        sentences, answer = reader_training_sentences(triple, random.Random(0), count, abstain_share=0.0)
        assert len(sentences) == count and gold in sentences
        assert answer == (DOCUMENT.index("1889"), DOCUMENT.index("1889") + 4)
    sentences, answer = reader_training_sentences(triple, random.Random(0), 3, abstain_share=0.999)
    assert answer is None and gold not in sentences and len(sentences) == 3
    assert reader_training_sentences(_triple(kind="ri", target="x"), random.Random(0)) == ([], None)


def test_the_collator_labels_the_answer_tokens(minilm_path):
    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    triples = [_triple(), _triple("Paris"), _triple("tall")]
    batch = SpanReaderCollator(tokenizer, 64, max_sentences=3, abstain_share=0.0)(triples)
    for row, triple in enumerate(triples):
        first, last = int(batch["start_positions"][row]), int(batch["end_positions"][row])
        assert tokenizer.decode(batch["reader_input_ids"][row, first : last + 1]) == triple.target.lower()
    assert batch["reader_candidates"][:, 0].all()
    again = SpanReaderCollator(tokenizer, 64, max_sentences=3, abstain_share=0.0)(triples)
    assert all(torch.equal(batch[k], again[k]) for k in batch)  # the same batch on a resumed run


def test_config_checks_the_span_reader_fields():
    with pytest.raises(ValueError, match="needs a span reader"):
        GeARConfig(evidence_from="span_reader")
    with pytest.raises(ValueError, match="span_reader_layers must lie"):
        GeARConfig(span_reader_layers=13)
    with pytest.raises(ValueError, match="span_reader_sentences"):
        GeARConfig(span_reader_layers=1, span_reader_sentences=0)
    with pytest.raises(ValueError, match="evidence_from"):
        GeARConfig(evidence_from="oracle")
    with pytest.raises(ValueError, match="span_reader_min_support"):
        GeARConfig(span_reader_layers=1, span_reader_min_support=1.5)
    for shared in (-1, 12):  # 12 layers in all: 12 shared leave none for the reader's own one
        with pytest.raises(ValueError, match="span_reader_shared_layers"):
            GeARConfig(span_reader_layers=1, span_reader_shared_layers=shared)
    assert GeARConfig(span_reader_layers=4).shared_span_reader_layers == 8  # as deep as the towers, by default
    assert GeARConfig(span_reader_layers=4, span_reader_shared_layers=2).shared_span_reader_layers == 2


def test_the_reader_starts_from_the_encoders_top_layers_and_survives_saving(tiny_encoder_dir, tmp_path):
    model = tiny_gear(tiny_encoder_dir, span_reader_layers=1, evidence_from="span_reader")
    top = model.query_encoder.encoder.layer[-1].state_dict()
    assert all(torch.equal(v, top[k]) for k, v in model.span_reader.layers[0].state_dict().items())
    model.save_pretrained(tmp_path / "m")
    loaded = GeARModel.from_pretrained(tmp_path / "m")
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # int8 (gear export): the reader's matrices are stored quantised and come back close
    assert main(["export", str(tmp_path / "m"), str(tmp_path / "q"), "--dtype", "int8"]) == 0
    int8 = GeARModel.from_pretrained(tmp_path / "q")
    assert int8.config.span_reader_layers == 1 and int8.config.evidence_from == "span_reader"
    for name, value in int8.span_reader.state_dict().items():
        assert torch.allclose(value, model.span_reader.state_dict()[name], atol=0.02), name
    # a folder saved without a reader, float or int8, gets one (as from_encoder starts it) when an override asks
    plain = tiny_gear(tiny_encoder_dir)
    plain.save_pretrained(tmp_path / "plain")
    assert main(["export", str(tmp_path / "plain"), str(tmp_path / "plain-int8"), "--dtype", "int8"]) == 0
    for folder in ("plain", "plain-int8"):
        added = GeARModel.from_pretrained(tmp_path / folder, span_reader_layers=1)
        top = added.query_encoder.encoder.layer[-1].state_dict()
        assert all(torch.equal(v, top[k]) for k, v in added.span_reader.layers[0].state_dict().items())


def test_a_shallower_reader_shares_fewer_layers_and_a_new_shape_starts_afresh(tiny_encoder_dir, tmp_path):
    """span_reader_shared_layers: the reader runs that many of the towers' layers, then its own (started as the
    layers that follow them); loading a folder with an override of another shape starts the reader afresh."""
    deep = tiny_gear(tiny_encoder_dir, span_reader_layers=1, evidence_from="span_reader")
    layers = deep.config.num_encoder_layers
    assert layers >= 2 and deep.config.shared_span_reader_layers == layers - 1
    shallow = tiny_gear(
        tiny_encoder_dir, span_reader_layers=1, span_reader_shared_layers=0, evidence_from="span_reader"
    )
    first = shallow.query_encoder.encoder.layer[0].state_dict()
    assert all(torch.equal(v, first[k]) for k, v in shallow.span_reader.layers[0].state_dict().items())
    calls = []
    for layer in shallow.query_encoder.encoder.layer:
        layer.register_forward_hook(lambda *_: calls.append(1))
    (evidence,) = shallow.read_spans_batch(["when?"], [DOCUMENT], [split_sentences(DOCUMENT)[:1]], min_support=0.0)
    assert calls == [] and evidence.grounded  # no tower layer ran: embeddings, then the reader's own layer
    deep.save_pretrained(tmp_path / "deep")
    assert main(["export", str(tmp_path / "deep"), str(tmp_path / "deep-int8"), "--dtype", "int8"]) == 0
    for folder in ("deep", "deep-int8"):
        restarted = GeARModel.from_pretrained(tmp_path / folder, span_reader_shared_layers=0)
        first = restarted.query_encoder.encoder.layer[0].state_dict()
        assert all(torch.equal(v, first[k]) for k, v in restarted.span_reader.layers[0].state_dict().items())
        kept = GeARModel.from_pretrained(tmp_path / folder)  # the saved shape: the trained reader, not restarted
        for name, value in kept.span_reader.state_dict().items():
            assert torch.allclose(value, deep.span_reader.state_dict()[name], atol=0.02), name


def test_span_reader_evidence_cites_the_document(tiny_encoder_dir):
    model = tiny_gear(tiny_encoder_dir, span_reader_layers=1, evidence_from="span_reader").eval()
    documents = [DOCUMENT, "", "One sentence only about Jupiter."]
    queries = ["when was the tower finished?", "anything?", "which planet?"]
    ranked, evidence = model.rank_and_generate_batch(queries, documents, top_n=2, min_support=0.0)
    assert [len(r) for r in ranked] == [2, 0, 1]
    assert ranked == model.rank_sentences_batch(queries, documents, top_n=2)  # the same ranking pass
    for document, e in zip(documents, evidence, strict=True):
        if document:  # never abstaining, every answer is a span of its document
            assert document[e.start_char : e.end_char] == e.text and e.text and e.grounded and 0 < e.support <= 1
    assert evidence[1] == GroundedEvidence("", None, None, 0.0, False)
    # below min_support the reader abstains: no evidence rather than a wrong one, with the support it had
    _, unsure = model.rank_and_generate_batch(queries, documents, min_support=1.0)
    assert [(e.text, e.start_char, e.grounded) for e in unsure] == [("", None, False)] * 3
    assert unsure[0].support == pytest.approx(evidence[0].support)
    # None: the config's span_reader_min_support
    model.config.span_reader_min_support = 0.0
    assert model.rank_and_generate_batch(queries, documents)[1] == evidence
    # the reader reads only the sentences it is given: a span of the first-ranked one here
    best = ranked[0][0]
    (only,) = model.read_spans_batch([queries[0]], [DOCUMENT], [[best]], min_support=0.0)
    assert best.start_char <= only.start_char < only.end_char <= best.end_char and only.grounded
    assert model.generate_batch(queries[:1], documents[:1]) == [evidence[0].text]
    assert model.rank_and_generate_batch(queries[:1], documents[:1], max_new_tokens=0)[1][0].text == ""
    with pytest.raises(ValueError, match="evidence_from"):
        model.rank_and_generate_batch(queries, documents, evidence_from="oracle")
    with pytest.raises(ValueError, match="no span reader"):
        tiny_gear(tiny_encoder_dir).read_spans_batch(queries[:1], documents[:1], [[best]])


def test_the_span_reader_stage_trains_the_reader_alone(tiny_encoder_dir, tiny_squad):
    L.seed_everything(0)
    module = GeARLightningModule(
        tiny_encoder_dir,
        config_overrides=dict(TINY_OVERRIDES) | {"span_reader_layers": 1, "evidence_from": "span_reader"},
        learning_rate=1e-3,
        warmup_steps=1,
        stage="span_reader",
        validate_generation=True,
    )
    data = GeARDataModule(*tiny_squad, validation_articles=1, batch_size=4, num_workers=0)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    trainer = L.Trainer(fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.fit(module, data)
    assert math.isfinite(float(trainer.callback_metrics["train/span_loss"]))
    assert "val/squad/answer_f1" in trainer.callback_metrics
    changed = {k for k, v in module.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("span_reader.") for k in changed)
    with pytest.raises(ValueError, match="needs a span reader"):
        GeARLightningModule(tiny_encoder_dir, config_overrides=dict(TINY_OVERRIDES), stage="span_reader")


def _reader_kl(model, teacher, batch) -> float:
    inputs = (batch["reader_input_ids"], batch["reader_attention_mask"], batch["reader_token_type_ids"])
    with torch.no_grad():
        return float(
            span_distillation_loss(
                *model.span_logits(*inputs), *teacher.span_logits(*inputs), batch["reader_candidates"]
            )
        )


def test_the_span_reader_stage_learns_from_a_teacher(tiny_encoder_dir, tiny_squad, tmp_path):
    teacher = tiny_gear(tiny_encoder_dir, span_reader_layers=2, evidence_from="span_reader")
    with torch.no_grad():  # a sure teacher: a random tiny reader's distributions are near uniform
        teacher.span_reader.span_head.weight.mul_(40.0)
    teacher.save_pretrained(tmp_path / "teacher")
    student = dict(TINY_OVERRIDES) | {"span_reader_layers": 1, "span_reader_shared_layers": 0}
    L.seed_everything(0)
    module = GeARLightningModule(
        tiny_encoder_dir,
        config_overrides=student,
        learning_rate=1e-3,
        warmup_steps=1,
        stage="span_reader",
        reader_teacher=str(tmp_path / "teacher"),
        distillation_weight=1.0,
        reader_start="teacher",
    )
    # a cut of the teacher: its first layer and its head
    for mine, theirs in (
        (module.model.span_reader.layers[0], teacher.span_reader.layers[0]),
        (module.model.span_reader.span_head, teacher.span_reader.span_head),
    ):
        assert all(torch.equal(v, theirs.state_dict()[k]) for k, v in mine.state_dict().items())
    start = {k: v.clone() for k, v in module.model.state_dict().items()}
    taught = {k: v.clone() for k, v in module.reader_teacher.state_dict().items()}
    data = GeARDataModule(*tiny_squad, validation_articles=1, batch_size=4, num_workers=0)
    trainer = L.Trainer(
        max_steps=12,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        limit_val_batches=0,
    )
    trainer.fit(module, data)
    assert math.isfinite(float(trainer.callback_metrics["train/distillation_loss"]))
    # the teacher neither learns nor enters the module's state (checkpoints, optimizer)
    assert all(torch.equal(v, taught[k]) for k, v in module.reader_teacher.state_dict().items())
    assert not any("teacher" in k for k in module.state_dict())
    # the student moved toward the teacher on a batch of the run's own data
    batch = next(iter(data.train_dataloader()))
    before = tiny_gear(tiny_encoder_dir, **student).eval()
    before.load_state_dict(start)
    learned, started = (
        _reader_kl(module.model.eval(), module.reader_teacher, batch),
        _reader_kl(before, module.reader_teacher, batch),
    )
    assert learned < started / 2
    with pytest.raises(ValueError, match="needs a reader_teacher"):
        GeARLightningModule(tiny_encoder_dir, config_overrides=student, stage="span_reader", reader_start="teacher")
    with pytest.raises(ValueError, match="teaches the span_reader stage"):
        GeARLightningModule(tiny_encoder_dir, config_overrides=student, reader_teacher=str(tmp_path / "teacher"))
    with pytest.raises(ValueError, match="shared layers"):
        GeARLightningModule(
            tiny_encoder_dir,
            config_overrides=dict(TINY_OVERRIDES) | {"span_reader_layers": 1},  # 1 shared layer, the teacher's 0
            stage="span_reader",
            reader_teacher=str(tmp_path / "teacher"),
            reader_start="teacher",
        )
    tiny_gear(tiny_encoder_dir).save_pretrained(tmp_path / "no-reader")
    with pytest.raises(ValueError, match="no span reader"):
        GeARLightningModule(
            tiny_encoder_dir, config_overrides=student, stage="span_reader", reader_teacher=str(tmp_path / "no-reader")
        )
