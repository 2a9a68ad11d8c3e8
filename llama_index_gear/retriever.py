"""GeARRetriever: LlamaIndex nodes retrieved with GeAR's bi-encoder through a gear_core ``GeARSearcher``.

The nodes live in a LlamaIndex docstore (returned as they were, with scores); their vectors live in a gear_core
``DocumentIndex`` keyed by node id. What gets embedded is ``node.get_content(metadata_mode=metadata_mode)``,
by default the plain text (``MetadataMode.NONE``): GeAR was trained on plain passages, and the highlighter's
offsets index the plain text too. Pass ``metadata_mode=MetadataMode.EMBED`` to embed what LlamaIndex's vector
indexes embed (text plus the node's embed metadata).

A persisted retriever is a folder: ``docstore-<tag>.json`` (a ``SimpleDocumentStore``), ``gear_index-<tag>/``
(the gear_core index, which records the model that made its vectors and the text it embedded for each node) and
``gear_retriever.json`` (the retriever's settings, the names of the other two and the docstore's SHA-256). A
persist writes a new tag's files and switches ``gear_retriever.json`` to them atomically, so a persist that dies
leaves the previous retriever loadable; it then removes only the files of the retriever it replaced (or of a persist
that died), never other files in the folder. A load refuses a docstore changed after saving.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.indices.base import BaseIndex
from llama_index.core.node_parser import NodeParser
from llama_index.core.schema import BaseNode, Document, IndexNode, MetadataMode, NodeWithScore, QueryBundle
from llama_index.core.storage.docstore import BaseDocumentStore, SimpleDocumentStore

from gear_core import GeARModel
from gear_core.files import (
    TAG_PATTERN,
    CorruptFileError,
    fsync_path,
    plain_file_name,
    sha256_file,
    version_tag,
    versioned_save,
    write_atomic,
)
from gear_core.retrieval import SEARCH_MODES, GeARSearcher, HybridFusion, IndexType, SearchMode
from llama_index_gear._model import is_gear_folder, load_model, model_label, saved_model_folder
from llama_index_gear.embedding import GeAREmbedding
from llama_index_gear.highlighter import GeARHighlighter, exclude_from_prompts
from llama_index_gear.splitter import GeARPassageSplitter

SETTINGS_FILE = "gear_retriever.json"
#: Node metadata, in hybrid mode: which retrievers found the node ("dense", "bm25"); its score is the fused one.
FOUND_BY_KEY = "gear_found_by"
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")
FORMAT_NAME = "gear-llamaindex-retriever"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# Version 1 saved in place, under fixed names.
_VERSION_1_FILES = {"docstore": "docstore.json", "index": "gear_index"}
# The names a persist gives what it writes (version 1's fixed ones too): the only files a persist ever removes.
_OWN_FILES = rf"docstore-{TAG_PATTERN}\.json|gear_index-{TAG_PATTERN}|docstore\.json|gear_index"
# Highlighter settings a persisted retriever remembers (its model is the retriever's).
_HIGHLIGHTER_SETTINGS = (
    "top_n",
    "min_score",
    "generate_evidence",
    "max_new_tokens",
    "batch_size",
    "mode",
    "neighbors",
    "separator",
)


class GeARRetriever(BaseRetriever):
    """Retrieves nodes with GeAR: the query's vector against the nodes' vectors (and, when the model scores documents
    by their best sentence, their sentences' vectors: ``GeARConfig.retrieval_sentence_weight``), merged with BM25 in
    ``mode="hybrid"`` (the default).

    Build one with :meth:`from_defaults` (from nodes, documents, a docstore or a VectorStoreIndex) or
    :meth:`from_persist_dir`. With ``highlighter`` set, each result is also run through that
    :class:`GeARHighlighter` (sentence highlights, evidence, or pruning) before it is returned.
    """

    def __init__(
        self,
        searcher: GeARSearcher,
        docstore: BaseDocumentStore,
        similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        highlighter: GeARHighlighter | None = None,
        metadata_mode: MetadataMode = MetadataMode.NONE,
        callback_manager: CallbackManager | None = None,
        objects: list[IndexNode] | None = None,
        object_map: dict | None = None,
        verbose: bool = False,
    ) -> None:
        if not isinstance(similarity_top_k, int) or isinstance(similarity_top_k, bool) or similarity_top_k <= 0:
            raise ValueError(f"similarity_top_k must be a positive int, got {similarity_top_k!r}")
        self._searcher = searcher
        self._docstore = docstore
        self.similarity_top_k = similarity_top_k
        self.highlighter = highlighter
        self.metadata_mode = MetadataMode(metadata_mode)
        super().__init__(callback_manager=callback_manager, object_map=object_map, objects=objects, verbose=verbose)

    @classmethod
    def from_defaults(
        cls,
        nodes: Sequence[BaseNode] | None = None,
        documents: Sequence[Document] | None = None,
        index: BaseIndex | None = None,
        docstore: BaseDocumentStore | None = None,
        model: GeARModel | None = None,
        model_name: str | os.PathLike | None = None,
        device: str | None = None,
        similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        highlight: bool | GeARHighlighter = False,
        mode: SearchMode = "hybrid",
        fusion: HybridFusion | None = None,
        node_parser: NodeParser | None = None,
        metadata_mode: MetadataMode = MetadataMode.NONE,
        index_type: IndexType = "flat",
        embed_batch_size: int = 32,
        batch_size: int = 16,
        show_progress: bool = False,
        callback_manager: CallbackManager | None = None,
        objects: list[IndexNode] | None = None,
        object_map: dict | None = None,
        verbose: bool = False,
        **index_params: int,
    ) -> GeARRetriever:
        """Index ``nodes``, or ``documents`` (split with ``node_parser``), or the nodes of a ``docstore`` or of a
        VectorStoreIndex ``index`` (built with :class:`GeAREmbedding`, its model is reused unless one is given).

        The default ``node_parser`` is :class:`GeARPassageSplitter`: the passages ``gear demo`` cuts, which fit the
        model's ``max_document_length`` in its own word pieces. ``highlight=True`` adds a default
        :class:`GeARHighlighter`; pass one to choose its settings. ``mode="hybrid"`` merges GeAR's and BM25's
        rankings as ``fusion`` (gear_core's ``HybridFusion``: how deep, by score or rank, with what weights) says;
        scores are then the fused ones, and each node's ``gear_found_by`` metadata names the retrievers that found
        it. ``index_params`` go to gear_core's ``DocumentIndex`` (e.g. HNSW's ``m``).
        """
        sources = {"nodes": nodes, "documents": documents, "index": index, "docstore": docstore}
        given = [name for name, value in sources.items() if value is not None]
        if len(given) != 1:
            raise ValueError(f"pass exactly one of nodes=, documents=, index=, docstore= (got {given or 'none'})")
        if index is not None:
            embed_model = getattr(index, "_embed_model", None)
            if model is None and model_name is None and isinstance(embed_model, GeAREmbedding):
                model = embed_model.model
            docstore = index.docstore
        gear_model = load_model(model, model_name, device)
        if documents is not None:
            parser = node_parser or default_node_parser(gear_model)
            nodes = parser.get_nodes_from_documents(list(documents), show_progress=show_progress)
        if docstore is not None:
            nodes = list(docstore.docs.values())
            if not nodes:
                raise ValueError(
                    "the docstore holds no nodes (a vector store that keeps the text itself leaves it empty); "
                    "pass nodes= instead"
                )
        nodes = list(nodes or [])
        store = SimpleDocumentStore()
        store.add_documents(nodes, allow_update=True)
        searcher = GeARSearcher.from_documents(
            gear_model,
            [node.get_content(metadata_mode=MetadataMode(metadata_mode)) for node in nodes],
            ids=[node.node_id for node in nodes],
            index_type=index_type,
            batch_size=embed_batch_size,
            show_progress=show_progress,
            **index_params,
        )
        searcher.batch_size = batch_size
        searcher.mode = mode
        searcher.fusion = fusion or HybridFusion()
        if highlight is True:
            highlight = GeARHighlighter(model=gear_model, batch_size=batch_size)
        return cls(
            searcher,
            store,
            similarity_top_k=similarity_top_k,
            highlighter=highlight or None,
            metadata_mode=metadata_mode,
            callback_manager=callback_manager,
            objects=objects,
            object_map=object_map,
            verbose=verbose,
        )

    @property
    def model(self) -> GeARModel:
        """The GeARModel whose document vectors the index holds."""
        return self._searcher.model

    @property
    def searcher(self) -> GeARSearcher:
        """The gear_core searcher (model + document index) doing the work."""
        return self._searcher

    @property
    def docstore(self) -> BaseDocumentStore:
        """The nodes, by node id."""
        return self._docstore

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        results = self._searcher.search(query_bundle.query_str, k=self.similarity_top_k, rank_sentences=False)
        nodes = [NodeWithScore(node=self._docstore.get_node(r.id), score=r.score) for r in results]
        if self._searcher.mode == "hybrid":  # the nodes are the docstore's copies: safe to annotate
            for result, node in zip(results, nodes, strict=True):
                node.node.metadata[FOUND_BY_KEY] = list(result.found_by)
                exclude_from_prompts(node.node, [FOUND_BY_KEY])
        if self.highlighter is not None:
            nodes = self.highlighter.postprocess_nodes(nodes, query_bundle=query_bundle)
        return nodes

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # The model runs in this process: off the event loop, in a worker thread.
        return await asyncio.to_thread(self._retrieve, query_bundle)

    # ---- persistence ---------------------------------------------------------------------------------

    def persist(self, persist_dir: str | os.PathLike) -> Path:
        """Save nodes, document index and settings to ``persist_dir``, replacing a retriever saved there
        atomically. The model is not saved, only the folder it was loaded from (if any), so that
        :meth:`from_persist_dir` can find it again. Other files in ``persist_dir`` are never touched; a persist
        that fails leaves nothing of itself behind."""
        _check_reloadable(self._docstore, self.metadata_mode)
        folder = Path(persist_dir)
        folder.mkdir(parents=True, exist_ok=True)
        tag = version_tag()
        files = {"docstore": f"docstore-{tag}.json", "index": f"gear_index-{tag}"}
        with versioned_save(folder, SETTINGS_FILE, _OWN_FILES, files.values(), lambda: _saved_files(folder)):
            self._write(folder, files)
        return folder

    def _write(self, folder: Path, files: dict[str, str]) -> None:
        """The new version's ``files``, then the settings file that switches to them."""
        self._searcher.save(folder / files["index"])
        store = self._docstore
        if not isinstance(store, SimpleDocumentStore):  # e.g. a remote docstore: copy its nodes
            store = SimpleDocumentStore()
            store.add_documents(list(self._docstore.docs.values()))
        store.persist(str(folder / files["docstore"]))
        fsync_path(folder / files["docstore"])
        highlighter = None
        if self.highlighter is not None:
            highlighter = {name: getattr(self.highlighter, name) for name in _HIGHLIGHTER_SETTINGS}
        settings = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "model_name_or_path": model_label(self.model),
            # Lets from_persist_dir(dir) find the model by itself; None for a model that was never saved.
            "model_folder": saved_model_folder(self.model),
            "similarity_top_k": self.similarity_top_k,
            "metadata_mode": self.metadata_mode.value,
            "batch_size": self._searcher.batch_size,
            "mode": self._searcher.mode,
            "fusion": dataclasses.asdict(self._searcher.fusion),
            "highlighter": highlighter,
            "files": files,
            "sha256": {"docstore": sha256_file(folder / files["docstore"])},
        }
        write_atomic(folder / SETTINGS_FILE, json.dumps(settings, indent=2) + "\n")  # the switch

    @classmethod
    def from_persist_dir(
        cls,
        persist_dir: str | os.PathLike,
        model: GeARModel | None = None,
        model_name: str | os.PathLike | None = None,
        device: str | None = None,
        highlight: bool | GeARHighlighter | None = None,
        **kwargs: Any,
    ) -> GeARRetriever:
        """Load a retriever saved with :meth:`persist`, for the same model (another model raises gear_core's
        ``ModelMismatchError``). Without ``model``/``model_name`` the saved GeAR folder the retriever's model was
        loaded from is used. ``highlight=None`` restores the saved highlighter settings; ``kwargs`` override
        saved settings such as ``similarity_top_k``. A damaged or hand-changed file raises
        ``gear_core.files.CorruptFileError`` naming it; nothing is served from it."""
        folder = Path(persist_dir)
        settings = read_settings(folder)
        files = settings["files"]
        if model is None and model_name is None:
            model_name = settings["model_folder"]
            if isinstance(model_name, str) and not Path(model_name).is_absolute():
                model_name = str(folder / model_name)  # a relative folder is read from the persist folder, not the cwd
            if not is_gear_folder(model_name):
                raise FileNotFoundError(
                    f"{folder} was built with the model {settings['model_name_or_path']!r}, which is not a saved "
                    "GeAR folder on this machine: pass model= (or model_name=) the same model"
                )
        docstore_path = folder / files["docstore"]
        if not docstore_path.is_file():
            raise FileNotFoundError(f"{folder} is incomplete: {docstore_path.name} is missing")
        if "sha256" in settings and sha256_file(docstore_path) != settings["sha256"]["docstore"]:
            raise CorruptFileError(f"{docstore_path} is damaged or was changed after saving (its SHA-256 differs)")
        gear_model = load_model(model, model_name, device)
        searcher = GeARSearcher.load(
            folder / files["index"],
            gear_model,
            batch_size=settings["batch_size"],
            mode=settings.get("mode", "dense"),
            fusion=settings["fusion"],
        )
        try:
            docstore = SimpleDocumentStore.from_persist_path(str(docstore_path))
        except (ValueError, TypeError, KeyError) as error:  # JSONDecodeError is a ValueError
            raise CorruptFileError(f"{docstore_path} is not a readable LlamaIndex docstore: {error}") from error
        _check_nodes(searcher, docstore, MetadataMode(settings["metadata_mode"]), docstore_path)
        if highlight is None and settings["highlighter"] is not None:
            highlight = GeARHighlighter(model=gear_model, **settings["highlighter"])
        elif highlight is True:
            highlight = GeARHighlighter(model=gear_model, batch_size=settings["batch_size"])
        kwargs.setdefault("similarity_top_k", settings["similarity_top_k"])
        kwargs.setdefault("metadata_mode", MetadataMode(settings["metadata_mode"]))
        return cls(searcher, docstore, highlighter=highlight or None, **kwargs)


