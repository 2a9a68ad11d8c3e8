"""Evaluation: examples and gold sets, baselines, the ablation's one-pass scoring, `evaluate` and `gear eval`."""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import stub_evidence

from gear_core import GeARConfig, GeARModel
from gear_core.cli import main
from gear_core.data import read_squad
from gear_core.data.sources import VALIDATION_FRACTION, held_out
from gear_core.data.triples import gold_sentence_indices
from gear_core.evaluation import baselines
from gear_core.evaluation.attention import TokenWeight
from gear_core.evaluation.benchmark import EvaluationSettings, evaluate, generation_metrics
from gear_core.evaluation.metrics import ranking_from_scores, retrieval_metrics
from gear_core.evaluation.ranking import all_scorings, gear_rankings, scoring_ablation
from gear_core.evaluation.tasks import QuestionExample, question_examples
from gear_core.evidence import ground_evidence
from gear_core.scoring import SentenceScoring, WindowScores
from gear_core.text import split_sentences


def test_gold_sentences_hold_an_answer_start():
    text = "Paris is big.  It is in France. The Seine flows."
    sentences = split_sentences(text)
    assert gold_sentence_indices(sentences, [text.index("France")]) == {1}
    assert gold_sentence_indices(sentences, [0, text.index("Seine")]) == {0, 2}
    assert gold_sentence_indices(sentences, [text.index("  ") + 1]) == {1}  # in the gap: the next sentence
    assert gold_sentence_indices(sentences, [len(text) + 5]) == frozenset()


def test_question_examples_from_squad(tiny_squad):
    squad, _ = tiny_squad
    examples = question_examples(read_squad(squad))
    assert len(examples) == 16
    for example in examples:
        (gold,) = example.gold_sentences
        assert any(a in example.sentences[gold].text for a in example.answers)
        assert example.paragraph_id.split("#")[0] in {"Paris", "Jupiter", "Hamlet", "Water"}
    sample = question_examples(read_squad(squad), max_questions=5, seed=1)
    assert len(sample) == 5 and sample == question_examples(read_squad(squad), max_questions=5, seed=1)


def test_bm25_ranks_the_lexical_match_first(tiny_squad):
    squad, _ = tiny_squad
    examples = question_examples(read_squad(squad, ["Water"]))
    rankings = baselines.bm25_sentence_rankings(examples)
    for example, ranking in zip(examples, rankings, strict=True):
        assert sorted(ranking) == list(range(len(example.sentences)))
    # "what about water boils at?" shares "boils" with one sentence only
    boils = next(e for e, r in zip(examples, rankings, strict=True) if "boils" in e.question)
    assert "boils" in boils.sentences[rankings[examples.index(boils)][0]].text
    paragraphs = read_squad(squad)
    top = baselines.bm25_search(
        ["Shakespeare wrote which tragedy"], [p.id for p in paragraphs], [p.context for p in paragraphs], 3
    )
    # Only the Hamlet paragraphs share a term with the question: the others are not found (BM25 scores them 0).
    assert top[0] and all(id_.startswith("Hamlet#") for id_ in top[0])


def test_bm25_with_a_stopword_only_query_keeps_document_order(tiny_squad):
    squad, _ = tiny_squad
    example = question_examples(read_squad(squad, ["Paris"]))[0]
    from dataclasses import replace

    assert baselines.bm25_sentence_rankings([replace(example, question="what is the")]) == [[0, 1, 2]]


def test_dense_baseline_is_minilm_and_ranks_by_cosine(minilm_path, tiny_squad):
    squad, _ = tiny_squad
    encoder = baselines.dense_encoder(minilm_path)
    examples = question_examples(read_squad(squad, ["Paris"]))
    rankings = baselines.dense_sentence_rankings(encoder, examples)
    assert retrieval_metrics(rankings, [e.gold_sentences for e in examples])["R@1"] >= 0.75
    paragraphs = read_squad(squad)
    top = baselines.dense_search(
        encoder, ["which planet is the largest"], [p.id for p in paragraphs], [p.context for p in paragraphs], 2
    )
    assert top[0][0].startswith("Jupiter#")


