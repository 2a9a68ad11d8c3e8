"""Relevant-information synthesis: filters, keyword rewriting, relevance filter, resumable driver, CLI."""

from __future__ import annotations

import argparse
import gzip
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SHARED_DATA
from llama_index.core.llms import CompletionResponse, CustomLLM, LLMMetadata, MockLLM
from pydantic import Field

from gear_core.cli import synthesize as synthesize_command
from gear_core.data.sources import wiki_vital_documents
from gear_core.data.squad import SquadParagraph
from gear_core.data.synthesis import (
    PRONOUNS,
    REWRITE_PROMPT,
    SynthesisConfig,
    candidate_sentences,
    content_words,
    dedupe_keywords,
    document_in_range,
    document_triples,
    done_path_for,
    english_stopwords,
    filter_by_similarity,
    is_candidate_sentence,
    offline_keywords,
    parse_keywords,
    reorder_keywords,
    rewrite_query,
    sample_sentences,
    squad_documents,
    starts_with_pronoun,
    synthesize,
)
from gear_core.data.triples import read_triples_jsonl
from gear_core.text import Sentence

EIFFEL = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. "
    "It is named after the engineer Gustave Eiffel, whose company designed and built the tower. "
    "Construction of the tower began in 1887 and finished in time for the World's Fair of 1889. "
    "Locals criticised the design of the tower at first, but it became a global cultural icon of France. "
    "The tower is 330 metres tall, about the same height as an 81-storey building."
)


def make_document(topic: str, sentences: int = 4) -> str:
    """A document of ``sentences`` candidate sentences (10 words each) about ``topic``."""
    facts = ["river", "castle", "museum", "harbour", "festival", "bridge"]
    return " ".join(
        f"The {topic} {facts[i]} was first recorded by travelling monks in {1200 + i * 37}." for i in range(sentences)
    )


class FixedLLM(CustomLLM):
    """A LlamaIndex LLM that answers every prompt with the same text and records the prompts."""

    answer: str = "Query: eiffel tower, 1889, completed"
    prompts: list[str] = Field(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata()

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self.prompts.append(prompt)
        return CompletionResponse(text=self.answer)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any):
        yield self.complete(prompt)


class FakeEncoder:
    """Chosen vectors: a query mentioning ``match`` points along the documents, any other query is orthogonal."""

    def __init__(self, match: str = "", fail_on_call: int | None = None) -> None:
        self.match = match
        self.fail_on_call = fail_on_call
        self.calls: list[tuple[str, int]] = []

    def _record(self, kind: str, texts: list[str]) -> None:
        self.calls.append((kind, len(texts)))
        if self.fail_on_call is not None and len(self.calls) >= self.fail_on_call:
            raise KeyboardInterrupt("simulated interruption")

    def encode_queries(self, queries: list[str]) -> np.ndarray:
        self._record("queries", queries)
        return np.array([[3.0, 4.0] if self.match in q else [4.0, -3.0] for q in queries], dtype=np.float32)

    def encode_documents(self, documents: list[str]) -> np.ndarray:
        self._record("documents", documents)
        return np.array([[3.0, 4.0]] * len(documents), dtype=np.float32)


# ---- filters and sampling -------------------------------------------------------------------------------


def test_document_token_range():
    config = SynthesisConfig(min_document_tokens=5, max_document_tokens=10)
    assert not document_in_range("one two three four", config)
    assert document_in_range("one two three four five", config)
    assert document_in_range(" ".join(["w"] * 10), config)
    assert not document_in_range(" ".join(["w"] * 11), config)
    assert document_in_range(EIFFEL, SynthesisConfig())  # the defaults admit a wiki-summary-sized document


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("He was born in Paris.", True),
        ("it rained.", True),
        ("“They came back,” she said.", True),
        ("It's a tower.", True),
        ("Those (he said) were fine.", True),
        ("Hence the name.", False),
        ("Theatre is an art.", False),
        ("Itself-less words.", True),
        ("The tower is tall.", False),
        ("", False),
    ],
)
def test_starts_with_pronoun(text, expected):
    assert starts_with_pronoun(text) is expected


