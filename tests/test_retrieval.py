"""DocumentIndex (FAISS flat / HNSW / IVF, persistence, validation) and GeARSearcher end to end with a tiny model."""

from __future__ import annotations

import hashlib
import itertools
import json
import os

import faiss
import numpy as np
import pytest
import torch
from conftest import stub_evidence, tiny_gear

from gear_core import split_sentences
from gear_core.evidence import GroundedEvidence
from gear_core.files import CorruptFileError
from gear_core.retrieval import (
    DocumentIndex,
    GeARSearcher,
    Hit,
    ModelMismatchError,
    SearchResult,
    document_scores,
    model_identity,
    reciprocal_rank_fusion,
    same_model,
    z_score_fusion,
)

DIM = 32


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def filled_index(n: int = 200, index_type: str = "flat", seed: int = 0, **params: int) -> DocumentIndex:
    index = DocumentIndex(DIM, index_type, model="test-model@0123456789abcdef", **params)
    index.add(unit_vectors(n, seed=seed), [f"doc-{i}" for i in range(n)], [f"text {i}" for i in range(n)])
    return index


def hit_tuples(results: list[list[Hit]]) -> list[list[tuple[str, str, float, int]]]:
    return [[(h.id, h.text, h.score, h.rank) for h in row] for row in results]


# ---- search ----------------------------------------------------------------------------------------------


def test_flat_search_equals_brute_force():
    documents, queries = unit_vectors(300), unit_vectors(12, seed=1)
    index = DocumentIndex(DIM)
    index.add(documents, [f"d{i}" for i in range(300)], [f"t{i}" for i in range(300)])
    results = index.search(queries, k=10)
    similarities = queries @ documents.T
    expected = np.argsort(-similarities, axis=1)[:, :10]
    for q, row in enumerate(results):
        assert [h.id for h in row] == [f"d{i}" for i in expected[q]]
        assert [h.text for h in row] == [f"t{i}" for i in expected[q]]
        assert [h.rank for h in row] == list(range(1, 11))
        np.testing.assert_allclose([h.score for h in row], similarities[q, expected[q]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("index_type", "params", "faiss_class"),
    [
        ("hnsw", {"m": 16, "ef_search": 256}, faiss.IndexHNSWFlat),
        ("ivf", {"nlist": 16, "nprobe": 8}, faiss.IndexIVFFlat),
    ],
)
def test_approximate_indexes_find_the_nearest_neighbour(index_type, params, faiss_class):
    documents, queries = unit_vectors(1000), unit_vectors(100, seed=1)
    index = DocumentIndex(DIM, index_type, **params)
    index.add(documents, [str(i) for i in range(1000)], ["" for _ in range(1000)])
    assert isinstance(index._index, faiss_class)
    assert index._index.metric_type == faiss.METRIC_INNER_PRODUCT
    truth = np.argmax(queries @ documents.T, axis=1)
    found = [int(row[0].id) for row in index.search(queries, k=1)]
    assert np.mean(np.asarray(found) == truth) >= 0.9


def test_ivf_trains_on_the_first_add_and_refuses_too_few_vectors():
    index = DocumentIndex(DIM, "ivf", nlist=50)
    with pytest.raises(ValueError, match="nlist=50"):
        index.add(unit_vectors(20), [str(i) for i in range(20)], ["x"] * 20)
    assert len(index) == 0 and index.search(unit_vectors(1), k=3) == [[]]
    index.add(unit_vectors(100), [str(i) for i in range(100)], ["x"] * 100)
    index.add(unit_vectors(5, seed=3), [f"late-{i}" for i in range(5)], ["y"] * 5)  # trained already: any size
    assert len(index) == 105 and index._index.is_trained
    index.set_search_params(nprobe=50)  # every list: exact
    assert index.search(unit_vectors(5, seed=3)[:1], k=1)[0][0].id == "late-0"


def test_empty_index_and_k_larger_than_the_index():
    empty = DocumentIndex(DIM)
    assert empty.search(unit_vectors(3), k=5) == [[], [], []]
    assert empty.search(np.zeros((0, DIM), np.float32), k=5) == []
    index = filled_index(4)
    (row,) = index.search(unit_vectors(1, seed=9), k=50)
    assert sorted(h.id for h in row) == [f"doc-{i}" for i in range(4)]
    assert [h.rank for h in row] == [1, 2, 3, 4]
    assert all(a.score >= b.score for a, b in itertools.pairwise(row))


def test_duplicate_ids_are_refused_and_nothing_is_added():
    index = filled_index(3)
    with pytest.raises(ValueError, match="'doc-1'"):
        index.add(unit_vectors(2, seed=5), ["new", "doc-1"], ["a", "b"])
    with pytest.raises(ValueError, match="'twice'"):
        index.add(unit_vectors(2, seed=5), ["twice", "twice"], ["a", "b"])
    assert len(index) == 3 and "new" not in index and index._index.ntotal == 3


@pytest.mark.parametrize(
    ("embeddings", "message"),
    [
        (unit_vectors(1)[0], "2-D"),
        (np.ones((2, DIM), dtype=np.int64), "floats"),
        (unit_vectors(2, dim=16), "dimension 16"),
        (unit_vectors(2) * 3, "L2-normalised"),
        (np.full((2, DIM), np.nan, dtype=np.float32), "NaN"),
    ],
)
def test_bad_document_embeddings_are_refused(embeddings, message):
    with pytest.raises(ValueError, match=message):
        DocumentIndex(DIM).add(embeddings, ["a", "b"][: len(embeddings)], ["x", "y"][: len(embeddings)])


def test_bad_queries_and_arguments_are_refused():
    index = filled_index(10)
    with pytest.raises(ValueError, match="2-D"):
        index.search(unit_vectors(1)[0], k=3)
    with pytest.raises(ValueError, match="dimension 8"):
        index.search(unit_vectors(1, dim=8), k=3)
    with pytest.raises(ValueError, match="floats"):
        index.search(np.array([["a"] * DIM]), k=3)
    with pytest.raises(ValueError, match="k must be"):
        index.search(unit_vectors(1), k=0)
    with pytest.raises(ValueError, match="must match"):
        index.add(unit_vectors(2), ["a"], ["x", "y"])
    with pytest.raises(TypeError, match="expected str"):
        index.add(unit_vectors(1), [7], ["x"])
    with pytest.raises(ValueError, match="unknown parameters"):
        DocumentIndex(DIM, "flat", nprobe=3)
    with pytest.raises(ValueError, match="index_type"):
        DocumentIndex(DIM, "lsh")
    for dim in (0, True, 3.0):  # True is not a dimension of 1
        with pytest.raises(ValueError, match="dim must be a positive int"):
            DocumentIndex(dim)


# ---- persistence -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index_type", "params"), [("flat", {}), ("hnsw", {"m": 8, "ef_search": 40}), ("ivf", {"nlist": 8, "nprobe": 3})]
)
def test_save_load_round_trip(tmp_path, index_type, params):
    index = filled_index(200, index_type, **params)
    queries = unit_vectors(8, seed=2)
    index.save(tmp_path / "index")
    loaded = DocumentIndex.load(tmp_path / "index", expected_model="test-model@0123456789abcdef")
    assert hit_tuples(loaded.search(queries, k=7)) == hit_tuples(index.search(queries, k=7))
    assert (loaded.index_type, loaded.params, loaded.model, loaded.ids) == (
        index.index_type,
        index.params,
        index.model,
        index.ids,
    )
    metadata = json.loads((tmp_path / "index" / "gear_index.json").read_text())
    assert metadata["format_version"] == 2 and metadata["normalized"] is True
    assert metadata["dim"] == DIM and metadata["num_documents"] == 200 and metadata["metric"] == "inner_product"
    assert metadata["index_type"] == index_type and metadata["model"] == "test-model@0123456789abcdef"
    assert {k: metadata["index_params"][k] for k in params} == params
    lines = (tmp_path / "index" / metadata["files"]["documents"]).read_text().splitlines()
    assert json.loads(lines[5]) == {"id": "doc-5", "text": "text 5"}


