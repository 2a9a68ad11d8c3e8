"""DocumentIndex: FAISS over L2-normalised document embeddings, with string ids, texts and a self-describing folder.

The vectors live in a FAISS index (inner product; on unit vectors that is cosine similarity); this class keeps
what FAISS does not: the string id and the text of each document (sentence ranking and generation read the text
again at query time), and the facts needed to trust a saved index later (which model made the vectors, their
dimension, the index type and its parameters). An index made with ``sentences=True`` also keeps each document's
sentence vectors, in a second FAISS index of the same type, so a search can score a document by its vector and its
best sentence (:func:`document_scores`; ``GeARConfig.retrieval_sentence_weight``).

A saved index is a folder:

- ``gear_index.json``: metadata (format version, model identity, dimension, metric, index type and parameters,
  document count, the names and SHA-256 of the data files below). Plain JSON; nothing is ever pickled.
- ``index-<tag>.faiss``: the FAISS index (``faiss.write_index``).
- ``documents-<tag>.jsonl``: one ``{"id": ..., "text": ...}`` object per line, in FAISS position order (with
  sentence vectors, also ``"sentences"``: how many rows of the sentence index are the document's, in order).
- ``sentences-<tag>.faiss``: with sentence vectors only (format version 3; an index without them is still written
  as version 2).

Saving over an index writes the new files under a new tag and then replaces ``gear_index.json`` atomically
(:func:`gear_core.files.versioned_save`): a save that dies at any moment leaves the old index loadable, and a save
removes only the files of the version it replaced or of an unfinished save, never other files in the folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import faiss
import numpy as np

from gear_core.files import (
    TAG_PATTERN,
    CorruptFileError,
    ModelMismatchError,
    fsync_path,
    plain_file_name,
    sha256_file,
    version_tag,
    versioned_save,
    write_atomic,
)
from gear_core.tokenization import check_positive_int

if TYPE_CHECKING:
    from gear_core.modeling import GeARModel

IndexType = Literal["flat", "hnsw", "ivf"]
INDEX_TYPES: tuple[str, ...] = ("flat", "hnsw", "ivf")

FORMAT_NAME = "gear-document-index"
FORMAT_VERSION = 3  # written only by an index with sentence vectors; one without is written as version 2
READABLE_VERSIONS = (1, 2, 3)  # version 1 wrote index.faiss and documents.jsonl, saved in place
METADATA_FILE = "gear_index.json"
# The names a save gives its data files (version 1's fixed ones too): the only files a save ever removes.
_OWN_FILES = (
    rf"index-{TAG_PATTERN}\.faiss|documents-{TAG_PATTERN}\.jsonl|sentences-{TAG_PATTERN}\.faiss|"
    r"index\.faiss|documents\.jsonl"
)
# The data files a saved index may name in its metadata's "files" (sentences only with sentence vectors).
_DATA_FILES = ("index", "documents", "sentences")
# Vectors checked for NaN and infinity per block on load (bounds the copy FAISS makes of them).
_CHECK_BLOCK = 1 << 14

# Default parameters per index type; a saved index records the values it was built with.
DEFAULT_PARAMS: dict[str, dict[str, int]] = {
    "flat": {},
    "hnsw": {"m": 32, "ef_construction": 200, "ef_search": 128},
    "ivf": {"nlist": 100, "nprobe": 10},
}
_SEARCH_PARAMS = {"hnsw": ("ef_search",), "ivf": ("nprobe",)}
_FAISS_CLASSES = {"flat": faiss.IndexFlatIP, "hnsw": faiss.IndexHNSWFlat, "ivf": faiss.IndexIVFFlat}
_NORM_TOLERANCE = 1e-3
# With sentence vectors: how deep an approximate index's two searches read at least (4k when deeper).
_SENTENCE_SEARCH_DEPTH = 64


@dataclass(frozen=True)
class Hit:
    """One retrieved document: its id and text, its score (the inner product with the query; with sentence
    vectors, :func:`document_scores`), and its rank (1 = best)."""

    id: str
    text: str
    score: float
    rank: int


# ----------------------------------------------------------------------------------------------------------
# Model identity: which model's vectors an index holds.

# Keys that change with where or how a model was loaded, not with what it computes.
_VOLATILE_CONFIG_KEYS = frozenset({"_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype"})


def model_identity(model: GeARModel) -> str:
    """``"<name>@<fingerprint>"``: where the model came from, and a fingerprint of what makes its embeddings.

    The name is ``model.name_or_path`` (or the base encoder's name for a model built with ``from_encoder``) and is
    informative only: the same model in another folder is the same model. The fingerprint (16 hex digits of a
    SHA-256) covers the encoder configuration, the query/document token limits and the query and document
    encoders' weights, rounded to bfloat16 so the same model in float32 or bfloat16 agrees. Settings that do not
    change embeddings (sentence ranking, decoder, losses) are left out, so an index survives changing them. The
    decoder start token's embedding row is left out too: encoders never read it and ``from_encoder`` initialises
    it at random.
    """
    import torch  # only here: the index itself needs no torch

    config = model.config
    shape = {
        "encoder_config": {k: v for k, v in config.encoder_config.items() if k not in _VOLATILE_CONFIG_KEYS},
        "shared_encoder": config.shared_encoder,
        "max_query_length": config.max_query_length,
        "max_document_length": config.max_document_length,
    }
    digest = hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode("utf-8"))
    start_row = _decoder_start_row(model)
    encoders = [("query", model.query_encoder), ("document", model.document_encoder)]
    with torch.no_grad():
        for prefix, encoder in encoders:
            if encoder is None:  # shared encoder: the query encoder is also the document encoder
                continue
            for name, tensor in sorted(encoder.state_dict().items()):
                if name.endswith("word_embeddings.weight") and start_row is not None:
                    keep = torch.ones(tensor.shape[0], dtype=torch.bool, device=tensor.device)
                    keep[start_row : start_row + 1] = False
                    tensor = tensor[keep]
                if tensor.is_floating_point():
                    tensor = tensor.to(torch.bfloat16).view(torch.int16)
                digest.update(f"{prefix}.{name}:{tuple(tensor.shape)}".encode())
                digest.update(memoryview(tensor.contiguous().cpu().numpy()).cast("B"))
    name = getattr(model, "name_or_path", "") or config.encoder_name_or_path or "gear"
    return f"{name}@{digest.hexdigest()[:16]}"


def _decoder_start_row(model: GeARModel) -> int | None:
    tokenizer = getattr(model, "tokenizer", None)
    token = model.config.decoder_start_token
    if tokenizer is None or token not in tokenizer.get_vocab():  # otherwise the lookup answers [UNK]'s row
        return None
    return int(tokenizer.convert_tokens_to_ids(token))


def _fingerprint(identity: str) -> str:
    return identity.rsplit("@", 1)[-1]


def same_model(identity_a: str, identity_b: str) -> bool:
    """Whether two :func:`model_identity` strings name the same model (their fingerprints agree)."""
    return _fingerprint(identity_a) == _fingerprint(identity_b)


def check_model(index_model: str | None, expected_model: str, where: str = "this index") -> None:
    """Raise :class:`ModelMismatchError` when ``index_model`` is another model than ``expected_model``, or is
    unknown (an index that does not record its model cannot be trusted to match; load it with ``check=False``)."""
    if index_model is None:
        raise ModelMismatchError(
            f"{where} does not record which model made its vectors, so it cannot be checked against "
            f"{expected_model}; rebuild it, or skip the check (GeARSearcher.load(..., check=False)) at your own risk"
        )
    if not same_model(index_model, expected_model):
        raise ModelMismatchError(
            f"{where} was built with model {index_model}, but the model in use is {expected_model}; "
            "rebuild the index with this model (its document vectors are not comparable)"
        )


def document_scores(
    document_cosines: np.ndarray, sentence_cosines: np.ndarray, sentence_counts: np.ndarray, sentence_weight: float
) -> np.ndarray:
    """Each document's score: ``cos(query, document) + sentence_weight * max over its sentences of cos(query,
    sentence)``. ``sentence_cosines`` holds every document's sentences in document order, ``sentence_counts[i]``
    (at least 1) of them document ``i``'s. The best sentence counts because a question is usually answered by one
    sentence, which the whole document's vector dilutes."""
    offsets = np.concatenate([[0], np.cumsum(sentence_counts)[:-1]]).astype(np.int64)
    best = np.maximum.reduceat(np.asarray(sentence_cosines, dtype=np.float32), offsets) if len(offsets) else 0.0
    return np.asarray(document_cosines, dtype=np.float32) + np.float32(sentence_weight) * best