def test_sentence_filter_length_and_pronoun():
    config = SynthesisConfig()
    assert "he" in PRONOUNS and "this" in PRONOUNS
    assert not is_candidate_sentence("Too short to count here.", config)  # 5 tokens
    assert is_candidate_sentence("The tower was finished in time for the fair.", config)  # 9 tokens
    assert not is_candidate_sentence("It was finished in time for the big fair.", config)  # pronoun start
    assert not is_candidate_sentence(" ".join(["word"] * 21), config)
    assert is_candidate_sentence(" ".join(["word"] * 20), config)
    short = SynthesisConfig(min_sentence_tokens=2, max_sentence_tokens=6)
    assert is_candidate_sentence("Too short to count here.", short)


def test_candidate_sentences_keep_exact_spans():
    candidates = candidate_sentences(EIFFEL, SynthesisConfig())
    texts = [c.text for c in candidates]
    assert not any(t.startswith("It ") for t in texts)  # the pronoun sentence is out
    assert len(candidates) == 4
    for sentence in candidates:
        assert EIFFEL[sentence.start_char : sentence.end_char] == sentence.text


def test_min_candidates_and_sampling():
    candidates = [Sentence(f"s{i}", i * 10, i * 10 + 5) for i in range(6)]
    config = SynthesisConfig(min_candidates=3, sentences_per_document=3)
    assert sample_sentences(candidates[:2], config, random.Random(0)) == []
    sampled = sample_sentences(candidates, config, random.Random(0))
    assert len(sampled) == 3 and len(set(sampled)) == 3
    assert sampled == sorted(sampled, key=lambda s: s.start_char)  # document order
    assert sampled == sample_sentences(candidates, config, random.Random(0))  # seeded: deterministic
    draws = {tuple(s.text for s in sample_sentences(candidates, config, random.Random(seed))) for seed in range(20)}
    assert len(draws) > 1  # ...and actually random across seeds
    few = SynthesisConfig(min_candidates=1, sentences_per_document=3)
    assert sample_sentences(candidates[:2], few, random.Random(0)) == candidates[:2]


def test_document_filters_in_document_triples():
    config = SynthesisConfig()
    triples = document_triples("d", "Too short.", config)
    assert triples == []
    two = "The tower was finished in time for the fair. The tower was painted brown in the year 1889."
    assert document_triples("d", two, SynthesisConfig(min_document_tokens=5)) == []  # two candidates < 3
    assert len(document_triples("d", EIFFEL, config)) == 3
    assert document_triples("d", EIFFEL, config) == document_triples("d", EIFFEL, config)  # seeded per document


# ---- keywords ---------------------------------------------------------------------------------------------


def test_dedupe_and_reorder():
    keywords = ["Tower", "paris", "tower", "1889", "Paris", "eiffel  tower", "Eiffel Tower"]
    assert dedupe_keywords(keywords) == ["Tower", "paris", "1889", "eiffel  tower"]
    unique = dedupe_keywords(keywords)
    first = reorder_keywords(unique, random.Random(7))
    assert first == reorder_keywords(unique, random.Random(7))
    assert Counter(first) == Counter(unique)
    assert unique == ["Tower", "paris", "1889", "eiffel  tower"]  # the input is not shuffled in place
    assert len({tuple(reorder_keywords(unique, random.Random(seed))) for seed in range(20)}) > 1


def test_offline_rewriter():
    sentence = "Construction of the tower began in 1887 and finished in time for the World's Fair of 1889."
    stop = english_stopwords()
    assert {"the", "of", "and", "in", "for"} <= stop
    words = content_words(sentence)
    assert words == ["construction", "tower", "began", "1887", "finished", "time", "world", "fair", "1889"]
    keywords = offline_keywords(sentence, random.Random(0), drop_rate=0.0)
    assert Counter(keywords) == Counter(words)
    dropped = offline_keywords(sentence, random.Random(0), drop_rate=0.5)
    assert 2 <= len(dropped) < len(words) and set(dropped) <= set(words)
    assert len(offline_keywords(sentence, random.Random(0), drop_rate=1.0)) == 2  # never below two
    assert offline_keywords(sentence, random.Random(3)) == offline_keywords(sentence, random.Random(3))
    query = rewrite_query(sentence, random.Random(0))
    assert query is not None and not set(query.split()) & stop and len(query.split()) >= 2
    assert rewrite_query("It is what it was and will be.", random.Random(0)) is None  # all stopwords