def test_empty_and_unicode_round_trip(tmp_path):
    DocumentIndex(DIM, "ivf", nlist=4).save(tmp_path / "empty")
    assert len(DocumentIndex.load(tmp_path / "empty")) == 0
    index = DocumentIndex(DIM)
    index.add(unit_vectors(2), ["é/1", "名"], ["naïve\ntext\u2028here", '{"json": "inside"}'])
    index.save(tmp_path / "unicode")
    loaded = DocumentIndex.load(tmp_path / "unicode")
    assert [loaded.get_text(i) for i in loaded.ids] == ["naïve\ntext\u2028here", '{"json": "inside"}']


def test_load_refuses_an_index_built_with_another_model(tmp_path):
    filled_index(10).save(tmp_path)
    with pytest.raises(ModelMismatchError, match=r"test-model@0123456789abcdef.*other-model@fedcba9876543210"):
        DocumentIndex.load(tmp_path, expected_model="other-model@fedcba9876543210")
    # The name is where a model was loaded from; the fingerprint decides.
    assert len(DocumentIndex.load(tmp_path, expected_model="/moved/folder@0123456789abcdef")) == 10
    # An index that does not say which model made it ("model": null) cannot pass the check (it only warned).
    DocumentIndex(DIM).save(tmp_path / "anonymous")
    with pytest.raises(ModelMismatchError, match="does not record"):
        DocumentIndex.load(tmp_path / "anonymous", expected_model="m@0123456789abcdef")
    assert len(DocumentIndex.load(tmp_path / "anonymous")) == 0  # no expected model: nothing to check


