"""GeARRetriever: building from nodes / documents / a VectorStoreIndex, persistence, async, query engines."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import pytest
import torch
from conftest import ticks_while
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode

from gear_core import GeARModel
from gear_core.files import CorruptFileError
from gear_core.retrieval import HybridFusion, ModelMismatchError
from llama_index_gear import HIGHLIGHTS_KEY, GeAREmbedding, GeARHighlighter, GeARRetriever
from llama_index_gear._model import clear_model_cache
from llama_index_gear.retriever import SETTINGS_FILE

TEXTS = {
    "paris": "Paris is the capital of France. The Seine flows through Paris. Paris hosted the Olympics in 1900.",
    "jupiter": "Jupiter is the largest planet. It has dozens of moons. Jupiter is a gas giant.",
    "hamlet": "Hamlet is a tragedy by Shakespeare. It is set in Denmark. Hamlet was written around 1600.",
    "water": "Water boils at 100 degrees. Water freezes at 0 degrees. Ice floats on water.",
}
QUERY = "Which city is the capital of France?"


def documents() -> list[Document]:
    # Long enough that the tiny model's 48-token window splits each document into several nodes.
    return [Document(text=" ".join([text] * 3), doc_id=key, metadata={"topic": key}) for key, text in TEXTS.items()]


def nodes() -> list[TextNode]:
    return [TextNode(text=text, id_=key) for key, text in TEXTS.items()]


def as_tuples(results: list[NodeWithScore]) -> list[tuple]:
    return [(r.node.node_id, r.node.get_content(), round(r.score, 6), r.node.metadata) for r in results]


def test_from_nodes_returns_the_nodes_with_scores(tiny_model):
    given = nodes()
    retriever = GeARRetriever.from_defaults(nodes=given, model=tiny_model, similarity_top_k=3, mode="dense")
    results = retriever.retrieve(QUERY)
    assert len(results) == 3
    by_id = {n.node_id: n for n in given}
    for result in results:
        assert isinstance(result.node, TextNode)
        assert result.node.text == by_id[result.node.node_id].text
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    expected = (
        tiny_model.encode_documents([by_id[r.node.node_id].text for r in results])
        @ tiny_model.encode_queries([QUERY]).T
    )
    assert scores == pytest.approx(expected[:, 0].tolist(), abs=1e-5)
    assert retriever.model is tiny_model and len(retriever.docstore.docs) == 4


def test_from_documents_splits_to_the_model_window(tiny_model):
    docs = documents()
    retriever = GeARRetriever.from_defaults(documents=docs, model=tiny_model, similarity_top_k=2)
    stored = list(retriever.docstore.docs.values())
    assert len(stored) > len(docs)
    texts = {d.doc_id: d.text for d in docs}
    for node in stored:
        assert texts[node.ref_doc_id][node.start_char_idx : node.end_char_idx] == node.text
        assert len(tiny_model.tokenizer.tokenize(node.text)) <= tiny_model.config.max_document_length - 2
    # Plain content by default: metadata is not embedded.
    assert retriever.searcher.index.get_text(stored[0].node_id) == stored[0].text
    embed_mode = GeARRetriever.from_defaults(nodes=stored, model=tiny_model, metadata_mode=MetadataMode.EMBED)
    assert embed_mode.searcher.index.get_text(stored[0].node_id).startswith("topic: ")


def test_exactly_one_source(tiny_model):
    with pytest.raises(ValueError, match="exactly one"):
        GeARRetriever.from_defaults(model=tiny_model)
    with pytest.raises(ValueError, match="exactly one"):
        GeARRetriever.from_defaults(nodes=nodes(), documents=documents(), model=tiny_model)


def test_from_a_vector_store_index_built_with_gear_embedding(tiny_model):
    index = VectorStoreIndex(nodes(), embed_model=GeAREmbedding(model=tiny_model))
    retriever = GeARRetriever.from_defaults(index=index, similarity_top_k=4, mode="dense")  # cosine, as theirs
    assert retriever.model is tiny_model, "the index's GeAR model is reused"
    ours = retriever.retrieve(QUERY)
    theirs = index.as_retriever(similarity_top_k=4).retrieve(QUERY)
    assert [r.node.node_id for r in ours] == [r.node.node_id for r in theirs]
    assert [r.score for r in ours] == pytest.approx([r.score for r in theirs], abs=1e-5)


def test_persist_round_trip(tiny_model, tmp_path):
    highlighter = GeARHighlighter(model=tiny_model, top_n=2, mode="prune", neighbors=1)
    retriever = GeARRetriever.from_defaults(
        documents=documents(), model=tiny_model, similarity_top_k=3, highlight=highlighter
    )
    before = retriever.retrieve(QUERY)
    retriever.persist(tmp_path / "retriever")
    retriever.persist(tmp_path / "retriever")  # over itself: the first save's files go
    settings = json.loads((tmp_path / "retriever" / SETTINGS_FILE).read_text())
    assert {p.name for p in (tmp_path / "retriever").iterdir()} == {SETTINGS_FILE, *settings["files"].values()}
    assert settings["similarity_top_k"] == 3 and settings["highlighter"]["mode"] == "prune"

    loaded = GeARRetriever.from_persist_dir(tmp_path / "retriever", model=tiny_model)
    assert loaded.similarity_top_k == 3 and loaded.highlighter.neighbors == 1
    assert as_tuples(loaded.retrieve(QUERY)) == as_tuples(before)
    assert before[0].node.metadata[HIGHLIGHTS_KEY]
    plain = GeARRetriever.from_persist_dir(
        tmp_path / "retriever", model=tiny_model, highlight=False, similarity_top_k=5
    )
    assert plain.highlighter is None and len(plain.retrieve(QUERY)) == 5


def test_a_retriever_with_sentence_vectors_reloads_identical_results(tiny_model, tmp_path):
    """A model that scores documents by their best sentence: the retriever keeps sentence vectors, and in both modes
    its results reload identically."""
    tiny_model.config.retrieval_sentence_weight = 1.0
    retriever = GeARRetriever.from_defaults(documents=documents(), model=tiny_model, similarity_top_k=3)
    index = retriever.searcher.index
    assert index.has_sentences and index.num_sentences > len(index)
    retriever.persist(tmp_path / "retriever")
    loaded = GeARRetriever.from_persist_dir(tmp_path / "retriever", model=tiny_model)
    assert loaded.searcher.index.num_sentences == index.num_sentences
    for mode in ("hybrid", "dense"):
        retriever.searcher.mode = loaded.searcher.mode = mode
        assert as_tuples(loaded.retrieve(QUERY)) == as_tuples(retriever.retrieve(QUERY))


def test_persisted_index_refuses_another_model(tiny_model, tiny_encoder_dir, tmp_path):
    GeARRetriever.from_defaults(nodes=nodes(), model=tiny_model).persist(tmp_path / "retriever")
    other = GeARModel.from_encoder(tiny_encoder_dir, decoder_num_layers=1, ranking_layer=-1, max_document_length=48)
    with torch.no_grad():
        other.query_encoder.embeddings.word_embeddings.weight[1000] += 1.0
    with pytest.raises(ModelMismatchError):
        GeARRetriever.from_persist_dir(tmp_path / "retriever", model=other)
    with pytest.raises(FileNotFoundError, match=SETTINGS_FILE):
        GeARRetriever.from_persist_dir(tmp_path / "nowhere", model=tiny_model)


def test_from_persist_dir_alone_finds_the_saved_model(tiny_model, tmp_path, monkeypatch):
    tiny_model.save_pretrained(tmp_path / "gear")
    try:
        saved = GeARModel.from_pretrained(tmp_path / "gear")
        retriever = GeARRetriever.from_defaults(documents=documents(), model=saved, similarity_top_k=3, highlight=True)
        before = retriever.retrieve(QUERY)
        retriever.persist(tmp_path / "retriever")
        loaded = GeARRetriever.from_persist_dir(tmp_path / "retriever")
        assert as_tuples(loaded.retrieve(QUERY)) == as_tuples(before)
        # A hand-edited relative model folder is read from the persist folder, whatever the working directory.
        settings_path = tmp_path / "retriever" / SETTINGS_FILE
        settings = json.loads(settings_path.read_text())
        settings["model_folder"] = "../gear"
        settings_path.write_text(json.dumps(settings))
        clear_model_cache()
        elsewhere = tmp_path / "a" / "b"  # where "../gear" names no folder
        elsewhere.mkdir(parents=True)
        monkeypatch.chdir(elsewhere)
        assert as_tuples(GeARRetriever.from_persist_dir(tmp_path / "retriever").retrieve(QUERY)) == as_tuples(before)
        # A model that was never saved cannot be found again: the error says what to pass.
        GeARRetriever.from_defaults(nodes=nodes(), model=tiny_model).persist(tmp_path / "unsaved")
        with pytest.raises(FileNotFoundError, match="pass model="):
            GeARRetriever.from_persist_dir(tmp_path / "unsaved")
    finally:
        clear_model_cache()


def test_aretrieve_matches_retrieve(tiny_model):
    retriever = GeARRetriever.from_defaults(nodes=nodes(), model=tiny_model, similarity_top_k=3, highlight=True)
    assert as_tuples(asyncio.run(retriever.aretrieve(QUERY))) == as_tuples(retriever.retrieve(QUERY))


def test_aretrieve_does_not_block_the_event_loop(tiny_model, monkeypatch):
    retriever = GeARRetriever.from_defaults(nodes=nodes(), model=tiny_model)
    search = retriever.searcher.search

    def slow_search(*args, **kwargs):
        time.sleep(0.3)  # stands in for a long query encoding
        return search(*args, **kwargs)

    monkeypatch.setattr(retriever.searcher, "search", slow_search)
    assert ticks_while(retriever.aretrieve(QUERY)) >= 5


def check_sources(sources: list[NodeWithScore], docs: list[Document]) -> None:
    texts = {d.doc_id: d.text for d in docs}
    assert sources
    for source in sources:
        highlights = source.node.metadata[HIGHLIGHTS_KEY]
        assert highlights
        for h in highlights:
            assert source.node.get_content()[h["start_char_idx"] : h["end_char_idx"]] == h["text"]
            assert texts[source.node.ref_doc_id][h["doc_start_char_idx"] : h["doc_end_char_idx"]] == h["text"]


def test_query_engine_with_mock_llm(tiny_model):
    docs = documents()
    retriever = GeARRetriever.from_defaults(documents=docs, model=tiny_model, similarity_top_k=3)
    engine = RetrieverQueryEngine.from_args(
        retriever, llm=MockLLM(), node_postprocessors=[GeARHighlighter(model=tiny_model, top_n=2)]
    )
    response = engine.query(QUERY)
    check_sources(response.source_nodes, docs)
    assert len(response.source_nodes) == 3
    assert HIGHLIGHTS_KEY not in str(response), "MockLLM echoes the prompt: the highlights stayed out of it"

    # The same with inline highlighting, through the async path.
    inline = GeARRetriever.from_defaults(documents=docs, model=tiny_model, highlight=GeARHighlighter(model=tiny_model))
    check_sources(asyncio.run(RetrieverQueryEngine.from_args(inline, llm=MockLLM()).aquery(QUERY)).source_nodes, docs)


@pytest.mark.slow
def test_minilm_retrieves_the_right_node_and_agrees_with_vector_index(minilm_path):
    model = GeARModel.from_encoder(minilm_path, shared_encoder=True, decoder_num_layers=1, max_document_length=128)
    docs = [Document(text=text, doc_id=key) for key, text in TEXTS.items()]
    retriever = GeARRetriever.from_defaults(
        documents=docs, model=model, similarity_top_k=2, highlight=True, mode="dense"
    )
    queries = {"paris": QUERY, "jupiter": "largest planet moons", "water": "temperature at which water boils"}
    for key, query in queries.items():
        results = retriever.retrieve(query)
        assert results[0].node.ref_doc_id == key
        check_sources(results, docs)
    index = VectorStoreIndex.from_documents(
        docs, embed_model=GeAREmbedding(model=model), storage_context=StorageContext.from_defaults()
    )
    theirs = index.as_retriever(similarity_top_k=2).retrieve(QUERY)
    assert theirs[0].node.ref_doc_id == "paris"
    assert theirs[0].score == pytest.approx(retriever.retrieve(QUERY)[0].score, abs=1e-4)


def persisted(tiny_model, folder) -> tuple[dict, object]:
    GeARRetriever.from_defaults(nodes=nodes(), model=tiny_model).persist(folder)
    return json.loads((folder / SETTINGS_FILE).read_text()), folder / SETTINGS_FILE


def test_a_changed_docstore_is_refused(tiny_model, tmp_path):
    """One changed letter of a node's text was served and highlighted against the old text's vector."""
    folder = tmp_path / "retriever"
    settings, settings_path = persisted(tiny_model, folder)
    docstore = folder / settings["files"]["docstore"]
    original = docstore.read_text()
    changed = original.replace("Seine", "Seina", 1)
    assert changed != original
    docstore.write_text(changed)
    with pytest.raises(CorruptFileError, match=r"docstore-\w+\.json is damaged or was changed"):
        GeARRetriever.from_persist_dir(folder, model=tiny_model)
    # Even with a matching checksum (edited by hand), the text no longer matches what was embedded.
    settings["sha256"]["docstore"] = hashlib.sha256(changed.encode()).hexdigest()
    settings_path.write_text(json.dumps(settings))
    with pytest.raises(CorruptFileError, match="differs from the text its vector was made from"):
        GeARRetriever.from_persist_dir(folder, model=tiny_model)
    # A truncated docstore (checksum fixed up too) is a clear error, not a bare JSONDecodeError.
    docstore.write_text(original[:100])
    settings["sha256"]["docstore"] = hashlib.sha256(original[:100].encode()).hexdigest()
    settings_path.write_text(json.dumps(settings))
    with pytest.raises(CorruptFileError, match="not a readable LlamaIndex docstore"):
        GeARRetriever.from_persist_dir(folder, model=tiny_model)


def test_missing_nodes_and_malformed_settings_are_refused(tiny_model, tmp_path):
    folder = tmp_path / "retriever"
    settings, settings_path = persisted(tiny_model, folder)
    good = settings_path.read_text()
    cases = {
        good[:50]: "is not valid JSON",
        "[]": "is not a gear-llamaindex-retriever settings file",
        good.replace('"format_version": 2', '"format_version": 7'): "format version 7",
        good.replace('"similarity_top_k": 2', '"similarity_top_k": "2"'): "'similarity_top_k' is missing or not int",
        good.replace('"similarity_top_k": 2', '"similarity_top_k": 0'): "must be positive",
        good.replace('"batch_size": 16', '"batch_size": true'): "'batch_size' is missing or not int",
        good.replace('"metadata_mode": "none"', '"metadata_mode": "most"'): "unknown metadata_mode",
        good.replace(settings["files"]["index"], "../elsewhere"): "not a file name inside the folder",
    }
    for text, message in cases.items():
        assert text != good, message
        settings_path.write_text(text)
        with pytest.raises(ValueError, match=message):
            GeARRetriever.from_persist_dir(folder, model=tiny_model)
    for fusion, message in (
        ({**settings["fusion"], "depth": 0}, "'fusion' is not a valid HybridFusion: depth must be a positive int"),
        ({**settings["fusion"], "dense_weight": "2"}, "'fusion' is not a valid HybridFusion"),
        ({**settings["fusion"], "method": "borda"}, "'fusion' is not a valid HybridFusion: method must be one of"),
        ({"depth": 5}, "'fusion' must hold exactly"),
        ("deep", "'fusion' must hold exactly"),
    ):
        settings_path.write_text(json.dumps({**settings, "fusion": fusion}))
        with pytest.raises(CorruptFileError, match=message):
            GeARRetriever.from_persist_dir(folder, model=tiny_model)
    settings_path.write_text(good)

    # Nodes that the index holds but the docstore lost.
    from llama_index.core.storage.docstore import SimpleDocumentStore

    docstore_path = folder / settings["files"]["docstore"]
    store = SimpleDocumentStore.from_persist_path(str(docstore_path))
    store.delete_document(nodes()[1].node_id)
    store.persist(str(docstore_path))
    settings["sha256"]["docstore"] = hashlib.sha256(docstore_path.read_bytes()).hexdigest()
    settings_path.write_text(json.dumps(settings))
    with pytest.raises(CorruptFileError, match="1 indexed node"):
        GeARRetriever.from_persist_dir(folder, model=tiny_model)
    (folder / settings["files"]["docstore"]).unlink()
    with pytest.raises(FileNotFoundError, match="is missing"):
        GeARRetriever.from_persist_dir(folder, model=tiny_model)


def test_a_version_1_retriever_loads_and_a_persist_leaves_other_files_alone(tiny_model, tmp_path):
    """Version 1 saved docstore.json and gear_index/ in place. Such a folder loads; persisting over it removes
    them; a docstore.json that no settings file names (e.g. a LlamaIndex StorageContext's) is never touched."""
    folder = tmp_path / "retriever"
    settings, settings_path = persisted(tiny_model, folder)
    before = as_tuples(GeARRetriever.from_persist_dir(folder, model=tiny_model).retrieve(QUERY))
    (folder / settings["files"]["docstore"]).rename(folder / "docstore.json")
    (folder / settings["files"]["index"]).rename(folder / "gear_index")
    settings["format_version"] = 1
    del settings["files"], settings["sha256"]
    settings_path.write_text(json.dumps(settings))
    retriever = GeARRetriever.from_persist_dir(folder, model=tiny_model)
    assert as_tuples(retriever.retrieve(QUERY)) == before
    retriever.persist(folder)
    files = json.loads(settings_path.read_text())["files"]
    assert {p.name for p in folder.iterdir()} == {SETTINGS_FILE, *files.values()}

    other = tmp_path / "shared"
    other.mkdir()
    (other / "docstore.json").write_text("{}")  # someone else's
    retriever.persist(other)
    retriever.persist(other)
    assert (other / "docstore.json").read_text() == "{}"
    assert as_tuples(GeARRetriever.from_persist_dir(other, model=tiny_model).retrieve(QUERY)) == before


def test_persist_removes_only_its_own_files(tiny_model, tmp_path):
    """persist removed a user's docstore-archive.json and folder gear_index-mine/; a settings file edited to
    ``"files": {"index": "*"}`` was accepted and the next persist deleted every file and folder beside it."""
    folder = tmp_path / "retriever"
    theirs = {
        "docstore-archive.json": "{}",
        "gear_index-mine/notes.txt": "mine",
        "my_project/main.py": "print()",
        "my_notes.txt": "notes",
        "model_backup.safetensors": "weights",
        "draft.tmp": "a draft",
    }
    for name, text in theirs.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)

    def check_theirs() -> None:
        assert {name: (folder / name).read_text() for name in theirs} == theirs

    retriever = GeARRetriever.from_defaults(nodes=nodes(), model=tiny_model)
    retriever.persist(folder)
    retriever.persist(folder)  # over itself: the first persist's files go, nothing else
    files = json.loads((folder / SETTINGS_FILE).read_text())["files"]
    top = {name.split("/")[0] for name in theirs}
    assert {p.name for p in folder.iterdir()} == {*top, SETTINGS_FILE, *files.values()}
    check_theirs()
    for key, name in (("index", "*"), ("docstore", "my_notes.txt"), ("index", "my_project")):
        settings = json.loads((folder / SETTINGS_FILE).read_text())
        settings["files"][key] = name
        (folder / SETTINGS_FILE).write_text(json.dumps(settings))
        with pytest.warns(UserWarning, match="leaves the files it names in place"):
            retriever.persist(folder)
        check_theirs()
    assert as_tuples(GeARRetriever.from_persist_dir(folder, model=tiny_model).retrieve(QUERY)) == as_tuples(
        retriever.retrieve(QUERY)
    )