# ---- LLM rewriting --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Query: eiffel tower, 1889, completed", ["eiffel tower", "1889", "completed"]),
        ('"eiffel tower 1889 completed"', ["eiffel", "tower", "1889", "completed"]),
        ("Sure! Here are the keywords:\n1. Eiffel Tower\n2. 1889\n3. completed", ["Eiffel Tower", "1889", "completed"]),
        ("**Keywords:** eiffel tower; 1889; World's Fair.", ["eiffel tower", "1889", "World's Fair"]),
        ("Search query: 'paris landmark'\n", ["paris", "landmark"]),
        ("- eiffel\n- tower\n", ["eiffel", "tower"]),
        ("", []),
    ],
)
def test_parse_keywords(answer, expected):
    assert parse_keywords(answer) == expected


def test_llm_rewrite_with_custom_llm():
    llm = FixedLLM()
    sentence = "The tower was completed in 1889 for the World's Fair."
    query = rewrite_query(sentence, random.Random(0), SynthesisConfig(), llm=llm)
    assert query is not None
    assert Counter(query.replace("eiffel tower", "eiffel_tower").split()) == Counter(
        ["eiffel_tower", "1889", "completed"]
    )
    assert len(llm.prompts) == 1 and sentence in llm.prompts[0]
    assert llm.prompts[0] == REWRITE_PROMPT.format(sentence=sentence)
    assert "Keywords:" in REWRITE_PROMPT and "verbatim" in REWRITE_PROMPT


def test_llm_rewrite_rejects_echo_copy_and_ramble():
    sentence = "The tower was completed in 1889 for the World's Fair."
    config = SynthesisConfig()
    assert rewrite_query(sentence, random.Random(0), config, llm=MockLLM()) is None  # MockLLM echoes the prompt
    assert rewrite_query(sentence, random.Random(0), config, llm=FixedLLM(answer=sentence)) is None  # a copy
    ramble = FixedLLM(answer=" ".join(f"word{i}" for i in range(config.max_llm_query_words + 1)))
    assert rewrite_query(sentence, random.Random(0), config, llm=ramble) is None
    assert rewrite_query(sentence, random.Random(0), config, llm=FixedLLM(answer="Query: tower")) is None  # 1 word


# ---- relevance filter -----------------------------------------------------------------------------------


def test_similarity_filter_with_fake_encoder():
    triples = document_triples("d", EIFFEL, SynthesisConfig(keyword_drop_rate=0.0))
    assert len(triples) == 3
    encoder = FakeEncoder(match="1889")
    kept, scores = filter_by_similarity(triples, encoder, min_similarity=0.5)
    expected = [1.0 if "1889" in t.query else 0.0 for t in triples]
    np.testing.assert_allclose(scores, expected, atol=1e-6)  # cosine of the unnormalised vectors
    assert kept == [t for t in triples if "1889" in t.query] and len(kept) == 1
    assert encoder.calls == [("queries", 3), ("documents", 1)]  # one batch each; the document encoded once
    assert filter_by_similarity(triples, encoder, min_similarity=-1.0)[0] == list(triples)


def test_synthesize_applies_filter_and_records_it(tmp_path):
    documents = [("a", EIFFEL), ("b", make_document("Oslo"))]
    config = SynthesisConfig(keyword_drop_rate=0.0)
    stats = synthesize(documents, tmp_path / "f.jsonl", config, encoder=FakeEncoder(match="tower"), show_progress=False)
    written = list(read_triples_jsonl(tmp_path / "f.jsonl"))
    assert stats.similarity_filter and stats.below_similarity == stats.queries_generated - len(written)
    assert written and all("tower" in t.query for t in written)
    unfiltered = synthesize(documents, tmp_path / "u.jsonl", config, encoder=None, show_progress=False)
    assert not unfiltered.similarity_filter and unfiltered.triples_written == 6 and unfiltered.below_similarity == 0


