"""Data sources: the data root, NQ-QED and wiki-extract readers, held-out slices, long-document triples."""

import gzip
import json
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from gear_core.data.sources import (
    DATA_ROOT_ENV,
    NQ_QED,
    SQUAD_SPLIT,
    SQUAD_TRAIN,
    data_path,
    data_root,
    held_out,
    long_document_triples,
    read_nq_qed,
    title_of,
    triples_from_nq,
    wiki_extract_documents,
)
from gear_core.data.squad import read_squad
from gear_core.training import GeARDataModule


def _gz_jsonl(path, records):
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


def test_the_data_root_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
    assert data_root() == tmp_path
    assert data_path("squad/split.json") == tmp_path / "squad" / "split.json"
    assert data_path(str(tmp_path / "x.json")) == tmp_path / "x.json"  # absolute paths are kept
    monkeypatch.delenv(DATA_ROOT_ENV)
    assert str(data_root()) == "../shared/data"
    # From another folder (a notebook's), the shared data beside the checkout, when there is one.
    monkeypatch.chdir(tmp_path)
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    assert data_root() == (beside if beside.is_dir() else Path("../shared/data"))


def test_held_out_is_a_stable_fraction():
    keys = [f"key-{i}" for i in range(4000)]
    chosen = [k for k in keys if held_out(k, 0.1, seed=0)]
    assert 300 < len(chosen) < 500
    assert chosen == [k for k in keys if held_out(k, 0.1, seed=0)]  # the same every time
    assert chosen != [k for k in keys if held_out(k, 0.1, seed=1)]
    assert not any(held_out(k, 0.0) for k in keys) and all(held_out(k, 1.0) for k in keys)
    with pytest.raises(ValueError):
        held_out("k", 1.5)


def test_nq_examples_become_triples_with_gold_sentences(tmp_path):
    passage = "The tower was built in 1889. It is in Paris. Gustave Eiffel designed it."
    path = _gz_jsonl(
        tmp_path / "nq.jsonl.gz",
        [
            {
                "example_id": 1,
                "title_text": "Eiffel Tower",
                "question_text": "who designed the eiffel tower",
                "paragraph_text": passage,
                "answer_spans": [[passage.index("Gustave"), passage.index("Gustave") + 14]],
                "answer_text": ["Gustave Eiffel"],
                "sentence_starts": [0, 29, 45],
            },
            {  # no answer span: no triple
                "example_id": 2,
                "title_text": "Eiffel Tower",
                "question_text": "x",
                "paragraph_text": passage,
                "answer_spans": [],
                "answer_text": [],
            },
        ],
    )
    examples = read_nq_qed(path)
    assert [e.id for e in examples] == ["1", "2"]
    (triple,) = triples_from_nq(examples)
    ((start, end),) = triple.gold_spans
    assert passage[start:end] == "Gustave Eiffel designed it."
    assert triple.target == "Gustave Eiffel" and title_of(triple.document_id) == "Eiffel Tower"
    with pytest.raises(FileNotFoundError, match=DATA_ROOT_ENV):
        read_nq_qed(tmp_path / "missing.jsonl.gz")


def test_wiki_extract_articles_are_packed_into_chunks(tmp_path):
    body = "\n".join(
        ["Jarred Shaw is a basketball player from the United States of America. " * 3, "Professional career."]
        + [f"In season {i} Shaw played for a club in a league and scored many points. " * 2 for i in range(6)]
    )
    path = _gz_jsonl(
        tmp_path / "articles.jsonl.gz",
        [
            {"id": "1", "title": "Jarred Shaw", "text": body},
            {"id": "2", "title": "Mars", "text": "Mars is red and has two small moons."},
        ],
    )
    chunks = list(wiki_extract_documents(path, max_words=80, min_words=10, exclude_titles=["Excluded"]))
    assert [c[0] for c in chunks][:2] == ["wx:Jarred Shaw#0", "wx:Jarred Shaw#1"]
    assert all(len(text.split()) <= 80 + 30 for _, text in chunks)
    assert not any(text.endswith("Professional career.") for _, text in chunks)  # never ends on a heading
    assert "Mars" not in {title_of(i) for i, _ in chunks}  # too short
    assert list(wiki_extract_documents(path, exclude_titles=["Jarred_Shaw"], min_words=1)) == [
        ("wx:Mars#0", "Mars is red and has two small moons.")
    ]


def test_title_of_every_id_form():
    assert title_of("Super_Bowl_50#3") == "Super Bowl 50"
    assert title_of("wiki:Super_Bowl_50") == "Super Bowl 50"
    assert title_of("wx:Jarred Shaw#2@140") == "Jarred Shaw"
    assert title_of("nq:Wild card (sports)#abc") == "Wild card (sports)"


def test_long_document_triples_shift_gold_spans_into_the_article(tiny_squad):
    squad, _ = tiny_squad
    paragraphs = read_squad(squad, ["Paris"])
    triples = long_document_triples(paragraphs)
    assert len(triples) == sum(len(p.questions) for p in paragraphs)
    article = triples[0].document
    assert all(t.document == article and t.document_id == "article:Paris" for t in triples)
    for paragraph in paragraphs:
        assert paragraph.context in article
    for triple in triples:
        ((start, end),) = triple.gold_spans
        assert triple.target in article[start:end]


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "nq-qed").is_dir(), reason="../shared/data/nq-qed not found")
def test_every_source_trains_and_validates_without_overlap(monkeypatch):
    monkeypatch.setenv(DATA_ROOT_ENV, str(SHARED_DATA))
    data = GeARDataModule(
        squad_path="squad/dev-v1.1.json.gz",
        split_path=SQUAD_SPLIT,
        squad_train_path=SQUAD_TRAIN,
        nq_path=NQ_QED,
        validation_articles=8,
        validation_max_questions=200,
        long_document_questions=50,
    )
    data.setup("fit")
    names = [v.name for v in data.validation_sets]
    assert names == ["squad", "long", "nq"]
    assert data.source_counts["squad_train"] > 70_000 and data.source_counts["squad_dev"] > 8_000
    assert data.source_counts["nq"] > 6_000
    held_titles = {title_of(t.document_id) for t in data.validation_sets[0].triples}
    train_titles = {title_of(t.document_id) for t in data.train_triples}
    assert held_titles and not held_titles & train_titles
    nq_validation = {t.query for t in data.validation_sets[2].triples}
    assert nq_validation and not nq_validation & {t.query for t in data.train_triples}
    long = data.validation_sets[1].triples
    assert all(len(t.document) > 5_000 for t in long)  # whole articles
    assert all(t.document[s:e] for t in long for s, e in t.gold_spans)