# What a settings file holds, by version 2 key: the JSON types allowed.
_SETTINGS_TYPES: dict[str, tuple[type, ...]] = {
    "model_name_or_path": (str,),
    "model_folder": (str, type(None)),
    "similarity_top_k": (int,),
    "metadata_mode": (str,),
    "batch_size": (int,),
    "highlighter": (dict, type(None)),
    "files": (dict,),
    "sha256": (dict,),
}


def read_settings(folder: Path) -> dict[str, Any]:
    """The validated ``gear_retriever.json`` of ``folder`` (version 1 files are given their fixed names)."""
    path = folder / SETTINGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a persisted GeARRetriever: {SETTINGS_FILE} is missing")
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise CorruptFileError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(settings, dict) or settings.get("format") != FORMAT_NAME:
        raise CorruptFileError(f"{path} is not a {FORMAT_NAME} settings file")
    version = settings.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{path} has format version {version!r}; this version reads {READABLE_VERSIONS}")
    if version == 1:
        settings = {**settings, "files": dict(_VERSION_1_FILES)}
    for key, kinds in _SETTINGS_TYPES.items():
        if key == "sha256" and version == 1:
            continue
        value = settings.get(key)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise CorruptFileError(f"{path}: {key!r} is missing or not {names}")
    for key in ("similarity_top_k", "batch_size"):
        if settings[key] <= 0:
            raise CorruptFileError(f"{path}: {key!r} must be positive, got {settings[key]}")
    if settings.get("mode", "dense") not in SEARCH_MODES:  # files saved before hybrid search hold no mode
        raise CorruptFileError(f"{path}: unknown mode {settings['mode']!r}; expected one of {SEARCH_MODES}")
    settings["fusion"] = _read_fusion(settings.get("fusion", _FUSION_BEFORE_SETTINGS), path)
    if settings["metadata_mode"] not in {mode.value for mode in MetadataMode}:
        raise CorruptFileError(f"{path}: unknown metadata_mode {settings['metadata_mode']!r}")
    for key in ("docstore", "index"):
        plain_file_name(settings["files"].get(key), f"{path}: files.{key}")
    if version > 1 and not isinstance(settings["sha256"].get("docstore"), str):
        raise CorruptFileError(f"{path}: sha256.docstore is missing")
    unknown = set(settings["highlighter"] or {}) - set(_HIGHLIGHTER_SETTINGS)
    if unknown:
        raise CorruptFileError(f"{path}: unknown highlighter settings {sorted(unknown)}")
    return settings