def test_missing_and_corrupt_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no GeAR index folder"):
        DocumentIndex.load(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"gear_index\.json is missing"):
        DocumentIndex.load(tmp_path)

    folder = tmp_path / "index"
    filled_index(10).save(folder)
    metadata_path = folder / "gear_index.json"
    good_metadata = metadata_path.read_text()
    files = json.loads(good_metadata)["files"]
    index_path = folder / files["index"]

    metadata_path.write_text(good_metadata[:40])
    with pytest.raises(ValueError, match="corrupt index metadata"):
        DocumentIndex.load(folder)
    metadata_path.write_text(good_metadata.replace('"format_version": 2', '"format_version": 99'))
    with pytest.raises(ValueError, match="format version 99"):
        DocumentIndex.load(folder)
    metadata_path.write_text(good_metadata.replace('"dim": 32', '"dim": "32"'))
    with pytest.raises(ValueError, match="'dim'"):
        DocumentIndex.load(folder)
    metadata_path.write_text(good_metadata)

    index_bytes = index_path.read_bytes()
    index_path.write_bytes(index_bytes[: len(index_bytes) // 2])
    with pytest.raises(ValueError, match="SHA-256"):
        DocumentIndex.load(folder)
    # Garbage whose checksum was (wrongly) recorded still reaches FAISS's parser: its error is reported, not a crash.
    index_path.write_bytes(b"not a faiss index at all")
    metadata = json.loads(good_metadata)
    metadata["sha256"]["index"] = hashlib.sha256(b"not a faiss index at all").hexdigest()
    metadata_path.write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="corrupt FAISS index"):
        DocumentIndex.load(folder)
    metadata_path.write_text(good_metadata)
    index_path.write_bytes(index_bytes)

    # The metadata must not send the load outside its folder.
    for name in ("../outside.faiss", "/etc/passwd", ""):
        metadata = json.loads(good_metadata)
        metadata["files"]["index"] = name
        metadata_path.write_text(json.dumps(metadata))
        with pytest.raises(ValueError, match="not a file name inside the folder"):
            DocumentIndex.load(folder)
    metadata_path.write_text(good_metadata)

    (folder / files["documents"]).unlink()
    with pytest.raises(FileNotFoundError, match=r"documents-\w+\.jsonl is missing"):
        DocumentIndex.load(folder)


def test_a_save_removes_only_its_own_files(tmp_path):
    """Saving into a folder removed a user's draft.tmp, index-notes.faiss and documents-2023.jsonl (anything
    matching the index's name patterns); a metadata file or journal edited to name them must not make a save
    remove them either."""
    theirs = {
        "draft.tmp": "a draft",
        ".notes.tmp": "hidden notes",
        "index-notes.faiss": "notes",
        "documents-2023.jsonl": "{}",
        "index-old/a.txt": "kept",
    }
    for name, text in theirs.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)

    def check_theirs() -> None:
        assert {name: (tmp_path / name).read_text() for name in theirs} == theirs

    filled_index(10).save(tmp_path)
    filled_index(20).save(tmp_path)  # over itself: the first save's files go, nothing else
    files = json.loads((tmp_path / "gear_index.json").read_text())["files"]
    assert {p.name for p in tmp_path.iterdir()} == {"draft.tmp", ".notes.tmp", "index-notes.faiss",
        "documents-2023.jsonl", "index-old", "gear_index.json", *files.values()}  # fmt: skip
    check_theirs()

    # A commit file that names other files (a glob, a plain name that is not the library's): a warning, no removal.
    for name in ("*", "draft.tmp", "index-[0-9]*.faiss"):
        metadata = json.loads((tmp_path / "gear_index.json").read_text())
        metadata["files"]["index"] = name
        (tmp_path / "gear_index.json").write_text(json.dumps(metadata))
        with pytest.warns(UserWarning, match="leaves the files it names in place"):
            filled_index(10).save(tmp_path)
        check_theirs()
    (tmp_path / ".gear_index.json.pending").write_text(json.dumps(["draft.tmp"]))  # a journal edited by hand
    with pytest.warns(UserWarning, match="'draft.tmp' is not a file this library writes"):
        filled_index(10).save(tmp_path)
    check_theirs()
    assert len(DocumentIndex.load(tmp_path)) == 10


