"""Where the data lives and how each source becomes training and validation triples.

One data root holds every source in the layout of the project's shared data folder::

    squad/dev-v1.1.json.gz   squad/train-v1.1.json.gz   squad/split.json
    nq-qed/qed-train.jsonl.gz   wiki-vital/summaries_en.jsonl.gz   wiki-extract/articles.jsonl.gz

The root is ``$GEAR_DATA_ROOT`` when set, else ``../shared/data`` (from the project's root). Code and configs name
files relative to it (:func:`data_path`), so a GPU machine that carries a copy of the few files a run needs only
sets ``GEAR_DATA_ROOT``.

Held-out slices are chosen by a hash of a stable key (an NQ example id, a Wikipedia title) and a seed, so every
reader, at any time and on any machine, agrees on them without a stored list.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gear_core.data.squad import SquadParagraph
from gear_core.data.triples import Triple, jsonl_records, sentence_at
from gear_core.text import split_sentences

DATA_ROOT_ENV = "GEAR_DATA_ROOT"
DEFAULT_DATA_ROOT = "../shared/data"

SQUAD_DEV = "squad/dev-v1.1.json.gz"
SQUAD_TRAIN = "squad/train-v1.1.json.gz"
SQUAD_SPLIT = "squad/split.json"
NQ_QED = "nq-qed/qed-train.jsonl.gz"
WIKI_VITAL = "wiki-vital/summaries_en.jsonl.gz"
WIKI_EXTRACT = "wiki-extract/articles.jsonl.gz"


def data_root() -> Path:
    """``$GEAR_DATA_ROOT``, else ``../shared/data`` from the working directory, else ``shared/data`` beside the
    project's checkout (so notebooks and scripts find it from any folder of the project)."""
    if os.environ.get(DATA_ROOT_ENV):
        return Path(os.environ[DATA_ROOT_ENV])
    local = Path(DEFAULT_DATA_ROOT)
    beside_checkout = Path(__file__).resolve().parents[3] / "shared" / "data"
    return beside_checkout if not local.is_dir() and beside_checkout.is_dir() else local


