"""Training triples ``(query, document, target, gold sentence spans)`` and their readers and writers.

Two kinds, as in the paper:

- ``"qa"`` (question-answer retrieval): the query is a question, the target is its answer, and the gold unit is
  the sentence holding the answer's start.
- ``"ri"`` (relevant-information retrieval): the query is a keyword rewrite of a sentence, the target is that
  sentence, and the gold unit is the sentence itself.

JSONL is the on-disk format, one triple per line:
``{"query", "document", "target", "gold_spans": [[start, end], ...], "document_id", "kind"}``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gear_core.data.squad import QAExample, SquadParagraph
from gear_core.text import Sentence, split_sentences

Span = tuple[int, int]


@dataclass(frozen=True)
class Triple:
    """One training example: a query, its document, the decoder's target text and the gold sentence span(s)."""

    query: str
    document: str
    target: str
    gold_spans: tuple[Span, ...]
    document_id: str
    kind: str = "qa"

    def __post_init__(self) -> None:
        for start, end in self.gold_spans:
            if not 0 <= start < end <= len(self.document):
                raise ValueError(f"gold span ({start}, {end}) lies outside the document of {self.document_id!r}")

    def to_json(self) -> str:
        record = asdict(self)
        record["gold_spans"] = [list(span) for span in self.gold_spans]
        return json.dumps(record, ensure_ascii=False)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Triple:
        return cls(
            query=record["query"],
            document=record["document"],
            target=record["target"],
            gold_spans=tuple((int(s), int(e)) for s, e in record.get("gold_spans", [])),
            document_id=str(record.get("document_id", "")),
            kind=record.get("kind", "qa"),
        )


def sentence_index_at(sentences: Sequence[Sentence], char: int) -> int | None:
    """The gold-sentence rule: the index of the sentence whose span holds character ``char`` (an answer start), or
    of the one after the gap it falls in; None past the last sentence. Training and evaluation both use it."""
    for i, sentence in enumerate(sentences):
        if char < sentence.end_char:
            return i
    return None


def sentence_at(sentences: Sequence[Sentence], char: int) -> Sentence | None:
    """The sentence :func:`sentence_index_at` picks, or None."""
    index = sentence_index_at(sentences, char)
    return None if index is None else sentences[index]


def gold_sentence_indices(sentences: Sequence[Sentence], answer_starts: Iterable[int]) -> frozenset[int]:
    """The indices of the sentences holding an answer start (:func:`sentence_index_at`)."""
    indices = (sentence_index_at(sentences, start) for start in answer_starts)
    return frozenset(i for i in indices if i is not None)


def answer_span(triple: Triple) -> Span | None:
    """Where a question-answer triple's answer (``target``) stands in its document: its first occurrence that
    starts inside a gold sentence and ends in the same one, as characters; None if there is none (a synthetic
    triple's target is a whole sentence, not an answer, and gets None too)."""
    if triple.kind != "qa" or not triple.target.strip():
        return None
    for gold_start, gold_end in triple.gold_spans:
        start = triple.document.find(triple.target, gold_start, gold_end)
        if start >= 0:
            return start, start + len(triple.target)
    return None


def triples_from_squad(paragraphs: Iterable[SquadParagraph]) -> list[Triple]:
    """Question-answer triples: target = the first annotated answer; gold = sentences holding any answer start."""
    triples = []
    for paragraph in paragraphs:
        sentences = split_sentences(paragraph.context)
        for qa in paragraph.questions:
            gold = gold_sentence_indices(sentences, qa.answer_starts)
            spans = tuple(sorted((sentences[i].start_char, sentences[i].end_char) for i in gold))
            target = qa.answers[0] if qa.answers else ""
            triples.append(Triple(qa.question, paragraph.context, target, spans, paragraph.id, "qa"))
    return triples


def triples_from_hf_squad(dataset: Iterable[dict[str, Any]]) -> list[Triple]:
    """Triples from a ``datasets`` SQuAD dataset (columns id, title, context, question, answers)."""
    by_context: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in dataset:
        by_context.setdefault((row["title"], row["context"]), []).append(row)
    paragraphs = []
    for index, ((title, context), rows) in enumerate(by_context.items()):
        questions = tuple(
            QAExample(r["id"], r["question"], tuple(r["answers"]["text"]), tuple(r["answers"]["answer_start"]))
            for r in rows
        )
        paragraphs.append(SquadParagraph(title, index, context, questions))
    return triples_from_squad(paragraphs)


def read_paq_jsonl(path: str | Path) -> Iterator[Triple]:
    """PAQ-style JSONL: ``question``, ``answer`` (a list or a string) and the passage (``passage``/``context``)."""
    for line_number, record in jsonl_records(path):
        document = record.get("passage") or record.get("context") or record.get("document")
        if document is None:
            raise ValueError(f"{path}:{line_number}: a PAQ record needs its passage ('passage' or 'context')")
        answers = record.get("answer", record.get("answers", []))
        answers = [answers] if isinstance(answers, str) else list(answers)
        sentences = split_sentences(document)
        spans = []
        for answer in answers:
            start = document.find(answer) if answer else -1
            sentence = sentence_at(sentences, start) if start >= 0 else None
            if sentence is not None:
                spans.append((sentence.start_char, sentence.end_char))
        document_id = str(record.get("passage_id", record.get("document_id", f"paq:{line_number}")))
        yield Triple(
            record["question"], document, answers[0] if answers else "", tuple(sorted(set(spans))), document_id
        )


def read_triples_jsonl(path: str | Path) -> Iterator[Triple]:
    """The project's own triple JSONL (what ``write_triples_jsonl`` and ``gear synthesize`` write)."""
    for line_number, record in jsonl_records(path):
        try:
            yield Triple.from_dict(record)
        except (KeyError, ValueError) as error:
            raise ValueError(f"{path}:{line_number}: not a valid triple ({error})") from error


def write_triples_jsonl(triples: Iterable[Triple], path: str | Path, append: bool = False) -> int:
    """Write triples as JSONL; returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("a" if append else "w", encoding="utf-8") as handle:
        for triple in triples:
            handle.write(triple.to_json() + "\n")
            count += 1
    return count


def jsonl_records(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` of a JSONL(.gz) file, blank lines skipped; a bad line names its place."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no JSONL file at {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield line_number, json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}:{line_number}: invalid JSON ({error.msg})") from error