def test_a_failed_save_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    filled_index(10).save(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def fail(path):
        raise OSError("disk full")

    monkeypatch.setattr("gear_core.retrieval.index.sha256_file", fail)  # once the data files are written
    with pytest.raises(OSError, match="disk full"):
        filled_index(20, seed=1).save(tmp_path)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert len(DocumentIndex.load(tmp_path)) == 10


def test_lone_surrogates_save_and_reload(tmp_path):
    """Texts and ids holding lone surrogates (what surrogateescape makes of bytes that are not UTF-8) were indexed
    and searched, but saving raised UnicodeEncodeError. Two halves of an emoji must not come back joined."""
    ids, texts = ["caf\udce9", "b", "c"], ["caf\udce9 au lait", "half \ud83d of an emoji", "\ud83d\ude00 two halves"]
    index = DocumentIndex(DIM)
    index.add(unit_vectors(3), ids, texts)
    index.save(tmp_path)
    loaded = DocumentIndex.load(tmp_path)
    assert loaded.ids == ids and [loaded.get_text(i) for i in ids] == texts


@pytest.mark.parametrize(
    ("index_type", "params", "value", "message"),
    [
        ("flat", {}, np.inf, r"the vector of document 'doc-3' \(position 3\) holds NaN or infinite values"),
        ("hnsw", {"m": 8}, np.nan, r"the vector of document 'doc-3' \(position 3\) holds NaN or infinite values"),
        ("ivf", {"nlist": 8}, np.nan, "its inverted lists hold 199 of its 200 vectors"),  # IVF drops a NaN vector
    ],
)
def test_non_finite_vectors_are_refused_on_load(tmp_path, index_type, params, value, message):
    """A NaN vector (in a FAISS file whose checksum was recorded with it) loaded, and its document silently never
    came back from a search."""
    filled_index(200, index_type, **params).save(tmp_path)
    metadata = json.loads((tmp_path / "gear_index.json").read_text())
    index_path = tmp_path / metadata["files"]["index"]
    damaged = faiss.read_index(str(index_path))
    damaged.reset()  # keeps IVF's training
    vectors = unit_vectors(200)
    vectors[3, 5] = value
    damaged.add(vectors)
    faiss.write_index(damaged, str(index_path))
    metadata["sha256"]["index"] = hashlib.sha256(index_path.read_bytes()).hexdigest()
    (tmp_path / "gear_index.json").write_text(json.dumps(metadata))
    with pytest.raises(CorruptFileError, match=message) as error:
        DocumentIndex.load(tmp_path)
    assert str(index_path) in str(error.value) and "\n" not in str(error.value)


# ---- model identity --------------------------------------------------------------------------------------


def _tiny_gear(encoder_dir: str, seed: int):
    from gear_core import GeARModel

    torch.manual_seed(seed)
    return GeARModel.from_encoder(
        encoder_dir, decoder_num_layers=1, ranking_layer=-1, max_document_length=48, document_stride=8,
        max_query_length=16, max_target_length=12, queue_size=16,
    )  # fmt: skip


def test_model_identity_follows_the_encoders(tiny_model, tiny_encoder_dir, tmp_path):
    identity = model_identity(tiny_model)
    name, fingerprint = identity.rsplit("@", 1)
    assert name == tiny_encoder_dir and len(fingerprint) == 16
    # Same base encoder, another seed: only the decoder, cross-attention and the unused [DEC] row differ.
    assert model_identity(_tiny_gear(tiny_encoder_dir, seed=1)) == identity
    tiny_model.save_pretrained(tmp_path / "saved")
    reloaded = type(tiny_model).from_pretrained(tmp_path / "saved")
    assert same_model(model_identity(reloaded), identity) and model_identity(reloaded) != identity
    assert same_model(model_identity(reloaded.to(torch.bfloat16)), identity)  # bf16 inference: same vectors
    tiny_model.config.ranking_head_pooling = "max"  # ranking settings do not change document vectors
    assert model_identity(tiny_model) == identity
    with torch.no_grad():
        tiny_model.document_encoder.encoder.layer[0].output.dense.weight.mul_(1.5)
    assert not same_model(model_identity(tiny_model), identity)


# ---- searcher --------------------------------------------------------------------------------------------

DOCUMENTS = [
    "Paris is the capital of France. The Seine flows through the city. It hosted the 1900 Olympics.",
    "Jupiter is the largest planet. It has dozens of moons. Jupiter is a gas giant.",
    "Hamlet is a tragedy by Shakespeare. It is set in Denmark.",
    "Water boils at 100 degrees. Water freezes at 0 degrees. Ice floats on water.",
]


def test_searcher_end_to_end(tiny_model):
    searcher = GeARSearcher.from_documents(tiny_model, DOCUMENTS, ids=["paris", "jupiter", "hamlet", "water"])
    results = searcher.search("Where is Hamlet set?", k=3, top_sentences=2, generate=True)
    assert len(results) == 3 and all(isinstance(r, SearchResult) for r in results)
    assert [r.rank for r in results] == [1, 2, 3]
    assert all(a.score >= b.score for a, b in itertools.pairwise(results))
    for result in results:
        assert result.text == DOCUMENTS[["paris", "jupiter", "hamlet", "water"].index(result.id)]
        assert 1 <= len(result.sentences) <= 2
        for sentence in result.sentences:
            assert result.text[sentence.start_char : sentence.end_char] == sentence.text
        assert isinstance(result.evidence, GroundedEvidence)
        if result.evidence.start_char is not None:  # the span slices the hit's text
            assert 0 <= result.evidence.start_char < result.evidence.end_char <= len(result.text)

    # A document's own text as the query: query and document encoders start from the same weights.
    assert searcher.search(DOCUMENTS[3], k=1, rank_sentences=False)[0].id == "water"
    plain = searcher.search("moons", k=10, rank_sentences=False)
    assert len(plain) == 4 and all(r.sentences == [] and r.evidence is None for r in plain)
    all_sentences = searcher.search("moons", k=1, top_sentences=None)[0]
    assert len(all_sentences.sentences) == len(split_sentences(all_sentences.text))

    batch = searcher.search_batch(["moons", "boiling water"], k=2, top_sentences=1)
    single = [searcher.search(q, k=2, top_sentences=1) for q in ["moons", "boiling water"]]
    assert [[(r.id, r.sentences[0].text) for r in row] for row in batch] == [
        [(r.id, r.sentences[0].text) for r in row] for row in single
    ]
    for row_batch, row_single in zip(batch, single, strict=True):
        np.testing.assert_allclose([r.score for r in row_batch], [r.score for r in row_single], rtol=1e-5)


def test_searcher_default_ids_and_empty_index(tiny_model):
    searcher = GeARSearcher.from_documents(tiny_model, [])
    assert searcher.search("anything") == []
    searcher.add_documents(DOCUMENTS[:2])
    searcher.add_documents(DOCUMENTS[2:])
    assert searcher.index.ids == ["0", "1", "2", "3"]
    with pytest.raises(TypeError, match="single string"):
        searcher.add_documents("one document")


def test_searcher_save_load_round_trip_and_model_check(tiny_model, tiny_encoder_dir, tmp_path):
    searcher = GeARSearcher.from_documents(tiny_model, DOCUMENTS, index_type="hnsw", m=8)
    searcher.save(tmp_path / "index")
    loaded = GeARSearcher.load(tmp_path / "index", tiny_model)
    query = "What floats on water?"
    original, again = searcher.search(query, k=4), loaded.search(query, k=4)
    assert [(r.id, r.score, r.sentences) for r in again] == [(r.id, r.score, r.sentences) for r in original]
    assert loaded.index.index_type == "hnsw" and loaded.index.params["m"] == 8

    other = _tiny_gear(tiny_encoder_dir, seed=0)
    with torch.no_grad():
        other.query_encoder.embeddings.word_embeddings.weight.add_(0.01)
    with pytest.raises(ModelMismatchError, match="built with model"):
        GeARSearcher.load(tmp_path / "index", other)
    with pytest.raises(ModelMismatchError):
        GeARSearcher(other, searcher.index)
    assert len(GeARSearcher.load(tmp_path / "index", other, check=False).index) == 4


def test_a_version_1_index_still_loads_and_a_save_replaces_its_files(tmp_path):
    """Version 1 wrote index.faiss and documents.jsonl in place; such folders load, and saving over one leaves
    only the new version's files."""
    index = filled_index(10)
    index.save(tmp_path)
    metadata = json.loads((tmp_path / "gear_index.json").read_text())
    os.replace(tmp_path / metadata["files"]["index"], tmp_path / "index.faiss")
    os.replace(tmp_path / metadata["files"]["documents"], tmp_path / "documents.jsonl")
    metadata["format_version"] = 1
    del metadata["files"]
    (tmp_path / "gear_index.json").write_text(json.dumps(metadata))
    assert DocumentIndex.load(tmp_path).ids == index.ids
    index.save(tmp_path)
    files = json.loads((tmp_path / "gear_index.json").read_text())["files"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["gear_index.json", *files.values()])
    assert DocumentIndex.load(tmp_path).ids == index.ids


def test_search_grounds_the_decoder_output_in_each_hit(tiny_model, monkeypatch):
    """With a decoder whose output is known, each hit's evidence is that text with its exact span and support."""
    searcher = GeARSearcher.from_documents(tiny_model, DOCUMENTS, ids=["paris", "jupiter", "hamlet", "water"])
    stub_evidence(monkeypatch, tiny_model, lambda queries, documents, **_: ["dozens of moons" for _ in documents])
    results = {r.id: r.evidence for r in searcher.search("moons?", k=4, rank_sentences=False, generate=True)}
    jupiter = results["jupiter"]
    assert (jupiter.text, jupiter.support, jupiter.grounded) == ("dozens of moons", 1.0, True)
    assert DOCUMENTS[1][jupiter.start_char : jupiter.end_char] == "dozens of moons"
    assert results["hamlet"].grounded is False and results["hamlet"].start_char is None  # no word of it there


# ---- lexical search and fusion ---------------------------------------------------------------------------


def test_reciprocal_rank_fusion_hand_case():
    from gear_core.retrieval.lexical import reciprocal_rank_fusion

    # a: 1/60 + 1/62; b: 1/61 + 1/60; c: 1/62; d: 1/61 -> b, a, d, c
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d", "a"]])
    assert [id_ for id_, _ in fused] == ["b", "a", "d", "c"]
    assert [score for _, score in fused] == pytest.approx([1 / 61 + 1 / 60, 1 / 60 + 1 / 62, 1 / 61, 1 / 62])
    assert [id_ for id_, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]])] == ["x", "y"]  # a tie: first seen
    assert reciprocal_rank_fusion([["a", "b"]], k=1.0) == [("a", 1.0), ("b", 0.5)]
    assert reciprocal_rank_fusion([]) == []


