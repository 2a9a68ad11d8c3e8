"""GeAREmbedding: query vs. document encoder, batching, async, VectorStoreIndex (default store and FAISS)."""

from __future__ import annotations

import asyncio
import time

import faiss
import numpy as np
import pytest
import torch
from conftest import ticks_while
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.schema import TextNode

from llama_index_gear import GeAREmbedding, GeARHighlighter, GeARRetriever
from llama_index_gear._model import clear_model_cache

TEXTS = [
    "Paris is the capital of France. The Seine flows through Paris.",
    "Jupiter is the largest planet. It has dozens of moons.",
    "Hamlet is a tragedy by Shakespeare. It is set in Denmark.",
    "Water boils at 100 degrees. Ice floats on water.",
    "The Amazon is the largest rainforest on Earth.",
]
QUERY = "What is the capital of France?"


def test_query_and_document_encoders(tiny_model):
    # from_encoder starts both encoders from the same weights: make them differ, as training does.
    torch.manual_seed(1)
    with torch.no_grad():
        tiny_model.document_encoder.embeddings.word_embeddings.weight.add_(
            torch.randn_like(tiny_model.document_encoder.embeddings.word_embeddings.weight)
        )
    embed = GeAREmbedding(model=tiny_model, embed_batch_size=2)
    query = embed.get_query_embedding(QUERY)
    assert len(query) == embed.dimension == tiny_model.config.hidden_size
    np.testing.assert_allclose(query, tiny_model.encode_queries([QUERY])[0], atol=1e-6)
    np.testing.assert_allclose(embed.get_text_embedding(TEXTS[0]), tiny_model.encode_documents(TEXTS[:1])[0], atol=1e-6)
    assert not np.allclose(embed.get_text_embedding(QUERY), query, atol=1e-4)


def test_batches_follow_embed_batch_size(tiny_model, monkeypatch):
    calls = []
    encode = tiny_model.encode_documents

    def spy(texts, batch_size=32, show_progress=False):
        calls.append((len(texts), batch_size))
        return encode(texts, batch_size=batch_size)

    monkeypatch.setattr(tiny_model, "encode_documents", spy)
    embed = GeAREmbedding(model=tiny_model, embed_batch_size=2)
    vectors = embed.get_text_embedding_batch(TEXTS)
    assert calls == [(2, 2), (2, 2), (1, 2)]
    np.testing.assert_allclose(vectors, encode(TEXTS), atol=1e-6)


def test_async_matches_sync(tiny_model):
    embed = GeAREmbedding(model=tiny_model)

    async def run():
        return await embed.aget_query_embedding(QUERY), await embed.aget_text_embedding_batch(TEXTS)

    query, texts = asyncio.run(run())
    np.testing.assert_allclose(query, embed.get_query_embedding(QUERY), atol=1e-6)
    np.testing.assert_allclose(texts, embed.get_text_embedding_batch(TEXTS), atol=1e-6)


def test_async_does_not_block_the_event_loop(tiny_model, monkeypatch):
    encode = tiny_model.encode_queries

    def slow_encode(*args, **kwargs):
        time.sleep(0.3)  # stands in for a long forward pass
        return encode(*args, **kwargs)

    monkeypatch.setattr(tiny_model, "encode_queries", slow_encode)
    assert ticks_while(GeAREmbedding(model=tiny_model).aget_query_embedding(QUERY)) >= 5


def test_model_is_not_serialised(tiny_model):
    embed = GeAREmbedding(model=tiny_model)
    data = embed.to_dict()
    assert data["class_name"] == "GeAREmbedding" and "_model" not in data and "model" not in data
    assert data["model_name"] == tiny_model.config.encoder_name_or_path
    embed.to_json()  # no tensors inside


@pytest.mark.parametrize("store", ["default", "faiss"])
def test_inside_a_vector_store_index(tiny_model, store):
    embed = GeAREmbedding(model=tiny_model)
    nodes = [TextNode(text=text, id_=str(i)) for i, text in enumerate(TEXTS)]
    storage = None
    if store == "faiss":
        faiss_store = pytest.importorskip("llama_index.vector_stores.faiss", reason="the faiss-store extra is missing")
        vector_store = faiss_store.FaissVectorStore(faiss_index=faiss.IndexFlatIP(tiny_model.config.hidden_size))
        storage = StorageContext.from_defaults(vector_store=vector_store)
    index = VectorStoreIndex(nodes, embed_model=embed, storage_context=storage)
    results = index.as_retriever(similarity_top_k=3).retrieve(QUERY)
    expected = tiny_model.encode_documents(TEXTS) @ tiny_model.encode_queries([QUERY])[0]
    order = np.argsort(-expected)[:3]
    assert [r.node.node_id for r in results] == [str(i) for i in order]
    assert [r.score for r in results] == pytest.approx(expected[order].tolist(), abs=1e-5)
    # A GeARRetriever over the same index reuses its nodes and model, and agrees.
    ours = GeARRetriever.from_defaults(index=index, similarity_top_k=3, mode="dense").retrieve(QUERY)
    assert [r.node.node_id for r in ours] == [r.node.node_id for r in results]
    assert [r.score for r in ours] == pytest.approx([r.score for r in results], abs=1e-5)


def test_loads_a_saved_model_folder_once(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path / "gear")
    try:
        embed = GeAREmbedding(model_name=tmp_path / "gear")
        highlighter = GeARHighlighter(model_name=str(tmp_path / "gear"))
        assert embed.model is highlighter.model, "one copy of the weights, shared"
        np.testing.assert_allclose(embed.get_query_embedding(QUERY), tiny_model.encode_queries([QUERY])[0], atol=1e-5)
    finally:
        clear_model_cache()


def test_clear_error_when_the_default_model_is_missing(tmp_path, monkeypatch):
    missing = str(tmp_path / "checkpoints" / "gear-minilm")
    monkeypatch.setattr("gear_core.DEFAULT_MODEL", missing)
    for make in (GeAREmbedding, GeARHighlighter):
        with pytest.raises(FileNotFoundError, match="model_name=") as error:
            make()
        assert missing in str(error.value) and "model=" in str(error.value)


def test_a_serialised_embedding_reloads_the_same_model(tiny_model, tmp_path):
    """to_json / from_json keeps the folder, not the weights: the reloaded embedding gives the same vectors."""
    tiny_model.save_pretrained(tmp_path / "gear")
    try:
        embed = GeAREmbedding(model_name=tmp_path / "gear", embed_batch_size=7)
        data = embed.to_json()
        clear_model_cache()  # the reload reads the folder again
        reloaded = GeAREmbedding.from_json(data)
        assert reloaded.model is not embed.model and reloaded.embed_batch_size == 7
        np.testing.assert_array_equal(reloaded.get_query_embedding(QUERY), embed.get_query_embedding(QUERY))
        np.testing.assert_array_equal(reloaded.get_text_embedding(TEXTS[0]), embed.get_text_embedding(TEXTS[0]))
    finally:
        clear_model_cache()