# ----------------------------------------------------------------------------------------------------------
# The index.


class DocumentIndex:
    """Document embeddings in FAISS plus their string ids and texts.

    Args:
        dim: embedding dimension (``model.config.hidden_size``).
        index_type: ``"flat"`` (exact search, the default), ``"hnsw"`` (graph, approximate, no training) or
            ``"ivf"`` (inverted lists, approximate; trained on the vectors of the first :meth:`add`, which must
            hold at least ``nlist`` of them).
        model: the :func:`model_identity` of the model that makes the vectors, recorded in the saved metadata.
        sentences: also keep each document's sentence vectors (every :meth:`add` then gives them), so
            :meth:`search` can score documents by their best sentence too.
        **params: index parameters: ``m``, ``ef_construction``, ``ef_search`` for HNSW; ``nlist``, ``nprobe`` for
            IVF (defaults in ``DEFAULT_PARAMS``). Larger ``ef_search`` / ``nprobe``: better recall, slower search.
    """

    def __init__(
        self, dim: int, index_type: IndexType = "flat", model: str | None = None, sentences: bool = False, **params: int
    ) -> None:
        check_positive_int(dim, "dim")
        if index_type not in INDEX_TYPES:
            raise ValueError(f"index_type must be one of {INDEX_TYPES}, got {index_type!r}")
        unknown = set(params) - set(DEFAULT_PARAMS[index_type])
        if unknown:
            allowed = sorted(DEFAULT_PARAMS[index_type]) or "none"
            raise ValueError(f"unknown parameters {sorted(unknown)} for a {index_type!r} index (allowed: {allowed})")
        self.dim = dim
        self.index_type: str = index_type
        self.model = model
        self.params: dict[str, int] = {**DEFAULT_PARAMS[index_type], **params}
        for key, value in self.params.items():
            check_positive_int(value, key)
        if not isinstance(sentences, bool):
            raise TypeError(f"sentences must be True or False, got {sentences!r}")
        self._index = self._new_faiss_index()
        self._sentences = self._new_faiss_index() if sentences else None
        self._apply_search_params()
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._positions: dict[str, int] = {}
        self._sentence_counts: list[int] = []
        self._sentence_layout: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # see _layout

    def _new_faiss_index(self) -> faiss.Index:
        if self.index_type == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.params["m"], faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.params["ef_construction"]
            return index
        if self.index_type == "ivf":
            quantizer = faiss.IndexFlatIP(self.dim)
            # faiss's Python wrapper keeps the quantizer alive as long as the IVF index.
            index = faiss.IndexIVFFlat(quantizer, self.dim, self.params["nlist"], faiss.METRIC_INNER_PRODUCT)
            index.set_direct_map_type(faiss.DirectMap.Array)  # reconstruct(), which scoring by sentences needs
            return index
        return faiss.IndexFlatIP(self.dim)

    def _apply_search_params(self) -> None:
        for index in (self._index, self._sentences):
            if index is None:
                continue
            if self.index_type == "hnsw":
                index.hnsw.efSearch = self.params["ef_search"]
            elif self.index_type == "ivf":
                index.nprobe = min(self.params["nprobe"], self.params["nlist"])

    def set_search_params(self, **params: int) -> None:
        """Change search-time parameters (``ef_search`` for HNSW, ``nprobe`` for IVF), e.g. after :meth:`load`."""
        allowed = _SEARCH_PARAMS.get(self.index_type, ())
        for key, value in params.items():
            if key not in allowed:
                raise ValueError(
                    f"{key!r} is not a search parameter of a {self.index_type!r} index (allowed: {allowed})"
                )
            check_positive_int(value, key)
        self.params.update(params)
        self._apply_search_params()

    # ---- contents ------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._positions

    @property
    def has_sentences(self) -> bool:
        """Whether the index keeps sentence vectors (``DocumentIndex(..., sentences=True)``)."""
        return self._sentences is not None

    @property
    def num_sentences(self) -> int:
        """How many sentence vectors the index holds (0 without them)."""
        return self._sentences.ntotal if self._sentences is not None else 0

    @property
    def ids(self) -> list[str]:
        """Document ids in insertion order."""
        return list(self._ids)

    def get_text(self, doc_id: str) -> str:
        """The text stored for ``doc_id`` (KeyError if there is no such document)."""
        return self._texts[self._positions[doc_id]]

    def __repr__(self) -> str:
        fields = [f"dim={self.dim}", f"index_type={self.index_type!r}", f"documents={len(self)}"]
        fields += [f"sentences={self.num_sentences}"] if self.has_sentences else []
        fields += [f"{k}={v}" for k, v in self.params.items()]
        return f"DocumentIndex({', '.join(fields)})"

    def add(
        self,
        embeddings: np.ndarray,
        ids: Sequence[str],
        texts: Sequence[str],
        sentence_embeddings: np.ndarray | None = None,
        sentence_counts: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        """Add documents: (n, dim) L2-normalised float embeddings, and their unique string ids and texts. An index
        with sentence vectors also takes the documents' (m, dim) sentence embeddings, in document order, and how
        many of them each document has (at least 1 each; ``GeARModel.encode_document_sentences`` gives both)."""
        vectors = self._as_vectors(embeddings, "embeddings")
        ids, texts = list(ids), list(texts)
        if not len(vectors) == len(ids) == len(texts):
            raise ValueError(f"got {len(vectors)} embeddings, {len(ids)} ids and {len(texts)} texts; they must match")
        for kind, values in (("id", ids), ("text", texts)):
            for i, value in enumerate(values):
                if not isinstance(value, str):
                    raise TypeError(f"{kind} {i} is {type(value).__name__}, expected str")
        _check_unique(ids, self._positions)
        _check_normalised(vectors, "embeddings")
        sentence_vectors, counts = self._checked_sentences(sentence_embeddings, sentence_counts, len(vectors))
        if not len(vectors):
            return
        for index, new in ((self._index, vectors), (self._sentences, sentence_vectors)):
            if index is not None and not index.is_trained:  # IVF: learn the coarse clusters from the first vectors
                nlist = self.params["nlist"]
                if len(new) < nlist:
                    raise ValueError(
                        f"an IVF index with nlist={nlist} is trained on the first add and needs at least {nlist} "
                        f"vectors; got {len(new)}. Use a smaller nlist, add more documents at once, or "
                        "index_type='flat'"
                    )
                index.train(new)
        self._index.add(vectors)
        if self._sentences is not None:
            self._sentences.add(sentence_vectors)
            self._sentence_counts.extend(counts)
            self._sentence_layout = None
        start = len(self._ids)
        self._ids.extend(ids)
        self._texts.extend(texts)
        self._positions.update((doc_id, start + i) for i, doc_id in enumerate(ids))

    def _checked_sentences(
        self, embeddings: np.ndarray | None, counts: Sequence[int] | np.ndarray | None, num_documents: int
    ) -> tuple[np.ndarray, list[int]]:
        """What :meth:`add` was given for the sentences, checked against the documents and this index."""
        if self._sentences is None:
            if embeddings is not None or counts is not None:
                raise ValueError(
                    "this index keeps no sentence vectors; make it with DocumentIndex(..., sentences=True)"
                )
            return np.zeros((0, self.dim), dtype=np.float32), []
        if embeddings is None or counts is None:
            raise ValueError(
                "this index keeps sentence vectors: add() needs sentence_embeddings and sentence_counts "
                "(GeARModel.encode_document_sentences)"
            )
        vectors = self._as_vectors(embeddings, "sentence_embeddings")
        counts_array = np.asarray(counts)
        if counts_array.shape != (num_documents,) or not np.issubdtype(counts_array.dtype, np.integer):
            raise ValueError(f"sentence_counts must be {num_documents} ints, one per document")
        if num_documents and counts_array.min() < 1:
            raise ValueError("every document needs at least one sentence vector (its whole text, if it has none)")
        if int(counts_array.sum()) != len(vectors):
            raise ValueError(f"sentence_counts add up to {int(counts_array.sum())}, but got {len(vectors)} vectors")
        _check_normalised(vectors, "sentence_embeddings")
        return vectors, [int(c) for c in counts_array]

    def search(self, query_embeddings: np.ndarray, k: int = 10, sentence_weight: float = 0.0) -> list[list[Hit]]:
        """The ``k`` best documents for each query (fewer if the index holds fewer), best first.

        ``sentence_weight > 0`` (an index with sentence vectors) scores each document by :func:`document_scores`:
        exactly on a flat index, which scores every document; HNSW and IVF rescore the documents their two searches
        find. Approximate index types may return fewer than ``k`` hits when their search reaches fewer documents.
        """
        check_positive_int(k, "k")
        if isinstance(sentence_weight, bool) or not isinstance(sentence_weight, (int, float)):
            raise TypeError(f"sentence_weight must be a number, got {sentence_weight!r}")
        if not (np.isfinite(sentence_weight) and sentence_weight >= 0):
            raise ValueError(f"sentence_weight must be a finite number >= 0, got {sentence_weight}")
        if sentence_weight and self._sentences is None:
            raise ValueError("sentence_weight needs sentence vectors: make the index with sentences=True")
        queries = self._as_vectors(query_embeddings, "query_embeddings")
        if not len(self) or not len(queries):
            return [[] for _ in range(len(queries))]
        if sentence_weight:
            found = self._search_with_sentences(queries, k, float(sentence_weight))
        else:
            scores, positions = self._index.search(queries, min(k, len(self)))
            found = [
                [(float(s), int(p)) for s, p in zip(row_scores, row_positions, strict=True) if p >= 0]
                for row_scores, row_positions in zip(scores, positions, strict=True)
            ]
        return [
            [Hit(self._ids[p], self._texts[p], score, rank) for rank, (score, p) in enumerate(row, start=1)]
            for row in found
        ]

    def _search_with_sentences(self, queries: np.ndarray, k: int, weight: float) -> list[list[tuple[float, int]]]:
        """Each query's best ``k`` (score, position) pairs by :func:`document_scores`. A flat index scores every
        document, exactly (reading the vectors FAISS's own flat search would read). HNSW and IVF score the documents
        among their top ``max(4k, 64)`` document and sentence vectors: approximate, as their own searches are."""
        assert self._sentences is not None
        counts, starts, owners = self._layout()
        if self.index_type == "flat":
            documents, sentences = _flat_vectors(self._index), _flat_vectors(self._sentences)
            positions = np.arange(len(self))
            return [
                _best(
                    document_scores(_inner_products(q, documents), _inner_products(q, sentences), counts, weight),
                    positions,
                    k,
                )
                for q in queries
            ]
        depth = max(4 * k, _SENTENCE_SEARCH_DEPTH)
        _, document_rows = self._index.search(queries, min(depth, len(self)))
        _, sentence_rows = self._sentences.search(queries, min(depth, self.num_sentences))
        results = []
        for query, found_documents, found_sentences in zip(queries, document_rows, sentence_rows, strict=True):
            found = [found_documents[found_documents >= 0], owners[found_sentences[found_sentences >= 0]]]
            candidates = np.unique(np.concatenate(found))
            lengths = counts[candidates]
            # Every row of every candidate: each one's start, counted on from where its rows begin in the output.
            rows = np.repeat(starts[candidates] - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
            scores = document_scores(
                _inner_products(query, self._index.reconstruct_batch(candidates)),
                _inner_products(query, self._sentences.reconstruct_batch(rows)),
                lengths,
                weight,
            )
            results.append(_best(scores, candidates, k))
        return results

    def _layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each document's sentence count, where its rows start (with the total last), and each row's document;
        computed once per change of the index, not per search."""
        if self._sentence_layout is None:
            counts = np.asarray(self._sentence_counts, dtype=np.int64)
            starts = np.concatenate([[0], np.cumsum(counts)])
            self._sentence_layout = (counts, starts, np.repeat(np.arange(len(counts)), counts))
        return self._sentence_layout

    def _as_vectors(self, array: Any, name: str) -> np.ndarray:
        array = np.asarray(array)
        if array.ndim != 2:
            raise ValueError(
                f"{name} must be a 2-D (n, {self.dim}) array, got shape {array.shape}"
                + ("; use array[None, :] for a single vector" if array.ndim == 1 else "")
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"{name} must hold floats, got dtype {array.dtype}")
        if array.shape[1] != self.dim:
            raise ValueError(f"{name} have dimension {array.shape[1]}, but this index holds {self.dim}-dim vectors")
        vectors = np.ascontiguousarray(array, dtype=np.float32)
        if not np.isfinite(vectors).all():
            raise ValueError(f"{name} contain NaN or infinite values")
        return vectors

    # ---- persistence ---------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """What ``gear_index.json`` records (without the file checksums, which :meth:`save` adds)."""
        from gear_core import __version__

        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION if self.has_sentences else 2,
            "model": self.model,
            "dim": self.dim,
            "normalized": True,
            "metric": "inner_product",
            "index_type": self.index_type,
            "index_params": dict(self.params),
            "num_documents": len(self),
            **({"num_sentences": self.num_sentences} if self.has_sentences else {}),
            "created_with": {"gear_core": __version__, "faiss": faiss.__version__},
        }

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the index to ``folder`` (created if needed). An index already there is replaced atomically: the
        new files get new names, ``gear_index.json`` is switched to them last, then the old files are removed.
        Other files in ``folder`` are never touched; a save that fails leaves nothing of itself behind."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tag = version_tag()
        files = {"index": f"index-{tag}.faiss", "documents": f"documents-{tag}.jsonl"}
        if self._sentences is not None:
            files["sentences"] = f"sentences-{tag}.faiss"
        with versioned_save(folder, METADATA_FILE, _OWN_FILES, files.values(), lambda: _data_files(folder)):
            faiss.write_index(self._index, str(folder / files["index"]))
            if self._sentences is not None:
                faiss.write_index(self._sentences, str(folder / files["sentences"]))
            counts = self._sentence_counts if self._sentences is not None else [None] * len(self)
            # surrogatepass: a text with a lone surrogate (e.g. read with surrogateescape) saves and reloads as is.
            with (folder / files["documents"]).open("w", encoding="utf-8", errors="surrogatepass") as handle:
                for doc_id, text, count in zip(self._ids, self._texts, counts, strict=True):
                    record = {"id": doc_id, "text": text} | ({"sentences": count} if count is not None else {})
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            for name in files.values():
                fsync_path(folder / name)
            metadata = self.metadata()
            metadata["files"] = files
            metadata["sha256"] = {key: sha256_file(folder / name) for key, name in files.items()}
            write_atomic(folder / METADATA_FILE, json.dumps(metadata, indent=2) + "\n")  # the switch
        return folder

    @classmethod
    def read_metadata(cls, folder: str | os.PathLike) -> dict[str, Any]:
        """The validated metadata of a saved index, without loading the index itself."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"no GeAR index folder at {folder}")
        path = folder / METADATA_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a GeAR index: {METADATA_FILE} is missing")
        try:
            metadata = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CorruptFileError(f"corrupt index metadata {path}: {error}") from error
        if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
            raise CorruptFileError(f"{path} is not GeAR index metadata (expected format {FORMAT_NAME!r})")
        if metadata.get("format_version") not in READABLE_VERSIONS:
            raise ValueError(
                f"{path} has index format version {metadata.get('format_version')!r}; "
                f"this gear_core reads versions {READABLE_VERSIONS}"
            )
        if metadata["format_version"] == 1:
            metadata.setdefault("files", {"index": "index.faiss", "documents": "documents.jsonl"})
        expected = {
            "dim": int,
            "index_type": str,
            "index_params": dict,
            "num_documents": int,
            "sha256": dict,
            "files": dict,
            "metric": str,
            "normalized": bool,
        }
        for key, kind in expected.items():
            if not isinstance(metadata.get(key), kind) or (kind is int and isinstance(metadata[key], bool)):
                raise CorruptFileError(f"corrupt index metadata {path}: {key!r} is missing or not a {kind.__name__}")
        named = _DATA_FILES if "sentences" in metadata["files"] else _DATA_FILES[:2]  # sentences: optional
        for key in named:
            plain_file_name(metadata["files"].get(key), f"{path}: files.{key}")
            if not isinstance(metadata["sha256"].get(key), str):
                raise CorruptFileError(f"corrupt index metadata {path}: sha256.{key} is missing")
        if "sentences" in metadata["files"]:
            count = metadata.get("num_sentences")
            if not isinstance(count, int) or isinstance(count, bool) or count < metadata["num_documents"]:
                raise CorruptFileError(f"corrupt index metadata {path}: 'num_sentences' is missing or too small")
        if metadata["metric"] != "inner_product" or metadata["normalized"] is not True:
            raise ValueError(f"{path}: unsupported metric {metadata['metric']!r} (normalized={metadata['normalized']})")
        if metadata["index_type"] not in INDEX_TYPES:
            raise ValueError(f"{path}: unknown index type {metadata['index_type']!r}")
        if metadata.get("model") is not None and not isinstance(metadata["model"], str):
            raise CorruptFileError(f"corrupt index metadata {path}: 'model' must be a string")
        return metadata

    @classmethod
    def load(cls, folder: str | os.PathLike, expected_model: str | None = None) -> DocumentIndex:
        """Read an index written by :meth:`save`.

        With ``expected_model`` (a :func:`model_identity`), an index built with another model, or one that does
        not record its model, is refused with a :class:`ModelMismatchError` before anything large is read. Missing
        files raise FileNotFoundError; damaged or changed ones :class:`~gear_core.files.CorruptFileError`, naming
        the file.
        """
        folder = Path(folder)
        metadata = cls.read_metadata(folder)
        if expected_model is not None:
            check_model(metadata.get("model"), expected_model, where=f"the index at {folder}")
        try:
            index = cls(
                metadata["dim"],
                metadata["index_type"],
                model=metadata.get("model"),
                sentences="sentences" in metadata["files"],
                **metadata["index_params"],
            )
        except (TypeError, ValueError) as error:
            raise CorruptFileError(f"corrupt index metadata in {folder}: {error}") from error

        paths = {key: folder / name for key, name in metadata["files"].items() if key in _DATA_FILES}
        for key, path in paths.items():
            if not path.is_file():
                raise FileNotFoundError(f"the index at {folder} is incomplete: {path.name} is missing")
            # Checked before FAISS parses the file: a damaged file becomes a clear error, not a crash or a huge read.
            if sha256_file(path) != metadata["sha256"][key]:
                raise CorruptFileError(f"{path} is corrupt or was changed after saving (its SHA-256 does not match)")
        faiss_index = _read_faiss(paths["index"], index, metadata["num_documents"])
        ids, texts, counts = _read_documents(paths["documents"], with_sentences=index.has_sentences)
        if len(ids) != metadata["num_documents"]:
            raise CorruptFileError(
                f"{paths['documents']} holds {len(ids)} documents; the metadata says {metadata['num_documents']}"
            )
        _check_vectors(faiss_index, paths["index"], ids)
        _check_unique(ids, {})
        if index.has_sentences:
            sentence_index = _read_faiss(paths["sentences"], index, metadata["num_sentences"])
            if sum(counts) != sentence_index.ntotal:
                raise CorruptFileError(
                    f"{paths['documents']} gives its documents {sum(counts)} sentence vectors; "
                    f"{paths['sentences']} holds {sentence_index.ntotal}"
                )
            owners = [doc_id for doc_id, count in zip(ids, counts, strict=True) for _ in range(count)]
            _check_vectors(sentence_index, paths["sentences"], owners)
            index._sentences, index._sentence_counts, index._sentence_layout = sentence_index, counts, None
        index._index = faiss_index
        index._apply_search_params()
        index._ids, index._texts = ids, texts
        index._positions = {doc_id: i for i, doc_id in enumerate(ids)}
        return index


def _data_files(folder: Path) -> list[str]:
    """The data files the index saved in ``folder`` uses (what its metadata names)."""
    files = DocumentIndex.read_metadata(folder)["files"]
    return [files[key] for key in _DATA_FILES if key in files]


def _flat_vectors(index: faiss.IndexFlat) -> np.ndarray:
    """The vectors a flat FAISS index holds, as an (ntotal, d) view (no copy; valid until the index changes)."""
    if not index.ntotal:
        return np.zeros((0, index.d), dtype=np.float32)
    return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)


def _inner_products(query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """(n,) inner products of a (d,) query with (n, d) float32 vectors, by FAISS's SIMD kernel on this thread. Not
    numpy's ``@``: its BLAS starts threads of its own, which then compete with torch's while the next query is
    encoded (on 2 cores a question took 3x as long)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    query = np.ascontiguousarray(query, dtype=np.float32)
    products = np.empty(len(vectors), dtype=np.float32)
    if len(vectors):
        faiss.fvec_inner_products_ny(
            faiss.swig_ptr(products), faiss.swig_ptr(query), faiss.swig_ptr(vectors), len(query), len(vectors)
        )
    return products


def _best(scores: np.ndarray, positions: np.ndarray, k: int) -> list[tuple[float, int]]:
    """The ``k`` best (score, position) pairs, best first; equal scores: the earlier position first."""
    chosen = np.argpartition(-scores, k - 1)[:k] if len(scores) > k else np.arange(len(scores))
    chosen = chosen[np.lexsort((positions[chosen], -scores[chosen]))]
    return [(float(scores[i]), int(positions[i])) for i in chosen]


def _check_normalised(vectors: np.ndarray, name: str) -> None:
    norms = np.linalg.norm(vectors, axis=1)
    if len(norms) and np.abs(norms - 1.0).max() > _NORM_TOLERANCE:
        bad = int(np.argmax(np.abs(norms - 1.0)))
        raise ValueError(f"{name} must be L2-normalised (inner product = cosine); row {bad} has norm {norms[bad]:.4f}")


def _read_faiss(path: Path, index: DocumentIndex, expected_vectors: int) -> faiss.Index:
    """A FAISS file of ``index``'s type and dimension holding ``expected_vectors`` vectors (what the metadata says)."""
    try:
        faiss_index = faiss.read_index(str(path))
    except RuntimeError as error:
        raise CorruptFileError(f"corrupt FAISS index {path}: {error}") from error
    expected_class = _FAISS_CLASSES[index.index_type]
    if not isinstance(faiss_index, expected_class) or faiss_index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise CorruptFileError(
            f"{path} is a {type(faiss_index).__name__}, expected an inner-product "
            f"{expected_class.__name__} as the metadata says"
        )
    if faiss_index.d != index.dim or faiss_index.ntotal != expected_vectors:
        raise CorruptFileError(
            f"{path} holds {faiss_index.ntotal} vectors of dimension {faiss_index.d}; the metadata "
            f"says {expected_vectors} of dimension {index.dim}"
        )
    if isinstance(faiss_index, faiss.IndexIVF):
        faiss_index.make_direct_map()  # reconstruct(), for scoring by sentences and the vector check
    return faiss_index


def _check_vectors(faiss_index: faiss.Index, path: Path, ids: list[str]) -> None:
    """Refuse vectors whose documents FAISS would silently never return: NaN or infinite ones, and (IVF) ones
    that are in no inverted list (where adding a NaN vector puts it)."""
    if isinstance(faiss_index, faiss.IndexIVF):
        stored = sum(faiss_index.invlists.list_size(i) for i in range(faiss_index.nlist))
        if stored != faiss_index.ntotal:
            raise CorruptFileError(
                f"{path} is damaged: its inverted lists hold {stored} of its {faiss_index.ntotal} vectors; "
                "rebuild the index"
            )
    for start in range(0, faiss_index.ntotal, _CHECK_BLOCK):
        vectors = faiss_index.reconstruct_n(start, min(_CHECK_BLOCK, faiss_index.ntotal - start))
        bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
        if len(bad):
            position = start + int(bad[0])
            raise CorruptFileError(
                f"{path} is damaged: the vector of document {ids[position]!r} (position {position}) holds NaN or "
                "infinite values; rebuild the index"
            )


def _check_unique(ids: list[str], existing: dict[str, int]) -> None:
    seen: set[str] = set()
    duplicates = []
    for doc_id in ids:
        if doc_id in seen or doc_id in existing:
            duplicates.append(doc_id)
        seen.add(doc_id)
    if duplicates:
        shown = ", ".join(repr(d) for d in duplicates[:5]) + (" ..." if len(duplicates) > 5 else "")
        raise ValueError(f"document ids must be unique; {len(duplicates)} duplicate(s): {shown}")


def _read_documents(path: Path, with_sentences: bool) -> tuple[list[str], list[str], list[int]]:
    ids, texts, counts = [], [], []
    with path.open(encoding="utf-8", errors="surrogatepass") as handle:
        for line_number, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise CorruptFileError(f"corrupt document record at {path}:{line_number}: {error}") from error
            if not (
                isinstance(record, dict) and isinstance(record.get("id"), str) and isinstance(record.get("text"), str)
            ):
                raise CorruptFileError(
                    f"corrupt document record at {path}:{line_number}: expected string 'id' and 'text'"
                )
            if with_sentences:
                count = record.get("sentences")
                if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                    raise CorruptFileError(
                        f"corrupt document record at {path}:{line_number}: expected a positive int 'sentences'"
                    )
                counts.append(count)
            ids.append(record["id"])
            texts.append(record["text"])
    return ids, texts, counts
