"""The demo's model and its cached index (rebuilt when the corpus, the passage size or the model changes)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gear_core.demo._common import DemoError, note
from gear_core.demo.corpus import Document
from gear_core.demo.passages import CHUNKING_VERSION, chunk_documents

if TYPE_CHECKING:
    from gear_core.modeling import GeARModel
    from gear_core.retrieval import GeARSearcher

CACHE_FILE = "gear_demo.json"


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
    max_tokens = model.passage_tokens
    fingerprint = corpus_fingerprint(documents, max_tokens)
    searcher = _cached_searcher(model, index_dir, fingerprint)
    if searcher is not None:
        return searcher, False
    note(f"cutting {len(documents)} documents into passages of at most {max_tokens} tokens")
    passages = chunk_documents(documents, model)
    note(f"indexing {len(passages)} passages into {index_dir}")
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
        note(f"the index in {index_dir} does not match the corpus (changed since, or never finished): rebuilding it")
        return None
    try:
        searcher = GeARSearcher.load(index_dir, model)
    except ModelMismatchError:
        note(f"the index in {index_dir} was built with another model: rebuilding it")
    except (OSError, ValueError) as error:
        note(f"the index in {index_dir} is unreadable ({error}): rebuilding it")
    else:
        if searcher.index.has_sentences == model.config.indexes_sentences:
            return searcher
        note(f"the index in {index_dir} does not keep the sentence vectors this model scores with: rebuilding it")
    return None