def test_z_score_fusion_hand_case():
    from gear_core.retrieval import z_score_fusion

    # Candidates a, b, c. Dense gives a 2, b 0 and c (which it lacks) its lowest, 0: mean 2/3, sd sqrt(8/9), so
    # a +sqrt(2), b and c -1/sqrt(2). BM25 gives c 3, a 1 and b (missing: 0): mean 4/3, sd sqrt(42/27).
    dense, bm25 = [("a", 2.0), ("b", 0.0)], [("c", 3.0), ("a", 1.0)]
    bm25_sd = (42 / 27) ** 0.5
    a = 2**0.5 + (1 - 4 / 3) / bm25_sd
    b = -(0.5**0.5) + (0 - 4 / 3) / bm25_sd
    c = -(0.5**0.5) + (3 - 4 / 3) / bm25_sd
    fused = z_score_fusion([dense, bm25], missing=[None, 0.0])
    assert [id_ for id_, _ in fused] == ["a", "c", "b"]
    assert [score for _, score in fused] == pytest.approx([a, c, b])
    # BM25 weighted 2: c = -0.707 + 2 x 1.336 beats a = 1.414 - 2 x 0.267.
    assert [i for i, _ in z_score_fusion([dense, bm25], weights=[1.0, 2.0], missing=[None, 0.0])] == ["c", "a", "b"]
    # BM25's only result: with its lowest for the rest (the default) every candidate scores the same and BM25 adds
    # nothing; with 0 for the rest it is what BM25 found.
    dense, bm25 = [("a", 2.0), ("b", 0.0)], [("b", 1.0)]
    assert z_score_fusion([dense, bm25]) == [("a", 1.0), ("b", -1.0)]
    assert z_score_fusion([dense, bm25], missing=[None, 0.0]) == [("a", 0.0), ("b", 0.0)]  # a tie: first seen
    assert [i for i, _ in z_score_fusion([dense, bm25], weights=[1.0, 2.0], missing=[None, 0.0])] == ["b", "a"]
    # Equal scores or no results add nothing; ties keep the first seen.
    assert z_score_fusion([[("x", 5.0), ("y", 5.0)], []]) == [("x", 0.0), ("y", 0.0)]
    assert [id_ for id_, _ in z_score_fusion([[("x", 1.0), ("y", 0.0)], [("y", 1.0), ("x", 0.0)]])] == ["x", "y"]
    assert z_score_fusion([]) == []
    with pytest.raises(ValueError, match="1 weights for 2 rankings"):
        z_score_fusion([dense, bm25], weights=[1.0])
    with pytest.raises(ValueError, match="1 missing scores for 2 rankings"):
        z_score_fusion([dense, bm25], missing=[None])


def test_lexical_index_finds_what_shares_a_term_and_nothing_else():
    from gear_core.retrieval.lexical import LexicalIndex

    index = LexicalIndex(["p", "r", "s"], ["Paris is the capital of France.", "Rome is old.", "the of and"])
    hits = index.search(["capital of France", "the and of", "Rome and Paris"], k=5)
    assert [id_ for id_, _ in hits[0]] == ["p"]  # "r" and "s" share no term (stop words do not count)
    assert hits[1] == []  # a query of stop words finds nothing
    assert {id_ for id_, _ in hits[2]} == {"p", "r"} and hits[2][0][1] >= hits[2][1][1] > 0
    assert [len(row) for row in index.search(["Rome and Paris"], k=1)] == [1]
    assert LexicalIndex([], []).search(["anything"], 3) == [[]]
    assert LexicalIndex(["x"], ["!!! ..."]).search(["anything"], 3) == [[]]  # no term to index at all
    with pytest.raises(ValueError, match="k must be a positive int"):
        index.search(["Rome"], 0)
    with pytest.raises(ValueError, match="2 ids but 1 texts"):
        LexicalIndex(["a", "b"], ["one"])