# Files saved before fusion settings were saved fused each retriever's top k by reciprocal rank (depth 1 never cuts
# below k), and those saved before fusion had a method fused by rank: each reloads with the results it was saved with.
_FUSION_BEFORE_SETTINGS = {"depth": 1, "rank_constant": 60.0, "dense_weight": 1.0}
_METHOD_BEFORE_SETTINGS = "reciprocal_rank"


def _read_fusion(saved: Any, path: Path) -> HybridFusion:
    fields = {field.name for field in dataclasses.fields(HybridFusion)}
    if isinstance(saved, dict) and set(saved) == fields - {"method"}:
        saved = {**saved, "method": _METHOD_BEFORE_SETTINGS}
    if not isinstance(saved, dict) or set(saved) != fields:
        raise CorruptFileError(f"{path}: 'fusion' must hold exactly {sorted(fields)}, got {saved!r}")
    try:
        return HybridFusion(**saved)
    except (TypeError, ValueError) as error:
        raise CorruptFileError(f"{path}: 'fusion' is not a valid HybridFusion: {error}") from error


def _check_reloadable(docstore: BaseDocumentStore, mode: MetadataMode) -> None:
    """Refuse, before anything is written, a node whose text would not come back from the docstore's JSON as it
    went in: a character written as two surrogates (a high one, then a low one) is read back as the one character
    they encode, and the load would then refuse the node as changed after saving."""
    for node in docstore.docs.values():
        match = _SURROGATE_PAIR.search(node.get_content(metadata_mode=mode))
        if match:
            raise ValueError(
                f"node {node.node_id}'s text holds a character written as two surrogates ({match[0]!r}), which the "
                "docstore's JSON would read back as one character; join them first: "
                "text.encode('utf-16', 'surrogatepass').decode('utf-16')"
            )