# ---- triples and the resumable driver --------------------------------------------------------------------


def test_triples_slice_the_document_exactly(tmp_path):
    document = "  Ünïcödé  first words stand here  .  " + make_document("Kraków") + "\n\n" + make_document("Zürich", 2)
    triples = document_triples("doc", document, SynthesisConfig(min_candidates=1, sentences_per_document=6))
    assert len(triples) == 6
    for triple in triples:
        ((start, end),) = triple.gold_spans
        assert document[start:end] == triple.target
        assert triple.kind == "ri" and triple.document == document and triple.document_id == "doc"
    write_path = tmp_path / "t.jsonl"
    synthesize([("doc", document)], write_path, SynthesisConfig(min_candidates=1, sentences_per_document=6))
    assert list(read_triples_jsonl(write_path)) == triples  # JSON round trip keeps spans and text


def four_documents() -> list[tuple[str, str]]:
    return [(f"doc{i}", make_document(topic)) for i, topic in enumerate(["Lyon", "Porto", "Graz", "Bergen"])]


def test_resume_after_limit(tmp_path):
    config = SynthesisConfig(chunk_size=1)
    reference = tmp_path / "reference.jsonl"
    synthesize(four_documents(), reference, config, show_progress=False)

    out = tmp_path / "out.jsonl"
    first = synthesize(four_documents(), out, config, show_progress=False, limit=2)
    assert first.documents_used == 2 and first.triples_written == 6
    second = synthesize(four_documents(), out, config, show_progress=False)
    assert second.documents_already_done == 2 and second.documents_used == 2
    third = synthesize(four_documents(), out, config, show_progress=False)
    assert third.documents_already_done == 4 and third.triples_written == 0

    assert out.read_text() == reference.read_text()  # per-document seeding: resumed == uninterrupted
    done = [json.loads(line) for line in done_path_for(out).read_text().splitlines()]
    assert sorted(done) == ["doc0", "doc1", "doc2", "doc3"]
    assert Counter(t.document_id for t in read_triples_jsonl(out)) == dict.fromkeys(done, 3)


def test_resume_after_interruption(tmp_path):
    config = SynthesisConfig(chunk_size=1, min_similarity=0.5)
    documents = [*four_documents(), ("short", "Too short to use.")]
    reference = tmp_path / "reference.jsonl"
    synthesize(documents, reference, config, encoder=FakeEncoder(), show_progress=False)

    out = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):  # the encoder dies during the second document's commit
        synthesize(documents, out, config, encoder=FakeEncoder(fail_on_call=4), show_progress=False)
    assert [t.document_id for t in read_triples_jsonl(out)] == ["doc0"] * 3
    stats = synthesize(documents, out, config, encoder=FakeEncoder(), show_progress=False)
    assert stats.documents_already_done == 1 and stats.documents_rejected_length == 1
    assert out.read_text() == reference.read_text()
    done = done_path_for(out).read_text().splitlines()
    assert len(done) == len(set(done)) == 5  # the document without triples is recorded too


def test_resume_repairs_a_torn_commit(tmp_path):
    config = SynthesisConfig()
    out = tmp_path / "out.jsonl"
    synthesize(four_documents()[:2], out, config, show_progress=False)
    clean = out.read_text()
    # A crash after writing doc2's triples but before committing its id, in the middle of a line.
    doc2 = document_triples("doc2", four_documents()[2][1], config)
    with out.open("a") as handle:
        handle.write(doc2[0].to_json() + "\n" + doc2[1].to_json()[:25])
    with done_path_for(out).open("a") as handle:
        handle.write('"doc')  # ...and a torn id line
    stats = synthesize(four_documents(), out, config, show_progress=False)
    assert stats.documents_already_done == 2 and stats.documents_used == 2
    assert out.read_text().startswith(clean)
    counts = Counter(t.document_id for t in read_triples_jsonl(out))
    assert counts == {"doc0": 3, "doc1": 3, "doc2": 3, "doc3": 3}
    assert sorted(json.loads(line) for line in done_path_for(out).read_text().splitlines()) == [
        "doc0",
        "doc1",
        "doc2",
        "doc3",
    ]