def test_all_scorings_cover_every_choice(tiny_model):
    scorings = all_scorings(tiny_model)
    assert len(scorings) == len(tiny_model.config.cross_attention_layer_indices) * 2 * 4 * 3
    assert tiny_model.config.sentence_scoring in scorings


def test_ablation_pass_agrees_with_serving_ranking(tiny_model, tiny_squad):
    squad, _ = tiny_squad
    examples = question_examples(read_squad(squad))
    results = scoring_ablation(tiny_model, examples, batch_size=3, chunk_size=5)
    served = retrieval_metrics(gear_rankings(tiny_model, examples), [e.gold_sentences for e in examples])
    assert results[tiny_model.config.sentence_scoring] == pytest.approx(served)
    ranked = tiny_model.rank_sentences_batch([e.question for e in examples], [e.context for e in examples])
    for example, ranking, sentences in zip(examples, gear_rankings(tiny_model, examples), ranked, strict=True):
        assert [example.sentences[i].text for i in ranking] == [s.text for s in sentences]


def test_fusion_refuses_attention_from_a_layer_without_cross_attention(tiny_encoder_dir):
    model = GeARModel.from_encoder(tiny_encoder_dir, cross_attention_layers=[1], ranking_layer=1, decoder_num_layers=1)
    with pytest.raises(ValueError, match="no cross-attention"):
        model.sentence_scores_batch(["q"], ["One. Two."], [SentenceScoring(0)])


def test_window_scores_map_back_to_every_sentence_of_a_long_document(tiny_model, monkeypatch):
    """Every token scores 1 and sentences are shorter than the window overlap, so with sum pooling each
    sentence's score must be exactly its own token count: windows map back to the whole document's sentences."""
    document = " ".join(f"Topic {i} ends." for i in range(60))
    assert len(tiny_model.tokenizer(document)["input_ids"]) > 3 * tiny_model.config.max_document_length

    def ones(query_ids, query_mask, document_ids, document_mask, scorings):
        batch = document_mask.shape[0]
        return WindowScores(
            [document_mask.float() for _ in scorings], [torch.zeros(batch) for _ in scorings], torch.zeros(batch, 32)
        )

    monkeypatch.setattr(tiny_model, "document_token_scores", ones)
    sentences, (scores,) = tiny_model.sentence_scores_batch(
        ["q"], [document], [SentenceScoring(1, window_weighting="none")]
    )
    lengths = [len(tiny_model.tokenizer(s.text, add_special_tokens=False)["input_ids"]) for s in sentences[0]]
    assert len(lengths) == 60 and np.array_equal(scores[0], lengths)


@pytest.fixture
def eval_data(tiny_squad, tmp_path):
    squad, _ = tiny_squad
    split = tmp_path / "eval-split.json"
    split.write_text(json.dumps({"train": ["Paris", "Jupiter", "Hamlet"], "test": ["Water"]}), encoding="utf-8")
    wiki = tmp_path / "wiki.jsonl.gz"
    with gzip.open(wiki, "wt", encoding="utf-8") as handle:
        for title, text in [("Ice", "Ice is frozen water."), ("Steam", "Steam is water vapour at 100 degrees.")]:
            handle.write(json.dumps({"title": title, "text": text}) + "\n")
    return squad, str(split), str(wiki)


@pytest.fixture
def nq_file(tmp_path):
    """NQ-QED lines whose ids fall in and out of training's held-out 5%: two held-out questions, one passage each."""
    held = [i for i in range(400) if held_out(str(i), VALIDATION_FRACTION)][:2]
    kept = next(i for i in range(400) if not held_out(str(i), VALIDATION_FRACTION))
    passages = ["The Nile is the longest river. It flows north.", "Everest is the highest mountain. It is in Nepal."]
    lines = [
        {
            "example_id": example_id,
            "title_text": title,
            "question_text": question,
            "paragraph_text": passage,
            "answer_spans": [[passage.index(answer), passage.index(answer) + len(answer)]],
            "answer_text": [answer],
        }
        for example_id, title, question, passage, answer in [
            (held[0], "Nile", "what is the longest river", passages[0], "The Nile"),
            (held[1], "Everest", "what is the highest mountain", passages[1], "Everest"),
            (kept, "Nile", "where does the nile flow", passages[0], "north"),  # a training question: not asked
        ]
    ]
    path = tmp_path / "qed.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(line) + "\n" for line in lines)
    return str(path)