def _saved_files(folder: Path) -> list[str]:
    """The files the retriever persisted in ``folder`` uses (what its settings name)."""
    files = read_settings(folder)["files"]
    return [files["docstore"], files["index"]]


def _check_nodes(searcher: GeARSearcher, docstore: BaseDocumentStore, mode: MetadataMode, path: Path) -> None:
    """Every indexed node is in the docstore with the text its vector was made from (the index keeps that
    text): a node edited after indexing would be served with a stale vector and wrong highlights."""
    index = searcher.index
    missing = [node_id for node_id in index.ids if not docstore.document_exists(node_id)]
    if missing:
        raise CorruptFileError(f"{path}: {len(missing)} indexed node(s) are missing, e.g. {missing[0]}")
    for node_id in index.ids:
        if docstore.get_node(node_id).get_content(metadata_mode=mode) != index.get_text(node_id):
            raise CorruptFileError(
                f"{path}: node {node_id}'s text differs from the text its vector was made from; the docstore was "
                "changed after saving (rebuild the retriever from the changed nodes)"
            )


def default_node_parser(model: GeARModel) -> GeARPassageSplitter:
    """The passages ``gear demo`` indexes: :class:`GeARPassageSplitter` (chunks that fit the model's document
    window, counted in its own word pieces, cut between sentences and preferably between paragraphs)."""
    if model.tokenizer is None:
        raise ValueError("this GeARModel has no tokenizer; load it with GeARModel.from_pretrained()")
    return GeARPassageSplitter(model=model)