def test_resume_without_done_file_adopts_the_output(tmp_path):
    out = tmp_path / "out.jsonl"
    synthesize(four_documents()[:2], out, show_progress=False)
    done_path_for(out).unlink()
    stats = synthesize(four_documents(), out, show_progress=False)
    assert stats.documents_already_done == 2 and stats.documents_used == 2
    assert Counter(t.document_id for t in read_triples_jsonl(out)) == dict.fromkeys(["doc0", "doc1", "doc2", "doc3"], 3)
    stats = synthesize(four_documents(), out, show_progress=False)  # the adopted ids stay committed
    assert stats.documents_already_done == 4


def test_synthesize_rejects_gzip_output(tmp_path):
    with pytest.raises(ValueError, match="plain"):
        synthesize([], tmp_path / "out.jsonl.gz")


# ---- document sources and the CLI ---------------------------------------------------------------------------


def write_wiki(path: Path, records: list[dict[str, str]]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


def test_document_sources(tmp_path):
    wiki = write_wiki(
        tmp_path / "wiki.jsonl.gz",
        [
            {"title": "New York City", "text": "a"},
            {"title": "Super Bowl 50", "text": "b"},
            {"title": "super bowl 50", "text": "c"},
        ],
    )
    assert list(wiki_vital_documents(wiki, exclude_titles=["Super_Bowl_50"])) == [
        ("wiki:New York City", "a"),
        ("wiki:super bowl 50", "c"),  # case-sensitive
    ]
    paragraphs = [SquadParagraph("Normans", 0, "ctx0"), SquadParagraph("Normans", 1, "ctx1")]
    assert list(squad_documents(paragraphs)) == [("Normans#0", "ctx0"), ("Normans#1", "ctx1")]


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="gear")
    synthesize_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["synthesize", *argv])
    return args.handler(args)


@pytest.fixture
def cli_inputs(tmp_path) -> dict[str, str]:
    wiki = write_wiki(
        tmp_path / "wiki.jsonl.gz",
        [
            {"title": "Lyon", "text": make_document("Lyon")},
            {"title": "Red_Mars", "text": make_document("Mars")},  # a test article: must be excluded
            {"title": "Porto", "text": make_document("Porto")},
        ],
    )
    squad = tmp_path / "squad.json"
    articles = [
        {"title": "Graz", "paragraphs": [{"context": make_document("Graz"), "qas": []}]},
        {"title": "Red_Mars", "paragraphs": [{"context": make_document("Mars"), "qas": []}]},
    ]
    squad.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["Graz"], "test": ["Red Mars"]}), encoding="utf-8")
    return {"wiki": str(wiki), "squad": str(squad), "split": str(split), "out": str(tmp_path / "ri.jsonl")}