def test_evaluate_runs_every_table_with_baselines(tiny_model, tiny_encoder_dir, eval_data, nq_file):
    squad, split, wiki = eval_data
    settings = EvaluationSettings(
        squad,
        split,
        wiki,
        nq_path=nq_file,
        baseline_encoder=tiny_encoder_dir,
        cost_pairs=2,
        cost_repeats=1,
        show_progress=False,
    )
    report = evaluate(tiny_model, settings, model_name="tiny")
    assert report.counts == {
        "articles": 1,
        "paragraphs": 2,
        "questions": 4,
        "questions_nq": 2,
        "corpus_squad": 8,
        "corpus_squad+wiki": 10,
        "corpus_nq": 2,
        "corpus_nq+wiki": 4,
        "long_questions": 4,
        "long_sentences": 6,
    }
    assert list(report.global_retrieval) == ["squad", "squad+wiki", "nq", "nq+wiki"]
    for systems in report.global_retrieval.values():
        assert list(systems) == ["BM25", Path(tiny_encoder_dir).name, "GeAR", "GeAR + BM25 (hybrid)"]
        for metrics in systems.values():
            assert list(metrics) == ["R@1", "R@5", "MAP@5", "R@20"] and all(0 <= v <= 1 for v in metrics.values())
            assert metrics["R@20"] == 1.0  # 20 of 8 or 10 documents: every gold paragraph is found
    local = report.local_retrieval
    assert local["random (expected)"]["R@1"] == pytest.approx(1 / 3)  # 3 sentences, 1 gold each
    assert local["random (expected)"]["R@3"] == 1.0
    assert "BM25 (sentences)" in local and "GeAR (cross-attention)" in local and "first sentence" in local
    long = report.long_document_retrieval  # the article's two paragraphs as one document of 6 sentences
    assert long["random (expected)"]["R@1"] == pytest.approx(1 / 6)
    assert list(long) == list(local)
    assert set(report.generation["GeAR (decoder)"]) == {
        "EM",
        "F1",
        "grounded %",
        "grounded on the gold sentence %",
        "in the gold sentence %",
        "answers in the gold sentence %",
        "abstained %",
    }
    assert report.cost["bi-encoder: encode query + paragraph"]["ratio (single)"] == 1.0
    markdown = report.to_markdown()
    for heading in ("Global retrieval", "Local retrieval", "Long documents", "Generation", "Cost", "paper (bert-base"):
        assert heading in markdown
    assert json.loads(report.to_json())["counts"]["questions"] == 4


def test_evaluate_refuses_missing_data_and_unknown_tasks(tmp_path, eval_data):
    squad, split, _ = eval_data
    with pytest.raises(FileNotFoundError, match="not found"):
        EvaluationSettings(str(tmp_path / "nope.json"), split)
    with pytest.raises(ValueError, match="unknown tasks"):
        EvaluationSettings(squad, split, None, tasks=("global", "speed"))


def test_gear_eval_command_writes_markdown_and_json(tiny_model, tiny_encoder_dir, eval_data, tmp_path, capsys):
    squad, split, _ = eval_data
    tiny_model.save_pretrained(tmp_path / "model")
    out, figures = tmp_path / "eval.md", tmp_path / "eval.json"
    argv = ["eval", str(tmp_path / "model"), "--squad", squad, "--split-file", split, "--no-wiki", "--no-nq"]
    argv += ["--baseline", tiny_encoder_dir, "--tasks", "local,generation", "--quiet", "--out", str(out)]
    assert main([*argv, "--json", str(figures)]) == 0
    assert "Local retrieval" in capsys.readouterr().out
    assert "Global retrieval" not in out.read_text() and "Generation" in out.read_text()
    assert json.loads(figures.read_text())["local_retrieval"]["first sentence"]["R@3"] == 1.0
    assert main(["eval", str(tmp_path / "model"), "--squad", str(tmp_path / "missing.json")]) == 2
    capsys.readouterr()
    assert (
        main(["eval", str(tmp_path / "nothing"), "--squad", squad, "--split-file", split, "--no-wiki", "--no-nq"]) == 2
    )
    assert "no GeAR model at" in capsys.readouterr().err


