"""Sentence-level soft labels for the fusion stage: a sentence encoder's view of which sentences answer a query.

Trained on gold sentences alone, the cross-attention learns what the training questions look like and drifts away
from what the pretrained encoder knew: out of domain it ranks sentences worse than the encoder it started from.
A sentence-embedding teacher (all-MiniLM-L6-v2 by default, the model GeAR starts from) scores every sentence of
each training window against the query; ``softmax(cosine / temperature)`` over the window's sentences is a
soft target for the cross-attention's sentence distribution (:func:`gear_core.losses.sentence_distillation_loss`),
mixed with the gold target as ALBEF mixes its momentum soft labels.

The teacher's embeddings are computed once per distinct query and sentence and kept on disk (float16), so the
fusion stage reads them instead of running the teacher. Layout of a folder (one per teacher encoder)::

    teacher.json                 format, encoder, dimension
    queries-00000.json           [text key, ...] in row order; written last, so a part exists only once
    queries-00000.npy            (n, dim) float16 L2-normalised embeddings    its array is complete
    sentences-00000.json / .npy  the same for sentences

A build that is interrupted keeps its finished parts; building again encodes only the missing texts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from gear_core.data.triples import Triple
from gear_core.text import split_sentences
from gear_core.training.document_states import state_key

FORMAT = "gear-sentence-teacher/1"
PART_SIZE = 16384


class SentenceTeacher:
    """Precomputed teacher embeddings of queries and sentences; :meth:`distribution` gives a soft target."""

    def __init__(self, folder: Path, vectors: dict[str, dict[str, np.ndarray]], temperature: float) -> None:
        if temperature <= 0:
            raise ValueError(f"the teacher's temperature must be positive, got {temperature}")
        self.folder, self.temperature = folder, temperature
        self._vectors = vectors  # kind -> text key -> embedding row (views into the parts)

    @classmethod
    def build(
        cls,
        encoder: str,
        triples: Iterable[Triple],
        folder: str | os.PathLike,
        temperature: float = 0.05,
        batch_size: int = 128,
        show_progress: bool = True,
    ) -> SentenceTeacher:
        """Embed every query and every sentence of the triples' documents not yet in ``folder``, then open it."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "encoder": encoder}
        meta_path = folder / "teacher.json"
        if meta_path.exists():
            found = json.loads(meta_path.read_text(encoding="utf-8"))
            if {k: found.get(k) for k in meta} != meta:
                raise ValueError(f"{folder} holds another teacher ({found}); choose another folder")
        else:
            meta_path.write_text(json.dumps(meta), encoding="utf-8")
        texts: dict[str, dict[str, str]] = {"queries": {}, "sentences": {}}
        for triple in triples:
            texts["queries"].setdefault(state_key(triple.query), triple.query)
            for sentence in split_sentences(triple.document):
                texts["sentences"].setdefault(state_key(sentence.text), sentence.text)
        model = None
        for kind, wanted in texts.items():
            have = _read_parts(folder, kind)
            missing = [k for k in wanted if k not in have]
            if not missing:
                continue
            if model is None:
                from gear_core.evaluation.baselines import dense_encoder

                model = dense_encoder(encoder)
            encode = model.encode_queries if kind == "queries" else model.encode_documents
            number = len(list(folder.glob(f"{kind}-*.json")))
            for start in _progress(range(0, len(missing), PART_SIZE), show_progress, f"Teacher {kind}"):
                keys = missing[start : start + PART_SIZE]
                vectors = encode([wanted[k] for k in keys], batch_size=batch_size).astype(np.float16)
                stem = folder / f"{kind}-{number:05d}"
                np.save(stem.with_suffix(".npy"), vectors)
                stem.with_suffix(".json").write_text(json.dumps(keys), encoding="utf-8")  # last: marks it done
                number += 1
        return cls.open(folder, temperature)

    @classmethod
    def open(cls, folder: str | os.PathLike, temperature: float = 0.05) -> SentenceTeacher:
        folder = Path(folder)
        if not (folder / "teacher.json").exists():
            raise FileNotFoundError(f"no sentence teacher at {folder} (SentenceTeacher.build writes one)")
        return cls(folder, {kind: _read_parts(folder, kind) for kind in ("queries", "sentences")}, temperature)

    def distribution(self, query: str, sentences: Sequence[str]) -> np.ndarray:
        """``softmax(cosine(query, sentence) / temperature)`` over ``sentences`` (float32, sums to 1)."""
        try:
            q = self._vectors["queries"][state_key(query)].astype(np.float32)
            s = np.stack([self._vectors["sentences"][state_key(t)] for t in sentences]).astype(np.float32)
        except KeyError as error:
            raise KeyError(f"a text is missing from the sentence teacher at {self.folder}; build it again") from error
        logits = s @ q / self.temperature
        weights = np.exp(logits - logits.max())
        return weights / weights.sum()


def _read_parts(folder: Path, kind: str) -> dict[str, np.ndarray]:
    rows: dict[str, np.ndarray] = {}
    for index_path in sorted(folder.glob(f"{kind}-*.json")):
        keys = json.loads(index_path.read_text(encoding="utf-8"))
        vectors = np.load(index_path.with_suffix(".npy"), mmap_mode="r")
        if len(vectors) != len(keys):
            raise ValueError(f"{index_path} lists {len(keys)} texts but its array has {len(vectors)} rows")
        rows.update(zip(keys, vectors, strict=True))
    return rows


def _progress(items: range, show: bool, description: str) -> Iterable[int]:
    if not show:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=description, unit="part")