def data_path(path: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """A data file: absolute paths and paths that exist from the working directory as given, else under the root."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    return Path(root) / path if root is not None else data_root() / path


def existing_data_path(path: str | os.PathLike, what: str = "data file", hint: str = "") -> Path:
    """:func:`data_path`, or a FileNotFoundError that says where it looked (and ``hint``: how to make the file)."""
    found = data_path(path)
    if not found.is_file():
        raise FileNotFoundError(
            f"{what} {path} not found: looked in the working directory ({Path.cwd()}) and under the data root "
            f"{data_root()} (set {DATA_ROOT_ENV})" + (f". {hint}" if hint else "")
        )
    return found


#: The share of NQ examples and synthetic-triple titles that training holds out for validation (by default).
VALIDATION_FRACTION = 0.05


def held_out(key: str, fraction: float, seed: int = 0) -> bool:
    """Whether ``key`` falls in the held-out ``fraction``: a hash of ``(seed, key)``, the same everywhere."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    digest = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


def _jsonl_records(path: Path) -> Iterator[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"no data file at {path} (set {DATA_ROOT_ENV} to the data folder)")
    return (record for _, record in jsonl_records(path))


# ---- Natural Questions (QED subset) ---------------------------------------------------------------------


@dataclass(frozen=True)
class NQExample:
    """A search-engine query, the Wikipedia passage that answers it, and the answers' character spans."""

    id: str
    title: str
    question: str
    passage: str
    answer_spans: tuple[tuple[int, int], ...]
    answers: tuple[str, ...]


def read_nq_qed(path: str | os.PathLike) -> list[NQExample]:
    """The NQ-QED JSONL(.gz): one :class:`NQExample` per line (examples without an answer span are kept)."""
    examples = []
    for record in _jsonl_records(Path(path)):
        passage = record["paragraph_text"]
        spans = tuple(
            (int(s), int(e)) for s, e in record.get("answer_spans", []) if 0 <= int(s) < int(e) <= len(passage)
        )
        answers = record.get("answer_text", [])
        examples.append(
            NQExample(
                id=str(record["example_id"]),
                title=record.get("title_text", ""),
                question=record["question_text"],
                passage=passage,
                answer_spans=spans,
                answers=tuple([answers] if isinstance(answers, str) else answers),
            )
        )
    return examples


def split_nq(
    examples: Iterable[NQExample], fraction: float = VALIDATION_FRACTION, seed: int = 0
) -> tuple[list[NQExample], list[NQExample]]:
    """``(kept, held out)``: the NQ examples training may use and the ``fraction`` it holds out, by example id."""
    kept: list[NQExample] = []
    held: list[NQExample] = []
    for example in examples:
        (held if held_out(example.id, fraction, seed) else kept).append(example)
    return kept, held


def nq_validation_triples(
    path: str | os.PathLike, fraction: float = VALIDATION_FRACTION, seed: int = 0
) -> list[Triple]:
    """The NQ-QED examples training holds out (:func:`split_nq`), as triples: the ``nq`` validation set of
    :class:`~gear_core.training.GeARDataModule` before its sampling."""
    return triples_from_nq(split_nq(read_nq_qed(path), fraction, seed)[1])


def triples_from_nq(examples: Iterable[NQExample]) -> list[Triple]:
    """Question-answer triples: gold = the project's sentences holding an answer start; examples without one
    are dropped. Document ids are ``nq:<title>#<passage hash>`` (one passage can answer several queries)."""
    triples = []
    for example in examples:
        sentences = split_sentences(example.passage)
        gold = {sentence_at(sentences, start) for start, _ in example.answer_spans}
        spans = tuple(sorted((s.start_char, s.end_char) for s in gold if s is not None))
        if not spans:
            continue
        target = example.answers[0] if example.answers else example.passage[slice(*example.answer_spans[0])]
        passage_key = hashlib.blake2b(example.passage.encode(), digest_size=6).hexdigest()
        triples.append(Triple(example.question, example.passage, target, spans, f"nq:{example.title}#{passage_key}"))
    return triples


# ---- Wikipedia articles (wiki-extract) ------------------------------------------------------------------


def wiki_extract_documents(
    path: str | os.PathLike,
    max_words: int = 380,
    min_words: int = 40,
    exclude_titles: Iterable[str] = (),
) -> Iterator[tuple[str, str]]:
    """``("wx:<title>#<k>", text)`` chunks of each article: consecutive lines packed up to ``max_words``.

    WikiExtractor keeps section titles as short lines ending in a full stop; a chunk never ends on one. A line
    longer than ``max_words`` is a chunk of its own (sentence ranking reads long documents in windows). Chunks
    under ``min_words`` are dropped. ~380 words is about 500 tokens, the paper's document length.
    """
    excluded = {t.replace("_", " ") for t in exclude_titles}
    for record in _jsonl_records(Path(path)):
        title = record["title"]
        if title.replace("_", " ") in excluded:
            continue
        chunks: list[list[str]] = [[]]
        words = 0
        for line in record["text"].split("\n"):
            line_words = len(line.split())
            if not line_words:
                continue
            if chunks[-1] and words + line_words > max_words and not _is_heading(chunks[-1][-1]):
                chunks.append([])
                words = 0
            chunks[-1].append(line)
            words += line_words
        index = 0
        for chunk in chunks:
            while chunk and _is_heading(chunk[-1]):
                chunk = chunk[:-1]
            text = "\n".join(chunk)
            if len(text.split()) >= min_words:
                yield f"wx:{title}#{index}", text
                index += 1


def _is_heading(line: str) -> bool:
    return len(line.split()) <= 6 and line.endswith(".") and not line.rstrip(".").endswith((")", '"'))


def title_of(document_id: str) -> str:
    """The article title behind a document id: ``Title#3`` (SQuAD), ``wiki:Title`` (wiki-vital),
    ``wx:Title#2`` (wiki-extract chunk), ``nq:Title#hash`` (NQ passage); a window suffix ``@start`` is ignored."""
    document_id = document_id.split("@", 1)[0]
    for prefix in ("wiki:", "wx:", "nq:"):
        if document_id.startswith(prefix):
            document_id = document_id[len(prefix) :]
            if prefix == "wiki:":
                return document_id.replace("_", " ")
            break
    return document_id.rsplit("#", 1)[0].replace("_", " ")


# ---- Long documents: whole articles ----------------------------------------------------------------------


def long_document_triples(paragraphs: Sequence[SquadParagraph], separator: str = "\n\n") -> list[Triple]:
    """Each article's paragraphs joined into one document, its questions asked against it.

    The gold sentences are the paragraph-level ones, shifted to the article's offsets (sentence splitting
    breaks at blank lines, so a paragraph's sentences are the article's sentences there).
    """
    from gear_core.data.triples import triples_from_squad

    by_title: dict[str, list[SquadParagraph]] = {}
    for paragraph in paragraphs:
        by_title.setdefault(paragraph.title, []).append(paragraph)
    triples = []
    for title, article in by_title.items():
        article = sorted(article, key=lambda p: p.index)
        offsets, position = [], 0
        for paragraph in article:
            offsets.append(position)
            position += len(paragraph.context) + len(separator)
        document = separator.join(p.context for p in article)
        for offset, paragraph in zip(offsets, article, strict=True):
            for triple in triples_from_squad([paragraph]):
                spans = tuple((s + offset, e + offset) for s, e in triple.gold_spans)
                triples.append(Triple(triple.query, document, triple.target, spans, f"article:{title}", "qa"))
    return triples


def wiki_vital_documents(path: str | Path, exclude_titles: Collection[str] = ()) -> Iterator[tuple[str, str]]:
    """``(f"wiki:{title}", text)`` from the wiki-vital summaries JSONL(.gz), skipping ``exclude_titles``
    (compared case-sensitively with underscores read as spaces, as SQuAD titles are spelt with underscores)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no wiki-vital summaries at {path}")
    excluded = {title.replace("_", " ") for title in exclude_titles}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: invalid JSON ({error.msg})") from error
            title, text = record["title"], record["text"]
            if title.replace("_", " ") not in excluded and text:
                yield f"wiki:{title}", text


__all__ = [
    "DATA_ROOT_ENV",
    "DEFAULT_DATA_ROOT",
    "NQ_QED",
    "SQUAD_DEV",
    "SQUAD_SPLIT",
    "SQUAD_TRAIN",
    "VALIDATION_FRACTION",
    "WIKI_EXTRACT",
    "WIKI_VITAL",
    "NQExample",
    "data_path",
    "data_root",
    "existing_data_path",
    "held_out",
    "long_document_triples",
    "nq_validation_triples",
    "read_nq_qed",
    "split_nq",
    "title_of",
    "triples_from_nq",
    "wiki_extract_documents",
    "wiki_vital_documents",
]