def test_content_query_pooling_ignores_special_tokens():
    from gear_core.scoring import pool_attention

    # one head, query tokens [CLS] w1 [SEP]; document of 2 tokens
    attention = torch.tensor([[[[1.0, 0.0], [0.2, 0.8], [1.0, 0.0]]]])
    mask = torch.tensor([[1, 1, 1]])
    content = torch.tensor([[False, True, False]])
    assert torch.allclose(pool_attention(attention, mask, "mean", "content", content), torch.tensor([[0.2, 0.8]]))
    assert torch.allclose(pool_attention(attention, mask, "mean", "mean"), torch.tensor([[2.2 / 3, 0.8 / 3]]))
    with pytest.raises(ValueError, match="content"):
        pool_attention(attention, mask, "mean", "content")
    assert ranking_from_scores([0.2, 0.8]) == [1, 0]


def test_combine_windows_keeps_the_best_window_or_weighs_windows_first():
    from gear_core.scoring import WindowSentenceScores, combine_windows

    # Window 0 holds sentences 0-1, window 1 sentences 1-2: as dense rows [1.0, 0.2, nan] and [nan, 0.5, 0.5].
    windows = [WindowSentenceScores(0, np.array([1.0, 0.2])), WindowSentenceScores(1, np.array([0.5, 0.5]))]
    assert np.allclose(combine_windows(windows, 3), [1.0, 0.5, 0.5])
    # weights softmax([0, ln 3]) = (0.25, 0.75): [0.25, max(0.05, 0.375), 0.375]
    assert np.allclose(combine_windows(windows, 3, [0.0, np.log(3.0)]), [0.25, 0.375, 0.375])
    assert np.isnan(combine_windows([WindowSentenceScores(1, np.array([1.0]))], 2)[0])
    assert np.isnan(combine_windows([WindowSentenceScores(0, np.array([np.nan, 1.0]))], 3)).tolist() == [
        True,
        False,
        True,
    ]


def test_a_window_scores_only_its_own_sentences_and_as_the_whole_document_would():
    """The window's sentences found by offsets give the scores a lookup over every sentence gives."""
    from gear_core.config import GeARConfig
    from gear_core.scoring import pool_sentences, window_sentence_scores
    from gear_core.text import split_sentences, token_sentence_index

    document = " ".join(f"Sentence number {i} is here." for i in range(40))
    sentences = split_sentences(document)
    # A window over characters 300-420 (a [CLS]-like token first, a gap token, then word-sized tokens).
    starts = [0, *range(300, 420, 6)]
    offsets = np.array([[0, 0]] + [[s, s + 5] for s in starts[1:]])
    special = np.array([True] + [False] * (len(offsets) - 1))
    scores = np.random.default_rng(0).random(len(offsets))
    scoring = GeARConfig().sentence_scoring
    window = window_sentence_scores(scores, offsets, special, sentences, scoring)
    dense_index = token_sentence_index(offsets[:, 0], offsets[:, 1], sentences)
    dense_index[special] = -1
    dense = pool_sentences(scores, dense_index, len(sentences), scoring.sentence_pooling)
    held = np.flatnonzero(~np.isnan(dense))
    assert window.first == held[0] and window.first + len(window.scores) == held[-1] + 1
    assert np.array_equal(window.scores, dense[window.first : window.first + len(window.scores)], equal_nan=True)


