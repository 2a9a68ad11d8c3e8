"""Token states of a frozen document tower, computed once and read back for every step of the fusion stage.

Most of a full GeAR step is the document tower's forward and backward pass over ~200 tokens, while the fusion
encoder, the query tower and the decoder only read its output. With the document tower frozen, its token states
do not change during training: :class:`DocumentStateCache` computes them once per distinct document (a SQuAD
paragraph serves ~5 questions) and keeps them on disk in float16, memory-mapped, so a fusion-stage step costs a
query-sized pass.

Layout of a cache folder (``DocumentStateCache.open`` checks it)::

    cache.json               format, the model fingerprint, hidden size, max length, the parts
    part-00000.json          {document key: [first token row, token count]}; written last, so a part exists
    part-00000.states.npy    (tokens, hidden) float16 token states     only once its arrays are complete
    part-00000.offsets.npy   (tokens, 2) int32 character offsets (0, 0 for [CLS]/[SEP])

A build that is interrupted keeps its finished parts; building again computes only the missing documents. A
cache made by another model, or with another window length, is refused (the fingerprint covers the document
tower's weights, the tokenizer's vocabulary size and ``max_document_length``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from gear_core.modeling import GeARModel

FORMAT = "gear-document-states/1"


def state_key(text: str) -> str:
    """The cache key of a document: a hash of its text (equal texts share their states)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=12).hexdigest()


@torch.no_grad()
def model_fingerprint(model: GeARModel) -> str:
    """A hash of what the cached states depend on: the document tower's weights, vocabulary and window length."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(model.document_encoder_module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to(torch.float32).cpu().numpy().tobytes())
    digest.update(f"{len(model.tokenizer)}:{model.config.max_document_length}".encode())
    return digest.hexdigest()


class DocumentStateCache:
    """Read access to cached document token states (see the module docstring for the folder layout)."""

    def __init__(self, folder: Path, meta: dict, parts: list[tuple[dict, np.ndarray, np.ndarray]]) -> None:
        self.folder, self.meta = folder, meta
        self._rows: dict[str, tuple[int, int, int]] = {}
        self._states, self._offsets = [], []
        for number, (index, states, offsets) in enumerate(parts):
            self._states.append(states)
            self._offsets.append(offsets)
            for key, (start, length) in index.items():
                self._rows[key] = (number, start, length)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, key: str) -> bool:
        return key in self._rows

    @property
    def hidden_size(self) -> int:
        return int(self.meta["hidden_size"])

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(states (L, hidden) float16, offsets (L, 2) int32)`` of one document, [CLS] and [SEP] included."""
        if key not in self._rows:
            raise KeyError(f"document {key} is not in the state cache at {self.folder}")
        part, start, length = self._rows[key]
        return self._states[part][start : start + length], self._offsets[part][start : start + length]

    @classmethod
    def open(cls, folder: str | os.PathLike, fingerprint: str | None = None) -> DocumentStateCache:
        """Open a cache folder; with ``fingerprint``, refuse one made by another model or window length."""
        folder = Path(folder)
        meta_path = folder / "cache.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"no document state cache at {folder} (no cache.json)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: unknown format {meta.get('format')!r}, expected {FORMAT}")
        if fingerprint is not None and meta.get("fingerprint") != fingerprint:
            raise ValueError(
                f"the document state cache at {folder} was made by another model or window length "
                f"(fingerprint {meta.get('fingerprint')}, this model {fingerprint}); delete it or use another folder"
            )
        parts = []
        for name in meta["parts"]:
            index = json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))
            states = np.load(folder / f"{name}.states.npy", mmap_mode="r")
            offsets = np.load(folder / f"{name}.offsets.npy", mmap_mode="r")
            rows = sum(length for _, length in index.values())
            if states.shape != (rows, meta["hidden_size"]) or offsets.shape != (rows, 2):
                raise ValueError(f"{folder / name}: arrays of shape {states.shape} / {offsets.shape} for {rows} rows")
            parts.append((index, states, offsets))
        return cls(folder, meta, parts)

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        model: GeARModel,
        documents: Iterable[str],
        folder: str | os.PathLike,
        batch_size: int = 32,
        part_size: int = 1024,
        show_progress: bool = True,
    ) -> DocumentStateCache:
        """Compute (or complete) the cache of ``documents`` in ``folder`` with the model's document tower.

        Documents are truncated to ``max_document_length`` tokens exactly as the training collator truncates
        them. Finished parts are kept, so an interrupted build resumes; existing documents are not recomputed.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        fingerprint = model_fingerprint(model)
        meta_path = folder / "cache.json"
        if meta_path.is_file():
            existing = cls.open(folder, fingerprint)
            meta = existing.meta
        else:
            existing = None
            meta = {
                "format": FORMAT,
                "fingerprint": fingerprint,
                "hidden_size": model.config.hidden_size,
                "max_document_length": model.config.max_document_length,
                "parts": [],
            }
        unique = {state_key(text): text for text in documents}
        missing = [(key, text) for key, text in unique.items() if existing is None or key not in existing]
        # Longest first: similar lengths share a batch, so little padding is computed.
        missing.sort(key=lambda item: -len(item[1]))
        progress = None
        if show_progress and missing:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(missing), desc="Caching document states", unit="doc")
        was_training = model.training
        model.eval()
        try:
            for start in range(0, len(missing), part_size):
                name = f"part-{len(meta['parts']):05d}"
                cls._write_part(model, missing[start : start + part_size], folder, name, batch_size, progress)
                meta["parts"].append(name)
                _atomic_write(meta_path, json.dumps(meta, indent=1))
        finally:
            model.train(was_training)
            if progress is not None:
                progress.close()
        if not meta_path.is_file():  # nothing to cache at all
            _atomic_write(meta_path, json.dumps(meta, indent=1))
        return cls.open(folder, fingerprint)

    @staticmethod
    def _write_part(
        model: GeARModel,
        items: Sequence[tuple[str, str]],
        folder: Path,
        name: str,
        batch_size: int,
        progress,
    ) -> None:
        tokenizer = model.tokenizer
        encoder = model.document_encoder_module
        chunks_states, chunks_offsets, index, row = [], [], {}, 0
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            encoded = tokenizer(
                [text for _, text in batch],
                padding=True,
                truncation=True,
                max_length=model.config.max_document_length,
                return_offsets_mapping=True,
                return_tensors="pt",
            )
            states = encoder(
                input_ids=encoded["input_ids"].to(model.device),
                attention_mask=encoded["attention_mask"].to(model.device),
            ).last_hidden_state
            lengths = encoded["attention_mask"].sum(dim=1).tolist()
            for i, (key, _) in enumerate(batch):
                length = int(lengths[i])
                chunks_states.append(states[i, :length].to(torch.float16).cpu().numpy())
                chunks_offsets.append(encoded["offset_mapping"][i, :length].to(torch.int32).numpy())
                index[key] = [row, length]
                row += length
            if progress is not None:
                progress.update(len(batch))
        hidden = model.config.hidden_size
        states_all = np.concatenate(chunks_states) if chunks_states else np.zeros((0, hidden), np.float16)
        offsets_all = np.concatenate(chunks_offsets) if chunks_offsets else np.zeros((0, 2), np.int32)
        np.save(folder / f"{name}.states.npy", states_all)
        np.save(folder / f"{name}.offsets.npy", offsets_all)
        _atomic_write(folder / f"{name}.json", json.dumps(index))


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