def test_persist_saves_lone_surrogates_and_a_failed_persist_leaves_nothing(tiny_model, tmp_path, monkeypatch):
    """A node whose text holds a lone surrogate was indexed and retrieved, but persist raised UnicodeEncodeError
    and left a half-written gear_index-<tag>/ behind."""
    from llama_index.core.storage.docstore import SimpleDocumentStore

    odd = [TextNode(text="Caf\udce9 au lait in Paris. The Seine flows.", id_="odd"), *nodes()]
    retriever = GeARRetriever.from_defaults(nodes=odd, model=tiny_model)
    folder = tmp_path / "retriever"
    retriever.persist(folder)
    loaded = GeARRetriever.from_persist_dir(folder, model=tiny_model)
    assert loaded.docstore.get_node("odd").get_content() == odd[0].text
    assert as_tuples(loaded.retrieve(QUERY)) == as_tuples(retriever.retrieve(QUERY))

    before = {p.name for p in folder.iterdir()}

    def fail(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(SimpleDocumentStore, "persist", fail)  # after the index is saved
    with pytest.raises(OSError, match="disk full"):
        retriever.persist(folder)
    monkeypatch.undo()
    assert {p.name for p in folder.iterdir()} == before
    assert (
        GeARRetriever.from_persist_dir(folder, model=tiny_model).docstore.get_node("odd").get_content() == odd[0].text
    )

    # A character written as two surrogates: JSON reads it back joined, and the load refused the docstore as
    # changed. Refused at persist instead, before anything is written.
    split = GeARRetriever.from_defaults(nodes=[TextNode(text="Smile \ud83d\ude00 here.", id_="pair")], model=tiny_model)
    with pytest.raises(ValueError, match=r"node pair's text holds a character written as two surrogates"):
        split.persist(folder)
    assert {p.name for p in folder.iterdir()} == before


def test_from_defaults_with_a_docstore_and_its_refusals(tiny_model):
    from llama_index.core.storage.docstore import SimpleDocumentStore

    store = SimpleDocumentStore()
    store.add_documents(nodes())
    retriever = GeARRetriever.from_defaults(docstore=store, model=tiny_model, similarity_top_k=2)
    expected = GeARRetriever.from_defaults(nodes=nodes(), model=tiny_model, similarity_top_k=2)
    assert as_tuples(retriever.retrieve(QUERY)) == as_tuples(expected.retrieve(QUERY))
    with pytest.raises(ValueError, match="the docstore holds no nodes"):
        GeARRetriever.from_defaults(docstore=SimpleDocumentStore(), model=tiny_model)
    with pytest.raises(ValueError, match=r"pass exactly one of .*\['nodes', 'docstore'\]"):
        GeARRetriever.from_defaults(nodes=nodes(), docstore=store, model=tiny_model)
    with pytest.raises(ValueError, match="got none"):
        GeARRetriever.from_defaults(model=tiny_model)


def test_hybrid_with_bm25_through_query_fusion(tiny_model):
    """The documented hybrid recipe: LlamaIndex's QueryFusionRetriever merges GeAR and BM25 by reciprocal rank
    (gear_core's benchmark measures the same merge), and the highlighter still annotates what it returns."""
    bm25 = pytest.importorskip("llama_index.retrievers.bm25", reason="llama-index-retrievers-bm25 is not installed")
    from llama_index.core.retrievers import QueryFusionRetriever

    from gear_core.retrieval import reciprocal_rank_fusion

    given = nodes()
    gear = GeARRetriever.from_defaults(nodes=given, model=tiny_model, similarity_top_k=2, mode="dense")
    lexical = bm25.BM25Retriever.from_defaults(nodes=given, similarity_top_k=2)
    hybrid = QueryFusionRetriever(
        [gear, lexical], mode="reciprocal_rerank", num_queries=1, use_async=False, llm=MockLLM(), similarity_top_k=3
    )
    query = "At what degrees does water freeze?"
    gear_ids = [r.node.node_id for r in gear.retrieve(query)]
    bm25_ids = [r.node.node_id for r in lexical.retrieve(query)]
    results = hybrid.retrieve(query)
    assert [r.node.node_id for r in results] == [id_ for id_, _ in reciprocal_rank_fusion([gear_ids, bm25_ids])[:3]]
    assert "water" in [r.node.node_id for r in results]  # BM25's first, whatever the tiny model ranks
    engine = RetrieverQueryEngine.from_args(
        hybrid, llm=MockLLM(), node_postprocessors=[GeARHighlighter(model=tiny_model)]
    )
    assert all(s.node.metadata[HIGHLIGHTS_KEY] for s in engine.query(query).source_nodes)


def test_hybrid_mode_fuses_bm25_says_who_found_each_node_and_persists(tiny_model, tmp_path):
    """mode="hybrid": GeAR's and BM25's nodes merged inside the retriever (the recipe above, by score,
    without assembling it); each node names its retrievers, kept out of prompts and embeddings; persisted."""
    from llama_index_gear import FOUND_BY_KEY

    given = nodes()
    hybrid = GeARRetriever.from_defaults(nodes=given, model=tiny_model, similarity_top_k=2)  # the default
    depth = hybrid.searcher.fusion.candidates(2)  # how deep each retriever's ranking is fused
    dense = GeARRetriever.from_defaults(nodes=given, model=tiny_model, similarity_top_k=depth, mode="dense")
    query = "At what degrees does water freeze?"
    results = hybrid.retrieve(query)
    assert len(results) == 2 and "water" in [r.node.node_id for r in results]  # BM25 finds it, whatever GeAR ranks
    dense_ids = [r.node.node_id for r in dense.retrieve(query)]
    for r in results:
        found = r.node.metadata[FOUND_BY_KEY]
        assert ("dense" in found) == (r.node.node_id in dense_ids) and set(found) <= {"dense", "bm25"}
        assert FOUND_BY_KEY not in r.node.get_content(metadata_mode=MetadataMode.LLM)
        assert FOUND_BY_KEY not in r.node.get_content(metadata_mode=MetadataMode.EMBED)
    assert FOUND_BY_KEY not in hybrid.docstore.get_node("water").metadata  # the stored node is left as it was
    assert all(FOUND_BY_KEY not in r.node.metadata for r in dense.retrieve(query))
    with pytest.raises(ValueError, match="mode must be one of"):
        GeARRetriever.from_defaults(nodes=given, model=tiny_model, mode="sparse")

    hybrid.persist(tmp_path / "hybrid")
    loaded = GeARRetriever.from_persist_dir(tmp_path / "hybrid", model=tiny_model)
    assert loaded.searcher.mode == "hybrid" and loaded.searcher.fusion == HybridFusion()
    assert as_tuples(loaded.retrieve(query)) == as_tuples(results)

    # Fusion settings persist; a file saved before they were fused each retriever's top k by reciprocal rank, and
    # still does; one saved before fusion had a method fused by rank, and still does.
    shallow = HybridFusion(depth=1, rank_constant=10.0, dense_weight=2.0, method="reciprocal_rank")
    GeARRetriever.from_defaults(nodes=given, model=tiny_model, similarity_top_k=2, fusion=shallow).persist(
        tmp_path / "shallow"
    )
    loaded = GeARRetriever.from_persist_dir(tmp_path / "shallow", model=tiny_model)
    assert loaded.searcher.fusion == shallow
    settings_path = tmp_path / "shallow" / SETTINGS_FILE
    settings = json.loads(settings_path.read_text())
    settings["fusion"] = {"depth": 20, "rank_constant": 10.0, "dense_weight": 1.0}
    settings_path.write_text(json.dumps(settings))
    assert GeARRetriever.from_persist_dir(tmp_path / "shallow", model=tiny_model).searcher.fusion == HybridFusion(
        depth=20, rank_constant=10.0, dense_weight=1.0, method="reciprocal_rank"
    )
    del settings["fusion"]
    settings_path.write_text(json.dumps(settings))
    assert GeARRetriever.from_persist_dir(tmp_path / "shallow", model=tiny_model).searcher.fusion == HybridFusion(
        depth=1, rank_constant=60.0, dense_weight=1.0, method="reciprocal_rank"
    )