def test_mix_lexical_hand_case():
    from gear_core.scoring import mix_lexical

    # attention [0.6, 0.2, NaN] -> [0.75, 0.25, 0]; BM25 [0, ln 3, 0] at T=1 -> softmax [0.2, 0.6, 0.2]
    mixed = mix_lexical(np.array([0.6, 0.2, np.nan]), np.array([0.0, np.log(3.0), 0.0]), 0.5, 1.0)
    assert np.allclose(mixed, [0.475, 0.425, 0.1]) and mixed.sum() == pytest.approx(1.0)
    # at T=0.5 the lexical part sharpens: softmax [0, 2 ln 3, 0] = [1/11, 9/11, 1/11]
    assert np.allclose(
        mix_lexical(np.array([0.6, 0.2, 0.0]), np.array([0.0, np.log(3.0), 0.0]), 1.0, 0.5), [1 / 11, 9 / 11, 1 / 11]
    )
    # no lexical match (all 0): a uniform lexical part keeps the attention order
    flat = mix_lexical(np.array([0.1, 0.3, 0.2]), np.zeros(3), 0.9, 1.0)
    assert list(np.argsort(-flat)) == [1, 2, 0]
    assert np.allclose(mix_lexical(np.array([0.1, 0.3]), np.array([5.0, 0.0]), 0.0, 1.0), [0.25, 0.75])
    assert mix_lexical(np.array([]), np.array([]), 0.5, 1.0).shape == (0,)
    with pytest.raises(ValueError, match="weight"):
        mix_lexical(np.array([1.0]), np.array([1.0]), 1.5, 1.0)


def test_bm25_sentence_scores_hand_case():
    from gear_core.scoring import bm25_sentence_scores

    sentences = ["Water boils at 100 degrees.", "Ice is frozen water.", "Steam rises."]
    scores = bm25_sentence_scores("At what temperature does water boil?", sentences)
    assert scores.argmax() == 0 and scores[2] == 0.0 and scores[1] > 0  # "boil" is stemmed; "water" in two
    assert np.all(bm25_sentence_scores("what is the", sentences) == 0)  # stop words only
    assert bm25_sentence_scores("water", []).shape == (0,)
    assert np.all(bm25_sentence_scores("water", ["It is.", "The 😀."]) == 0)  # no term to index: no BM25 error


def test_lexical_weight_mixes_bm25_into_the_ranking(tiny_model):
    """Weight 0 is cross-attention alone; weight 1 is BM25's order; in between, one distribution per document."""
    configured = tiny_model.config.sentence_scoring
    assert configured.lexical_weight == 0.0
    scorings = [dataclasses.replace(configured, lexical_weight=w) for w in (0.0, 0.5, 1.0)]
    documents = [
        "Paris is in France. The Seine flows through it. Bread is sold on every street.",
        " ".join(f"Topic {i} is about the number {i}." for i in range(40)) + " Zebras graze on the savanna.",
    ]
    queries = ["where do zebras graze", "where do zebras graze"]
    sentences, (alone, half, lexical) = tiny_model.sentence_scores_batch(queries, documents, scorings)
    _, (reference,) = tiny_model.sentence_scores_batch(queries, documents)
    for p in range(2):
        assert np.allclose(alone[p], reference[p], equal_nan=True)
        assert half[p].sum() == pytest.approx(1.0) and lexical[p].sum() == pytest.approx(1.0)
        bm25 = baselines.bm25_sentence_rankings(
            [QuestionExample(queries[p], queries[p], (), "d", documents[p], tuple(sentences[p]), frozenset())]
        )[0]
        assert ranking_from_scores(lexical[p].tolist()) == bm25
    assert "Zebras" in sentences[1][int(np.argmax(lexical[1]))].text
    _, (odd,) = tiny_model.sentence_scores_batch(["is it"], ["It is. Is it? The 😀."], scorings[1:2])
    assert odd[0].sum() == pytest.approx(1.0)  # stop words and symbols alone: the attention decides
    settings = tiny_model.config.to_dict()
    mixed = GeARConfig(**{**settings, "ranking_lexical_weight": 0.5, "ranking_lexical_temperature": 2.0})
    assert mixed.sentence_scoring == dataclasses.replace(configured, lexical_weight=0.5, lexical_temperature=2.0)
    for bad in ({"ranking_lexical_weight": 1.5}, {"ranking_lexical_weight": -0.1}, {"ranking_lexical_temperature": 0}):
        with pytest.raises(ValueError, match="ranking_lexical"):
            GeARConfig(**{**settings, **bad})