def test_hybrid_fusion_hand_cases():
    from gear_core.retrieval import HybridFusion

    # Weighted: a = 2/(1+0) = 2 against b = 1/(1+0) + 2/(1+1) = 2: a tie, first seen first; c = 1/(1+1).
    assert reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=1.0, weights=[2.0, 1.0]) == [
        ("a", 2.0),
        ("b", 2.0),
        ("c", 0.5),
    ]
    with pytest.raises(ValueError, match="1 weights for 2 rankings"):
        reciprocal_rank_fusion([["a"], ["b"]], weights=[1.0])
    # How deep the rankings are fused decides. By rank: cut to 1, "a" (dense first) ties "c" (BM25 first) and is
    # seen first; at depth 3, "c" is also dense's third: 1/10 + 1/12 beats a's 1/10.
    dense, bm25 = [("a", 0.9), ("b", 0.5), ("c", 0.1)], [("c", 3.0)]
    by_rank = {"rank_constant": 10.0, "dense_weight": 1.0, "method": "reciprocal_rank"}
    assert HybridFusion(depth=1, **by_rank).fuse(dense, bm25, k=1) == [("a", 1 / 10)]
    assert HybridFusion(depth=3, **by_rank).fuse(dense, bm25, k=1) == [("c", pytest.approx(1 / 10 + 1 / 12))]
    # By score, the default method: cut to 1, each ranking gives both candidates its one score (its lowest), so
    # neither adds anything, a tie that "a" wins by being seen first. At depth 3, dense's 0.9, 0.5, 0.1 stand at
    # +1.2247, 0, -1.2247 (x 1.5, GeAR's weight here); BM25 found "c" alone, fewer than asked, so the others scored 0
    # there: a and b at -0.7071, c at +1.4142. a 1.130, c -0.423, b -0.707.
    assert HybridFusion(depth=1).fuse(dense, bm25, k=1) == [("a", 0.0)]
    fused = HybridFusion(depth=3, dense_weight=1.5).fuse(dense, bm25, k=3)
    assert [i for i, _ in fused] == ["a", "c", "b"]
    assert [score for _, score in fused] == pytest.approx(
        [1.5 * 1.5**0.5 - 0.5**0.5, -1.5 * 1.5**0.5 + 2**0.5, -(0.5**0.5)]
    )
    assert HybridFusion().method == "z_score" and HybridFusion().dense_weight == 1.0
    assert HybridFusion(depth=1, **by_rank).fuse(dense, bm25, k=3)[0][0] == "c"  # never shallower than k
    assert HybridFusion(depth=20).candidates(5) == 20 and HybridFusion(depth=20).candidates(50) == 50
    # dense_weight scales GeAR's part only: 2/(10+0) for "a" beats 1/(10+0) for "c".
    one_each = ([("a", 0.9)], [("c", 3.0)])
    for weight, order in ((2.0, ["a", "c"]), (0.5, ["c", "a"])):
        fusion = HybridFusion(depth=1, rank_constant=10.0, dense_weight=weight, method="reciprocal_rank")
        assert [i for i, _ in fusion.fuse(*one_each, 2)] == order
    for bad, message in (
        ({"depth": 0}, "depth must be a positive int"),
        ({"depth": 2.5}, "depth must be a positive int"),
        ({"rank_constant": 0.0}, "rank_constant must be > 0"),
        ({"dense_weight": -1.0}, "dense_weight must be > 0"),
        ({"dense_weight": float("nan")}, "dense_weight must be > 0"),
        ({"method": "borda"}, "method must be one of"),
    ):
        with pytest.raises(ValueError, match=message):
            HybridFusion(**bad)


def test_hybrid_search_merges_dense_and_bm25(tiny_model):
    """Hybrid mode: GeAR's and BM25's rankings (each cut to the fusion's depth) merged by standardised score or by
    reciprocal rank; each result says who found it. The tiny model's vectors are random, so BM25 is what finds the
    one document naming the query's rare word."""
    from gear_core.retrieval import HybridFusion

    ids = ["paris", "jupiter", "hamlet", "water"]
    searcher = GeARSearcher.from_documents(tiny_model, DOCUMENTS, ids=ids)
    assert searcher.mode == "hybrid"  # the default: it won on every validation source (hybrid_retrieval.py)
    with pytest.raises(ValueError, match="mode must be one of"):
        searcher.mode = "sparse"
    searcher.mode = "dense"
    dense = searcher.search("shakespeare", k=2, rank_sentences=False)
    assert all(r.found_by == ("dense",) for r in dense)

    searcher.mode = "hybrid"
    bm25 = searcher.lexical_index().search(["shakespeare"], 4)[0]
    bm25_ids = [id_ for id_, _ in bm25]
    assert bm25_ids == ["hamlet"]  # only Hamlet's text names Shakespeare
    # GeAR's top 2, then all four documents, fused with BM25's by score; then by rank.
    for fusion in (HybridFusion(depth=2), HybridFusion(depth=4), HybridFusion(depth=4, method="reciprocal_rank")):
        searcher.fusion = fusion
        results = searcher.search("shakespeare", k=2, rank_sentences=False)
        searcher.mode = "dense"
        dense = [(r.id, r.score) for r in searcher.search("shakespeare", k=fusion.depth, rank_sentences=False)]
        dense_ids = [id_ for id_, _ in dense]
        searcher.mode = "hybrid"
        if fusion.method == "z_score":
            # BM25 found one document of the four: the others scored 0 there.
            expected = z_score_fusion([dense, bm25], [fusion.dense_weight, 1.0], missing=[None, 0.0])[:2]
        else:
            expected = reciprocal_rank_fusion([dense_ids, bm25_ids], fusion.rank_constant, [fusion.dense_weight, 1])[:2]
        assert [(r.id, r.score, r.rank) for r in results] == [
            (id_, score, rank) for rank, (id_, score) in enumerate(expected, 1)
        ]
        for r in results:
            assert r.found_by == tuple(n for n, found in (("dense", dense_ids), ("bm25", bm25_ids)) if r.id in found)
            assert r.text == DOCUMENTS[ids.index(r.id)]
        assert "hamlet" in [r.id for r in results]  # found by BM25 even if the random vectors miss it
    searcher.fusion = HybridFusion()

    # Documents added later are searched by both; sentences are ranked in every mode.
    searcher.add_documents(["Zanzibar exports cloves."], ids=["zanzibar"])
    assert any(r.id == "zanzibar" and "bm25" in r.found_by for r in searcher.search("zanzibar", k=5))
    assert all(len(r.sentences) == 1 for r in searcher.search("zanzibar cloves", k=3, top_sentences=1))