def test_cli_end_to_end(cli_inputs, capsys):
    argv = ["--wiki", cli_inputs["wiki"], "--out", cli_inputs["out"], "--no-filter", "--no-progress", "--seed", "1"]
    assert run_cli([*argv, "--squad", cli_inputs["squad"], "--split", cli_inputs["split"]]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["documents_seen"] == 3 and stats["triples_written"] == 9 and not stats["similarity_filter"]
    triples = list(read_triples_jsonl(cli_inputs["out"]))
    assert Counter(t.document_id for t in triples) == {"Graz#0": 3, "wiki:Lyon": 3, "wiki:Porto": 3}
    assert all(t.kind == "ri" for t in triples)

    assert run_cli([*argv, "--squad", cli_inputs["squad"], "--split", cli_inputs["split"]]) == 0  # resumed: no-op
    assert json.loads(capsys.readouterr().out)["documents_already_done"] == 3
    assert len(list(read_triples_jsonl(cli_inputs["out"]))) == 9


def test_cli_mock_llm_and_usage_errors(cli_inputs, capsys):
    out = cli_inputs["out"]
    assert run_cli(["--wiki", cli_inputs["wiki"], "--out", out, "--no-filter", "--no-progress", "--llm", "mock"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["rewriter"] == "EchoLLM" and stats["documents_seen"] == 3  # no split: nothing is excluded
    assert stats["rewrite_failed"] == stats["sentences_sampled"] == 9 and stats["triples_written"] == 0
    assert run_cli(["--wiki", cli_inputs["wiki"], "--out", out]) == 2  # neither --encoder nor --no-filter
    assert run_cli(["--squad", cli_inputs["squad"], "--out", out, "--no-filter"]) == 2  # --squad without --split
    assert run_cli(["--out", out, "--no-filter"]) == 2
    assert run_cli(["--wiki", cli_inputs["wiki"] + ".missing", "--out", out, "--no-filter"]) == 2
    assert "gear synthesize:" in capsys.readouterr().err


def test_cli_with_a_real_encoder(cli_inputs, tiny_encoder_dir, tmp_path, capsys):
    argv = ["--wiki", cli_inputs["wiki"], "--no-progress", "--limit", "1"]
    out = str(tmp_path / "plain.jsonl")
    assert run_cli([*argv, "--out", out, "--encoder", tiny_encoder_dir, "--min-similarity", "-1"]) == 0
    assert json.loads(capsys.readouterr().out)["triples_written"] == 3
    strict = ["--out", str(tmp_path / "strict.jsonl"), "--encoder", tiny_encoder_dir, "--min-similarity", "1.01"]
    assert run_cli([*argv, *strict]) == 0
    assert json.loads(capsys.readouterr().out)["below_similarity"] == 3


@pytest.mark.skipif(not (SHARED_DATA / "wiki-vital").is_dir(), reason="wiki-vital data not found under ../shared/data")
def test_real_wiki_vital_summaries(tmp_path):
    split = json.loads((SHARED_DATA / "squad" / "split.json").read_text()) if (SHARED_DATA / "squad").is_dir() else {}
    path = SHARED_DATA / "wiki-vital" / "summaries_en.jsonl.gz"
    test_titles = {t.replace("_", " ") for t in split.get("test", [])}
    first = list(wiki_vital_documents(path, exclude_titles=split.get("test", ())))
    assert not test_titles & {document_id.removeprefix("wiki:") for document_id, _ in first}
    stats = synthesize(first[:40], tmp_path / "wiki.jsonl", show_progress=False)
    assert stats.documents_used > 0 and stats.triples_written == stats.queries_generated
    for triple in read_triples_jsonl(tmp_path / "wiki.jsonl"):
        ((start, end),) = triple.gold_spans
        assert triple.document[start:end] == triple.target


# ---- wiki-extract articles (gear_core.data.sources.wiki_extract_documents) ------------------------------------


@pytest.fixture
def wiki_extract_inputs(tmp_path, cli_inputs) -> dict[str, str]:
    """Three WikiExtractor-style articles (paragraph lines, a section title line); Red_Mars is a test article."""

    def article(topic: str) -> str:
        paragraphs = [make_document(topic), make_document(topic + "ia"), "History.", make_document(topic + "ville")]
        return "\n".join(paragraphs)

    path = write_wiki(
        tmp_path / "articles.jsonl.gz",
        [
            {"id": "1", "title": "Lyon", "text": article("Lyon")},
            {"id": "2", "title": "Red Mars", "text": article("Mars")},  # SQuAD spells it Red_Mars: still excluded
            {"id": "3", "title": "Porto", "text": article("Porto")},
        ],
    )
    return {**cli_inputs, "wiki_extract": str(path), "out": str(tmp_path / "wx.jsonl")}


def test_cli_wiki_extract(wiki_extract_inputs, capsys):
    from gear_core.data.sources import wiki_extract_documents

    inputs = wiki_extract_inputs
    argv = ["--wiki-extract", inputs["wiki_extract"], "--split", inputs["split"], "--out", inputs["out"]]
    argv += ["--no-filter", "--no-progress", "--max-document-words", "60"]
    assert run_cli([*argv, "--limit", "2"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["documents_seen"] == 2 and first["triples_written"] == 6
    assert run_cli(argv) == 0  # resumed: only the documents the limited run did not reach
    second = json.loads(capsys.readouterr().out)
    assert second["documents_already_done"] == 2 and second["documents_seen"] == 4

    expected = list(wiki_extract_documents(inputs["wiki_extract"], max_words=60, exclude_titles=["Red_Mars"]))
    assert [d for d, _ in expected] == ["wx:Lyon#0", "wx:Lyon#1", "wx:Porto#0", "wx:Porto#1"]
    texts = dict(expected)
    triples = list(read_triples_jsonl(inputs["out"]))
    assert Counter(t.document_id for t in triples) == dict.fromkeys(texts, 3)  # no Mars: the test article
    for triple in triples:
        ((start, end),) = triple.gold_spans
        assert triple.document == texts[triple.document_id] and triple.document[start:end] == triple.target
        assert triple.kind == "ri" and "History." not in triple.target
    done = {json.loads(line) for line in done_path_for(inputs["out"]).read_text().splitlines()}
    assert done == set(texts)

    assert run_cli(argv) == 0  # a third run: nothing left
    assert json.loads(capsys.readouterr().out)["documents_already_done"] == 4


def test_cli_wiki_extract_usage_errors(wiki_extract_inputs, capsys):
    inputs = wiki_extract_inputs
    base = ["--out", inputs["out"], "--no-filter", "--no-progress"]
    assert run_cli(["--wiki-extract", inputs["wiki_extract"], *base]) == 2  # no --split
    assert "needs --split" in capsys.readouterr().err
    missing = ["--wiki-extract", inputs["wiki_extract"] + ".missing", "--split", inputs["split"], *base]
    assert run_cli(missing) == 2
    no_test = Path(inputs["out"]).with_name("split-no-test.json")
    no_test.write_text(json.dumps({"train": ["Graz"]}), encoding="utf-8")
    assert run_cli(["--wiki-extract", inputs["wiki_extract"], "--split", str(no_test), *base]) == 2
    good = ["--wiki-extract", inputs["wiki_extract"], "--split", inputs["split"], *base]
    assert run_cli([*good, "--max-document-words", "0"]) == 2
    assert run_cli([*good, "--encoder-max-length", "4"]) == 2
    assert not Path(inputs["out"]).exists()


def test_default_chunks_pass_the_document_filter():
    parser = argparse.ArgumentParser(prog="gear")
    synthesize_command.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["synthesize", "--out", "x.jsonl"])
    config = SynthesisConfig()
    assert args.max_document_words == 380 <= config.max_document_tokens and args.encoder_max_length is None
    chunk = " ".join(["word"] * args.max_document_words)
    assert document_in_range(chunk, config)


def test_encoder_max_length_truncates_document_embeddings(tiny_encoder_dir, wiki_extract_inputs, capsys):
    from gear_core.data.synthesis import load_encoder

    default = load_encoder(tiny_encoder_dir)
    short = load_encoder(tiny_encoder_dir, max_document_length=12)
    assert short.config.max_document_length == 12 < default.config.max_document_length
    assert load_encoder(tiny_encoder_dir, 10_000).config.max_document_length == default.config.max_document_length
    long_text = make_document("Lyon", 6)
    head = short.tokenizer.convert_tokens_to_string(short.tokenizer.tokenize(long_text)[:10])  # 10 + [CLS] [SEP]
    np.testing.assert_allclose(short.encode_documents([long_text]), short.encode_documents([head]), atol=1e-5)
    assert not np.allclose(default.encode_documents([long_text]), short.encode_documents([long_text]), atol=1e-3)
    np.testing.assert_allclose(short.encode_queries([long_text]), default.encode_queries([long_text]), atol=1e-6)

    inputs = wiki_extract_inputs
    argv = ["--wiki-extract", inputs["wiki_extract"], "--split", inputs["split"], "--out", inputs["out"]]
    argv += ["--encoder", tiny_encoder_dir, "--encoder-max-length", "16", "--min-similarity", "-1", "--no-progress"]
    assert run_cli(argv) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["similarity_filter"] and stats["triples_written"] == 6 and stats["documents_seen"] == 2