def test_window_weighting_changes_only_documents_longer_than_a_window(tiny_model):
    configured = tiny_model.config.sentence_scoring
    scorings = [dataclasses.replace(configured, window_weighting=w) for w in ("none", "attention", "retrieval")]
    long_document = " ".join(f"Topic {i} is about the number {i}." for i in range(40))
    _, scores = tiny_model.sentence_scores_batch(
        ["where is paris", "number 30"], ["Paris is in France. The Seine flows through it.", long_document], scorings
    )
    none, attention, retrieval = scores
    assert np.allclose(none[0], attention[0]) and np.allclose(none[0], retrieval[0])  # one window: unchanged
    assert not np.allclose(none[1], attention[1]) and not np.allclose(none[1], retrieval[1])
    # Weighted windows form one distribution over the document: sum pooling of softmax weights <= 1 per window.
    assert np.nansum(attention[1]) < np.nansum(none[1])
    with pytest.raises(ValueError, match="ranking_window_weighting"):
        GeARModel.from_encoder(tiny_model.config.encoder_name_or_path, ranking_window_weighting="best")


def test_attention_window_weighting_follows_the_window_the_query_attends_to(tiny_model, monkeypatch):
    """Every window scores its tokens alike, but the window holding sentence 50 has the largest attention
    mass: with ``attention`` weighting its sentences rank first; without, the windows tie."""
    document = " ".join(f"Topic {i} ends." for i in range(60))
    target = document.index("Topic 50")

    def fake(query_ids, query_mask, document_ids, document_mask, scorings):
        batch = document_mask.shape[0]
        texts = [tiny_model.tokenizer.decode(ids, skip_special_tokens=True) for ids in document_ids]
        log_mass = torch.tensor([5.0 if "topic 50 ends" in t else 0.0 for t in texts])
        return WindowScores(
            [document_mask.float() / document_mask.sum(1, keepdim=True) for _ in scorings],
            [log_mass for _ in scorings],
            torch.zeros(batch, tiny_model.config.hidden_size),
        )

    monkeypatch.setattr(tiny_model, "document_token_scores", fake)
    scoring = dataclasses.replace(tiny_model.config.sentence_scoring, window_weighting="attention")
    sentences, (scores,) = tiny_model.sentence_scores_batch(["q"], [document], [scoring])
    starts = [s.start_char for s in sentences[0]]
    at_target, far_away = scores[0][starts.index(target)], scores[0][starts.index(document.index("Topic 5 "))]
    assert at_target == pytest.approx(np.nanmax(scores[0]))
    assert far_away < 0.01 * at_target


def test_generation_metrics_hand_case():
    """A stub decoder with known outputs: EM, F1 and grounding computed by hand."""
    context = "Paris is the capital of France. The Eiffel Tower was finished in 1889."
    sentences = tuple(split_sentences(context))

    def example(question, answer):
        start = context.index(answer)
        gold = gold_sentence_indices(sentences, [start])
        return QuestionExample(question, question, (answer,), "p", context, sentences, gold)

    examples = [example("capital?", "Paris"), example("finished?", "1889"), example("tower?", "Eiffel Tower")]

    class Stub:
        def generate_evidence_batch(self, queries, documents, batch_size=16):
            # exact; wrong but grounded on the other sentence; half right ("the" is dropped): F1 2*1/(2+1)
            texts = ["Paris", "France", "the Tower"][: len(queries)]
            return [ground_evidence(t, d) for t, d in zip(texts, documents, strict=True)]

    metrics, outputs = generation_metrics(Stub(), examples)
    assert outputs == ["Paris", "France", "the Tower"]
    assert metrics["EM"] == pytest.approx(100 / 3)
    assert metrics["F1"] == pytest.approx(100 * (1 + 0 + 2 / 3) / 3)
    assert metrics["grounded %"] == pytest.approx(100.0)  # each output is a word of the context
    # "France" stands in sentence 0, but the question's gold is sentence 1: grounded, not on the gold sentence.
    assert metrics["grounded on the gold sentence %"] == pytest.approx(100 * 2 / 3)