# ---- documents scored with their best sentence -----------------------------------------------------------


def test_document_scores_hand_case():
    cosines, sentence_cosines, counts = np.array([0.5, 0.2]), np.array([0.1, 0.4, 0.9]), np.array([2, 1])
    # Document 0: cosine 0.5, sentences 0.1 and 0.4; document 1: cosine 0.2, one sentence 0.9.
    np.testing.assert_allclose(document_scores(cosines, sentence_cosines, counts, 0.5), [0.7, 0.65])
    # Weight 0: the document cosine alone, whatever the sentences say.
    np.testing.assert_allclose(document_scores(cosines, sentence_cosines, counts, 0.0), [0.5, 0.2])


def sentence_index(index_type: str = "flat", n: int = 300, seed: int = 0, **params: int):
    """An index with sentence vectors (1 to 6 per document) added in two parts, and what it was given."""
    rng = np.random.default_rng(seed)
    documents = unit_vectors(n, seed=seed)
    counts = rng.integers(1, 7, size=n)
    sentences = unit_vectors(int(counts.sum()), seed=seed + 1)
    index = DocumentIndex(DIM, index_type, model="test-model@0123456789abcdef", sentences=True, **params)
    half, cut = n // 2, int(counts[: n // 2].sum())
    for part, rows in ((slice(0, half), slice(0, cut)), (slice(half, n), slice(cut, None))):
        ids = [f"d{i}" for i in range(n)[part]]
        index.add(documents[part], ids, [f"t{i}" for i in range(n)[part]], sentences[rows], counts[part])
    return index, documents, sentences, counts


@pytest.mark.parametrize(
    ("index_type", "params"), [("flat", {}), ("hnsw", {"m": 16}), ("ivf", {"nlist": 4, "nprobe": 4})]
)
def test_search_by_best_sentence_equals_brute_force(index_type, params):
    """Every k and weight: the ranking is document_scores' over the whole collection (a flat index scores every
    document; HNSW and IVF rescore what their searches find, here all of it)."""
    index, documents, sentences, counts = sentence_index(index_type, **params)
    assert index.has_sentences and index.num_sentences == counts.sum()
    queries = unit_vectors(15, seed=7)
    for k, weight in ((1, 1.0), (5, 0.5), (80, 2.0)):
        expected = [document_scores(documents @ q, sentences @ q, counts, weight) for q in queries]
        for row, scores in zip(index.search(queries, k, sentence_weight=weight), expected, strict=True):
            order = np.lexsort((np.arange(len(scores)), -scores))[:k]
            assert [h.id for h in row] == [f"d{i}" for i in order]
            np.testing.assert_allclose([h.score for h in row], scores[order], rtol=1e-5)
    # Weight 0 (or none given) searches the document vectors alone.
    assert hit_tuples(index.search(queries, 5)) == hit_tuples(index.search(queries, 5, sentence_weight=0.0))
    plain = DocumentIndex(DIM, index_type, **params)
    plain.add(documents, index.ids, [index.get_text(i) for i in index.ids])
    assert [[h.id for h in row] for row in index.search(queries, 5)] == [
        [h.id for h in row] for row in plain.search(queries, 5)
    ]


def test_a_document_found_only_by_a_deep_sentence_is_still_found():
    """The best document by score has the 300th best document vector and only its sentence above the others: a
    flat index scores every document, so it is found however far down its own vector ranks."""
    dim, n = 4, 300
    axis = np.eye(dim, dtype=np.float32)
    query = axis[0]
    # Every document vector but the last leans towards the query (cosine 0.6 to 0.3), the last one away (-0.9).
    cosines = [*np.linspace(0.6, 0.3, n - 1).tolist(), -0.9]
    documents = np.array([[c, np.sqrt(1 - c * c), 0, 0] for c in cosines], dtype=np.float32)
    # Each document's one sentence is orthogonal to the query, but the last document's is the query itself.
    sentences = np.tile(axis[2], (n, 1))
    sentences[-1] = axis[0]
    index = DocumentIndex(dim, sentences=True)
    index.add(documents, [f"d{i}" for i in range(n)], ["t"] * n, sentences, np.ones(n, dtype=np.int64))
    top = index.search(query[None, :], 2, sentence_weight=2.0)[0]
    assert [h.id for h in top] == [f"d{n - 1}", "d0"]  # -0.9 + 2 * 1.0 = 1.1 beats 0.6 + 0
    np.testing.assert_allclose([h.score for h in top], [1.1, 0.6], rtol=1e-5)


