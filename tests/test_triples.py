"""Training triples: gold sentences from answer spans, the three readers, the JSONL round trip, bad input."""

import gzip
import json

import pytest

from gear_core.data import (
    QAExample,
    SquadParagraph,
    Triple,
    read_paq_jsonl,
    read_squad,
    read_triples_jsonl,
    triples_from_hf_squad,
    triples_from_squad,
    write_triples_jsonl,
)

CONTEXT = "Paris is in France. The tower was finished in 1889. It is 330 metres tall."


def test_gold_unit_is_the_sentence_holding_each_answer_start():
    paragraph = SquadParagraph(
        "Eiffel Tower",
        0,
        CONTEXT,
        (
            QAExample("q1", "When was it finished?", ("1889", "in 1889"), (46, 43)),
            QAExample("q2", "Where and how tall?", ("France", "330 metres"), (12, 58)),
        ),
    )
    first, second = triples_from_squad([paragraph])
    assert first.target == "1889" and first.kind == "qa" and first.document_id == "Eiffel Tower#0"
    assert [CONTEXT[s:e] for s, e in first.gold_spans] == ["The tower was finished in 1889."]
    assert [CONTEXT[s:e] for s, e in second.gold_spans] == ["Paris is in France.", "It is 330 metres tall."]


def test_squad_file_and_hf_dataset_give_the_same_triples(tmp_path):
    records = [{"id": "q1", "question": "When?", "answers": [{"text": "1889", "answer_start": 46}]}]
    data = {"version": "1.1", "data": [{"title": "Eiffel_Tower", "paragraphs": [{"context": CONTEXT, "qas": records}]}]}
    path = tmp_path / "squad.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        json.dump(data, handle)
    from_file = triples_from_squad(read_squad(path, titles=["Eiffel Tower"]))
    assert read_squad(path, titles=["Other"]) == []

    import datasets

    hf = datasets.Dataset.from_list(
        [
            {
                "id": "q1",
                "title": "Eiffel Tower",
                "context": CONTEXT,
                "question": "When?",
                "answers": {"text": ["1889"], "answer_start": [46]},
            }
        ]
    )
    assert triples_from_hf_squad(hf) == from_file


def test_paq_reader(tmp_path):
    path = tmp_path / "paq.jsonl"
    lines = [
        {"question": "when was it finished", "answer": ["1889"], "passage": CONTEXT, "passage_id": "p7"},
        {"question": "where", "answers": "Nowhere", "context": CONTEXT},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    first, second = read_paq_jsonl(path)
    assert first.document_id == "p7" and first.target == "1889"
    assert [CONTEXT[s:e] for s, e in first.gold_spans] == ["The tower was finished in 1889."]
    assert second.gold_spans == () and second.document_id == "paq:2"  # answer not in the passage: no gold unit
    path.write_text(json.dumps({"question": "q", "answer": ["a"]}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="passage"):
        list(read_paq_jsonl(path))


def test_jsonl_round_trip_and_errors(tmp_path):
    triples = [
        Triple("kw query", CONTEXT, "Paris is in France.", ((0, 19),), "wiki:Paris", "ri"),
        Triple("q", "Zoë’s café.", "café", ((0, 11),), "x#0"),
    ]
    path = tmp_path / "out" / "triples.jsonl"
    assert write_triples_jsonl(triples, path) == 2
    assert list(read_triples_jsonl(path)) == triples
    with path.open("a", encoding="utf-8") as handle:
        handle.write("{not json\n")
    with pytest.raises(ValueError, match=":3: invalid JSON"):
        list(read_triples_jsonl(path))
    with pytest.raises(FileNotFoundError):
        list(read_triples_jsonl(tmp_path / "missing.jsonl"))
    with pytest.raises(ValueError, match="outside the document"):
        Triple("q", "short", "t", ((0, 99),), "d")