def test_evaluate_reports_hand_computed_metrics_of_a_stubbed_model(
    tiny_model, tiny_encoder_dir, eval_data, monkeypatch
):
    """The model's outputs are fixed, so every GeAR figure is known. The test article "Water" has 2 paragraphs
    (rotations of "Water boils at 100 degrees. Water freezes at 0 degrees. Ice floats on water.") with one
    question on each of the first two sentences; every answer is "degrees"."""
    from gear_core import split_sentences

    def boils_first(queries, documents, scorings=None, batch_size=16):
        sentences = [split_sentences(d) for d in documents]
        scores = [np.array([1.0 if "boils" in s.text else 0.0 for s in row]) for row in sentences]
        return sentences, [scores for _ in (scorings or [None])]

    outputs = ["100 degrees", "zero", "degrees", "0 degrees"]  # questions in file order
    monkeypatch.setattr(tiny_model, "sentence_scores_batch", boils_first)
    stub_evidence(monkeypatch, tiny_model, lambda queries, documents, **_: outputs[: len(queries)])
    squad, split, _ = eval_data
    settings = EvaluationSettings(
        squad, split, None, tasks=("local", "generation"), baseline_encoder=tiny_encoder_dir, show_progress=False
    )
    report = evaluate(tiny_model, settings, model_name="stub")
    # The "boils" sentence is the gold one of 2 of the 4 questions; the gold one is always among 3 sentences.
    assert report.local_retrieval["GeAR (cross-attention)"]["R@1"] == 0.5
    assert report.local_retrieval["GeAR (cross-attention)"]["R@3"] == 1.0
    generation = report.generation["GeAR (decoder)"]
    assert generation["EM"] == pytest.approx(25.0)  # only "degrees" is exact
    assert generation["F1"] == pytest.approx(100 * (2 / 3 + 0 + 1 + 2 / 3) / 4)  # "100 degrees": P 1/2, R 1
    assert generation["grounded %"] == pytest.approx(75.0)  # "zero" is nowhere in the text
    # "100 degrees" lies in its gold sentence; "degrees" (third question, gold: boils) grounds to the first
    # "degrees" of the rotated paragraph, in the "freezes" sentence; "0 degrees" lies in its gold sentence.
    assert generation["grounded on the gold sentence %"] == pytest.approx(50.0)


def test_evaluate_reports_free_decoding_beside_a_models_decoding_rules(
    tiny_model, tiny_encoder_dir, eval_data, monkeypatch
):
    """A model whose config sets decoding rules (generation_spans_only) is also scored decoding freely, in the
    same run, so the table shows what the rules buy."""
    calls = []

    def stub(queries, documents, **options):
        calls.append(options)
        return ["degrees" if options.get("spans_only") is False else "zero"] * len(queries)

    stub_evidence(monkeypatch, tiny_model, stub)
    squad, split, _ = eval_data
    settings = EvaluationSettings(
        squad, split, None, tasks=("generation",), baseline_encoder=tiny_encoder_dir, show_progress=False
    )
    assert list(evaluate(tiny_model, settings, model_name="stub").generation) == ["GeAR (decoder)"]
    monkeypatch.setattr(tiny_model.config, "generation_spans_only", True)
    report = evaluate(tiny_model, settings, model_name="stub")
    assert report.generation["GeAR (decoder)"]["EM"] == 0.0  # "zero"
    assert report.generation["GeAR (decoder, free decoding)"]["EM"] == 100.0  # "degrees", every answer
    assert calls[-1] == {
        "batch_size": settings.batch_size,
        "evidence_from": "decoder",
        "spans_only": False,
        "span_sentences": 0,
        "query_penalty": 0.0,
    }