def test_sentence_vectors_save_and_reload_identically(tmp_path):
    index, *_ = sentence_index("hnsw", m=8)
    queries = unit_vectors(6, seed=3)
    index.save(tmp_path)
    metadata = json.loads((tmp_path / "gear_index.json").read_text())
    assert metadata["format_version"] == 3 and metadata["num_sentences"] == index.num_sentences
    loaded = DocumentIndex.load(tmp_path)
    assert loaded.has_sentences and loaded.num_sentences == index.num_sentences
    assert hit_tuples(loaded.search(queries, 7, 1.0)) == hit_tuples(index.search(queries, 7, 1.0))
    # An index without sentence vectors is still written as version 2, which earlier versions read.
    filled_index(5).save(tmp_path / "plain")
    assert json.loads((tmp_path / "plain" / "gear_index.json").read_text())["format_version"] == 2
    assert not DocumentIndex.load(tmp_path / "plain").has_sentences
    # Saving over it replaces the sentence file with the rest; nothing else is left.
    index.save(tmp_path)
    files = json.loads((tmp_path / "gear_index.json").read_text())["files"]
    assert set(files) == {"index", "documents", "sentences"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted(["gear_index.json", *files.values()])


def test_damaged_sentence_vectors_give_clear_errors(tmp_path):
    index, *_ = sentence_index(n=20)
    index.save(tmp_path)
    metadata = json.loads((tmp_path / "gear_index.json").read_text())
    documents = tmp_path / metadata["files"]["documents"]
    original = documents.read_text()

    def rewrite(text: str) -> None:  # a changed file with its checksum updated: only the content check can tell
        documents.write_text(text)
        metadata["sha256"]["documents"] = hashlib.sha256(documents.read_bytes()).hexdigest()
        (tmp_path / "gear_index.json").write_text(json.dumps(metadata))

    first = json.loads(original.splitlines()[0])
    rewrite(original.replace(json.dumps(first), json.dumps({**first, "sentences": 0}), 1))
    with pytest.raises(CorruptFileError, match="positive int 'sentences'"):
        DocumentIndex.load(tmp_path)
    rewrite(original.replace(json.dumps(first), json.dumps({**first, "sentences": first["sentences"] + 1}), 1))
    with pytest.raises(CorruptFileError, match="sentence vectors"):
        DocumentIndex.load(tmp_path)
    rewrite(original)
    (tmp_path / metadata["files"]["sentences"]).unlink()
    with pytest.raises(FileNotFoundError, match="sentences-"):
        DocumentIndex.load(tmp_path)


def test_bad_sentence_arguments_are_refused():
    vectors, ids, texts = unit_vectors(2), ["a", "b"], ["x", "y"]
    with pytest.raises(ValueError, match="keeps no sentence vectors"):
        DocumentIndex(DIM).add(vectors, ids, texts, unit_vectors(2), [1, 1])
    with pytest.raises(ValueError, match="sentence_weight needs sentence vectors"):
        filled_index(3).search(unit_vectors(1), 1, sentence_weight=1.0)
    index = DocumentIndex(DIM, sentences=True)
    with pytest.raises(ValueError, match="needs sentence_embeddings"):
        index.add(vectors, ids, texts)
    with pytest.raises(ValueError, match="add up to 3"):
        index.add(vectors, ids, texts, unit_vectors(2), [1, 2])
    with pytest.raises(ValueError, match="at least one sentence"):
        index.add(vectors, ids, texts, unit_vectors(2), [2, 0])
    with pytest.raises(ValueError, match="one per document"):
        index.add(vectors, ids, texts, unit_vectors(2), [1.0, 1.0])
    with pytest.raises(ValueError, match="L2-normalised"):
        index.add(vectors, ids, texts, 2 * unit_vectors(2), [1, 1])
    assert len(index) == 0 and index.num_sentences == 0  # nothing was added by a refused call
    for weight, error in ((-1.0, ValueError), (float("nan"), ValueError), (True, TypeError)):
        with pytest.raises(error):
            index.search(unit_vectors(1), 1, sentence_weight=weight)
    with pytest.raises(TypeError, match="True or False"):
        DocumentIndex(DIM, sentences="yes")


def test_searcher_scores_documents_with_their_best_sentence(tiny_encoder_dir, tmp_path):
    model = tiny_gear(tiny_encoder_dir, retrieval_sentence_weight=1.0)
    texts, ids = [*DOCUMENTS, "   "], ["paris", "jupiter", "hamlet", "water", "blank"]
    searcher = GeARSearcher.from_documents(model, texts, ids=ids)
    searcher.mode = "dense"  # the scores themselves (hybrid mode fuses them with BM25's)
    assert searcher.index.has_sentences and searcher.sentence_weight == 1.0
    # Every sentence of every document, and the blank document's whole text as its one "sentence".
    vectors, counts = model.encode_document_sentences(texts)
    assert counts.tolist() == [len(split_sentences(d)) for d in DOCUMENTS] + [1]
    query = "Which planet has moons?"
    query_vector = model.encode_queries([query])[0]
    expected = document_scores(model.encode_documents(texts) @ query_vector, vectors @ query_vector, counts, 1.0)
    results = searcher.search(query, k=5, rank_sentences=False)
    order = np.argsort(-expected, kind="stable")
    assert [r.id for r in results] == [ids[i] for i in order]
    np.testing.assert_allclose([r.score for r in results], expected[order], rtol=1e-4)
    # Added documents get sentence vectors too; a reloaded searcher returns the same.
    searcher.add_documents(["Mars is red. It has two moons."], ids=["mars"])
    assert searcher.index.num_sentences == counts.sum() + 2
    searcher.save(tmp_path / "index")
    loaded = GeARSearcher.load(tmp_path / "index", model, mode="dense")
    again, original = loaded.search(query, k=6), searcher.search(query, k=6)
    assert [(r.id, r.score, r.sentences) for r in again] == [(r.id, r.score, r.sentences) for r in original]
    # The model's weight set to 0 scores the same index by its document vectors alone.
    model.config.retrieval_sentence_weight = 0.0
    assert searcher.sentence_weight == 0.0
    alone = searcher.index.search(model.encode_queries([query]), 6)[0]
    assert [(r.id, r.score) for r in searcher.search(query, k=6, rank_sentences=False)] == [
        (h.id, h.score) for h in alone
    ]
    # A model that does not score by sentences builds an index without them, as before.
    assert not GeARSearcher.from_documents(tiny_gear(tiny_encoder_dir), DOCUMENTS).index.has_sentences