def test_one_rule_for_unscored_sentences_in_serving_and_evaluation(tiny_model, monkeypatch):
    """A sentence no window scored (NaN) scores 0 and ranks after the scored ones, in serving and evaluation."""
    from gear_core.evaluation.ranking import gear_rankings
    from gear_core.evaluation.tasks import QuestionExample
    from gear_core.scoring import fill_unscored

    assert fill_unscored(np.array([np.nan, 0.5, 0.0])).tolist() == [0.0, 0.5, 0.0]
    document = "First one. Second one. Third one."
    sentences = split_sentences(document)
    monkeypatch.setattr(
        tiny_model,
        "sentence_scores_batch",
        lambda queries, documents, scorings=None, batch_size=16: (
            [sentences],
            [[np.array([np.nan, 0.2, 0.0])] for _ in (scorings or [None])],
        ),
    )
    served = tiny_model.rank_sentences("q", document, top_n=None)
    assert [(s.text, s.score) for s in served] == [("Second one.", 0.2), ("First one.", 0.0), ("Third one.", 0.0)]
    example = QuestionExample("q", "q", (), "p", document, tuple(sentences), frozenset({0}))
    assert gear_rankings(tiny_model, [example]) == [[1, 0, 2]]


def test_token_attention_is_the_weight_sentence_ranking_reads(tiny_model):
    """Figure 3's weights: summed over a sentence's tokens they give the sentence's score (sum pooling, one window)."""
    from gear_core.evaluation.attention import attention_html, layer_scorings, token_attention

    document = "Paris is the capital of France. The Seine flows through Paris."
    tokens = token_attention(tiny_model, "which river", document)
    assert all(document[t.start_char : t.end_char] == t.text for t in tokens) and 0 < sum(t.weight for t in tokens) <= 1
    ranked = {s.start_char: s for s in tiny_model.rank_sentences("which river", document, top_n=None)}
    for start, sentence in ranked.items():
        inside = sum(t.weight for t in tokens if start <= t.start_char < sentence.end_char)
        assert inside == pytest.approx(sentence.score, rel=1e-4)
    assert [s.layer for s in layer_scorings(tiny_model)] == tiny_model.config.cross_attention_layer_indices
    with pytest.raises(ValueError, match="no cross-attention"):
        token_attention(tiny_model, "q", document, layer=99)
    page = attention_html("a <b> & c", [TokenWeight("<b>", 2, 5, 0.5), TokenWeight("c", 8, 9, 0.25)], top_k=1)
    assert (
        "<b>&lt;b&gt;</b>" in page
        and "&amp;" in page
        and 'title="0.2500"' in page
        and "rgba(255, 170, 0, 0.500)" in page
    )


def test_validation_benchmarks_pick_sets_and_say_when_synthetic_triples_are_missing(monkeypatch):
    """``--sets`` picks validation sets; asking for ``synthetic`` without its triples is a one-line error, not a
    traceback from deep inside the data module (a fresh clone has no ``runs/data``)."""
    import importlib.util
    import sys

    root = Path(__file__).resolve().parents[1]
    monkeypatch.syspath_prepend(str(root / "benchmarks"))
    spec = importlib.util.spec_from_file_location("validation_sources", root / "benchmarks" / "validation_sources.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "validation_sources", module)
    spec.loader.exec_module(module)
    parser = module.validation_parser("test")
    assert parser.parse_args([]).sets == ["squad", "long", "nq", "synthetic"]
    assert parser.parse_args(["--sets", "nq", "squad"]).sets == ["nq", "squad"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--sets", "trivia"])
    args = parser.parse_args(["--sets", "synthetic", "--triples", "no/such/triples.jsonl"])
    with pytest.raises(SystemExit, match=r"no synthetic triples at no/such/triples\.jsonl.*--sets squad long nq"):
        module.sets_from_args(args)
    asked = {}

    def fake_examples(questions, long_questions, triples_paths):
        asked["triples"] = triples_paths
        return {"squad": ["s"], "long": ["l"], "nq": ["n"]}

    monkeypatch.setattr(module, "validation_examples", fake_examples)
    assert module.sets_from_args(parser.parse_args(["--sets", "nq", "squad"])) == {"nq": ["n"], "squad": ["s"]}
    assert asked["triples"] == []  # the synthetic triples are not read when that set is not asked for
