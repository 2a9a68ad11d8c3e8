"""The reliability suite: concurrency, crash during save, damaged files, bad inputs. Each case here failed before
the fix it covers."""

from __future__ import annotations

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import tiny_gear
from llama_index.core.schema import NodeWithScore, TextNode
from reliability_helpers import (
    INDEX_MODEL,
    frequent_thread_switches,
    index_versions,
    kill_while_saving,
    retriever_versions,
    save_in_turn,
)

from gear_core.evidence import ground_evidence
from gear_core.files import TEMPORARY_PREFIX
from llama_index_gear import GeARHighlighter

# ---- concurrency -----------------------------------------------------------------------------------------


def test_threads_give_the_serial_results(tiny_encoder_dir):
    """8 threads mixing query encoding (16-token limit), document encoding (48) and sentence ranking (windows
    with overflow) give exactly the serial results. A fast tokenizer shares its truncation settings between
    calls: without the library's tokenizer lock some documents were encoded with the query limit."""
    model = tiny_gear(tiny_encoder_dir).eval()
    texts = [" ".join(f"w{i}x{j}." if j % 7 == 6 else f"w{i}x{j}" for j in range(10 + 3 * i)) for i in range(24)]
    queries = [f"which word {i}" for i in range(24)]

    def job(kind: str, i: int):
        if kind == "query":
            return model.encode_queries([texts[i]])[0]
        if kind == "document":
            return model.encode_documents([texts[i]])[0]
        return [(s.start_char, s.score) for s in model.rank_sentences(queries[i], texts[i], top_n=None)]

    kinds = ("query", "document", "ranking")
    serial = {(kind, i): job(kind, i) for kind in kinds for i in range(24)}
    jobs = [(kind, i) for _ in range(4) for i in range(24) for kind in kinds]
    with frequent_thread_switches(), ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda j: job(*j), jobs))
    different = sum(
        (result != serial[j]) if j[0] == "ranking" else not np.array_equal(result, serial[j])
        for j, result in zip(jobs, results, strict=True)
    )
    assert different == 0, f"{different} of {len(jobs)} concurrent results differ from the serial ones"


def test_concurrent_async_highlighting_gives_the_serial_results(tiny_encoder_dir):
    """20 concurrent ``apostprocess_nodes`` tasks (each runs in a worker thread), with evidence generation, give
    what the same calls give one at a time. The queries are longer than the query limit (16 tokens), so a query
    tokenized under a document call's limit (48) shows."""
    model = tiny_gear(tiny_encoder_dir).eval()
    highlighter = GeARHighlighter(model=model, top_n=3, generate_evidence=True, max_new_tokens=4)
    calls = []
    for i in range(20):
        text = " ".join(f"Fact {i}.{j} is about topic{i} and item{j}." for j in range(2 + i % 9))
        query = f"what is item{i % 5} {'and the other one ' * 5}"
        calls.append(([NodeWithScore(node=TextNode(text=text, id_=f"n{i}"), score=1.0)], query))

    def summary(nodes: list[NodeWithScore]) -> list:
        return [(n.node.node_id, n.node.metadata["gear_highlights"], n.node.metadata["gear_evidence"]) for n in nodes]

    serial = [summary(highlighter.postprocess_nodes(nodes, query_str=query)) for nodes, query in calls]

    async def all_at_once() -> list:
        return await asyncio.gather(*(highlighter.apostprocess_nodes(nodes, query_str=q) for nodes, q in calls))

    different = 0
    with frequent_thread_switches():
        for _ in range(5):
            concurrent = [summary(nodes) for nodes in asyncio.run(all_at_once())]
            different += sum(a != b for a, b in zip(concurrent, serial, strict=True))
    assert different == 0, f"{different} of {5 * len(calls)} concurrent highlighter calls differ from serial ones"


# ---- crash during save -----------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked process")
def test_a_saver_killed_while_drawing_a_progress_bar_leaves_the_parents_bars_free():
    """CI hung for 90 minutes: a child killed inside save_pretrained's progress bar kept tqdm's lock (a semaphore
    shared across fork), and the parent's next bar waited forever. The killed savers now draw under a lock of
    their own."""
    import threading
    import time

    from tqdm.auto import tqdm

    tqdm.get_lock()  # made before the fork, as the parent's earlier bars had made it

    def draw_forever(signal) -> None:
        with tqdm.get_lock():
            signal()
            time.sleep(60)

    kill_while_saving(draw_forever, 0.0)
    drawn = threading.Event()
    threading.Thread(target=lambda: (tqdm(range(3), disable=False).close(), drawn.set()), daemon=True).start()
    assert drawn.wait(10), "the parent's progress bar waits for a lock the killed child kept"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked process")
def test_an_index_killed_while_saving_over_itself_stays_loadable(tmp_path):
    """kill -9 at random moments of saving over an existing index: the folder always loads, as one whole version
    (before: the new index.faiss was moved into place before the metadata, and 5 of 5 kills broke it)."""
    import random

    from gear_core.retrieval import DocumentIndex

    size, folder = 20000, tmp_path / "index"
    save_forever = save_in_turn(index_versions(size), lambda index: index.save(folder))

    rng = random.Random(0)
    for _ in range(12):
        kill_while_saving(save_forever, rng.uniform(0.0, 0.3))
        index = DocumentIndex.load(folder, expected_model=INDEX_MODEL)
        version = index.ids[0][0]
        assert len(index) == size and all(i.startswith(version) for i in index.ids)
        assert index.get_text(f"{version}7") == f"text 7 of version {version} " * 4
        leftovers = sorted(p.name for p in folder.iterdir())
        # The metadata and its two files, and what one unfinished save leaves: its journal, its two files and,
        # killed inside write_atomic, a temporary file (the next save removes them all).
        temporary = [name for name in leftovers if name.startswith(TEMPORARY_PREFIX)]
        assert len(leftovers) - len(temporary) <= 6 and len(temporary) <= 1, leftovers
    index.save(folder)
    files = json.loads((folder / "gear_index.json").read_text())["files"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(["gear_index.json", *files.values()])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked process")
def test_a_retriever_killed_while_persisting_over_itself_stays_loadable(tiny_encoder_dir, tmp_path):
    """The same for ``GeARRetriever.persist`` (docstore, index and settings): always loadable, one version."""
    import random

    from llama_index_gear import GeARRetriever

    model = tiny_gear(tiny_encoder_dir).eval()
    size, folder = 3000, tmp_path / "retriever"
    persist_forever = save_in_turn(retriever_versions(model, size), lambda retriever: retriever.persist(folder))

    rng = random.Random(0)
    for _ in range(8):
        kill_while_saving(persist_forever, rng.uniform(0.0, 0.5))
        loaded = GeARRetriever.from_persist_dir(folder, model=model)
        ids = loaded.searcher.index.ids
        version = ids[0][0]
        assert len(ids) == size and all(i.startswith(version) for i in ids)
        assert loaded.docstore.get_node(f"{version}9").get_content() == f"node 9 of version {version}."
        # Settings, its two files, at most an unfinished persist's journal, two files and temporary.
        assert len(list(folder.iterdir())) <= 7


@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked process")
def test_a_model_killed_while_saving_over_itself_stays_loadable(tiny_encoder_dir, tmp_path):
    """kill -9 at random moments of save_pretrained over an existing model: the folder always loads, as one whole
    version, and keeps the user's model card; the next save removes what killed ones left (before: 4 of 8 kills
    left the folder unloadable, and each left a large temporary file that no save removed)."""
    import random

    import torch

    from gear_core import GeARModel

    versions = [tiny_gear(tiny_encoder_dir), tiny_gear(tiny_encoder_dir)]
    with torch.no_grad():
        for parameter in versions[1].parameters():
            parameter.add_(0.01)
    weights = [{name: p.detach().clone() for name, p in model.named_parameters()} for model in versions]
    folder = tmp_path / "model"
    versions[0].save_pretrained(folder)
    (folder / "README.md").write_text("my model card")
    save_forever = save_in_turn(versions, lambda model: model.save_pretrained(folder))

    rng = random.Random(0)
    for _ in range(8):
        kill_while_saving(save_forever, rng.uniform(0.0, 0.3))
        loaded = dict(GeARModel.from_pretrained(folder).named_parameters())
        matching = [all(torch.equal(loaded[name], p) for name, p in version.items()) for version in weights]
        assert sum(matching) == 1
        assert (folder / "README.md").read_text() == "my model card"
        assert len([p for p in tmp_path.iterdir() if p.name.startswith(TEMPORARY_PREFIX)]) <= 1
    versions[0].save_pretrained(folder)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


# ---- damaged model weights -------------------------------------------------------------------------------


def test_damaged_weights_are_refused_naming_the_file(tiny_encoder_dir, tmp_path):
    """Flipped bytes in a shard loaded silently and changed the embeddings; a NaN tensor loaded and every
    sentence score became 0."""
    import torch
    from safetensors.torch import load_file, save_file

    from gear_core import GeARModel
    from gear_core.files import CHECKSUMS_FILE, CorruptFileError

    model = tiny_gear(tiny_encoder_dir)
    model.save_pretrained(tmp_path, max_shard_size="500KB")
    assert (tmp_path / CHECKSUMS_FILE).is_file()
    GeARModel.from_pretrained(tmp_path)  # intact: loads

    shard = sorted(tmp_path.glob("model-*.safetensors"))[1]
    original = shard.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0x10  # one bit inside a tensor's data: safetensors itself cannot notice
    shard.write_bytes(bytes(damaged))
    with pytest.raises(CorruptFileError, match=rf"{shard.name} is damaged or was changed after saving"):
        GeARModel.from_pretrained(tmp_path)
    shard.write_bytes(original)

    # A NaN tensor in a folder without checksums (written by other tools) is caught by the finite check.
    tensors = load_file(shard)
    name = next(iter(tensors))
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, shard, metadata={"format": "pt"})
    (tmp_path / CHECKSUMS_FILE).unlink()
    with pytest.raises(CorruptFileError, match="records no checksums"):
        GeARModel.from_pretrained(tmp_path)
    with pytest.raises(CorruptFileError, match=rf"{name} holds NaN"):
        GeARModel.from_pretrained(tmp_path, verify=False)


def test_what_cannot_be_verified_is_refused(tiny_encoder_dir, tmp_path):
    """With checksums.sha256 deleted or a line removed nothing was verified; a deleted tokenizer.json loaded a
    6-token tokenizer (every word [UNK]) and the ranking changed silently."""
    from gear_core import GeARModel
    from gear_core.files import CHECKSUMS_FILE, CorruptFileError

    tiny_gear(tiny_encoder_dir).save_pretrained(tmp_path)
    checksums = tmp_path / CHECKSUMS_FILE
    lines = checksums.read_text().splitlines(keepends=True)
    checksums.write_text("".join(line for line in lines if not line.endswith("config.json\n")))
    with pytest.raises(CorruptFileError, match=r"config\.json is not listed in .*verify=False"):
        GeARModel.from_pretrained(tmp_path)
    checksums.write_text("".join(lines))
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json is missing"):
        GeARModel.from_pretrained(tmp_path)
    checksums.write_text("".join(line for line in lines if not line.endswith("tokenizer.json\n")))
    with pytest.raises(FileNotFoundError, match="has no tokenizer"):
        GeARModel.from_pretrained(tmp_path)
    checksums.unlink()
    with pytest.raises(CorruptFileError, match="records no checksums"):
        GeARModel.from_pretrained(tmp_path)


def test_the_shipped_model_records_its_checksums():
    from gear_core import DEFAULT_MODEL
    from gear_core.files import read_checksums, verify_checksums

    names = set(read_checksums(DEFAULT_MODEL))
    assert {"config.json", "model.safetensors.index.json", "tokenizer.json"} <= names
    assert sum(name.endswith(".safetensors") for name in names) == 3
    assert verify_checksums(DEFAULT_MODEL)


def test_checksum_files_and_names_are_checked(tmp_path):
    from gear_core.files import (
        CHECKSUMS_FILE,
        CorruptFileError,
        plain_file_name,
        verify_checksums,
        write_atomic,
        write_checksums,
    )

    assert verify_checksums(tmp_path) is False  # nothing recorded: nothing to check
    write_atomic(tmp_path / "a.txt", "first")
    write_atomic(tmp_path / "a.txt", "second")  # replaces, and leaves no temporary file behind
    assert (tmp_path / "a.txt").read_text() == "second" and len(list(tmp_path.iterdir())) == 1
    write_checksums(tmp_path, ["a.txt"])
    assert verify_checksums(tmp_path)
    (tmp_path / "a.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"a\.txt is missing"):
        verify_checksums(tmp_path)
    (tmp_path / CHECKSUMS_FILE).write_text("not a checksum line\n")
    with pytest.raises(CorruptFileError, match=r"checksums\.sha256:1 is not"):
        verify_checksums(tmp_path)
    (tmp_path / CHECKSUMS_FILE).write_text(f"{'0' * 64}  ../../etc/passwd\n")
    with pytest.raises(CorruptFileError, match="not a file name inside the folder"):
        verify_checksums(tmp_path)
    assert plain_file_name("index-1.faiss", "x") == "index-1.faiss"
    for bad in ("", ".", "..", "a/b", "/abs", "a\\b", None, 3, "*", "index-?.faiss", "[a-z]*"):
        with pytest.raises(CorruptFileError):
            plain_file_name(bad, "x")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("decoder_num_layer", 2, "unknown GeARConfig field"),  # a typo was silently ignored
        ("max_query_length", "64", "must be an int"),
        ("max_query_length", 64.0, "must be an int"),
        ("momentum", 1.0, "momentum must lie in"),
        ("soft_label_weight", float("nan"), "must be a finite number"),
        ("lm_loss_weight", -1.0, "must not be negative"),
        ("retrieval_sentence_weight", -0.5, "must not be negative"),
        ("retrieval_sentence_weight", float("inf"), "must be a finite number"),
        ("shared_encoder", "yes", "must be true or false"),
        ("queue_size", True, "must be an int"),
        ("cross_attention_layers", ["1"], "list of ints"),
        ("decoder_num_layers", -1, "non-negative int or None"),
    ],
)
def test_config_fields_are_validated(field, value, message):
    from gear_core import GeARConfig

    with pytest.raises(ValueError, match=message):
        GeARConfig(**{field: value})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("layer_norm_eps", float("nan"), "layer_norm_eps"),  # every score was NaN
        ("layer_norm_eps", -1e-12, "layer_norm_eps"),
        ("num_hidden_layers", 10**6, r"num_hidden_layers.*\[1, 128\]"),  # memory grew until the process was killed
        ("vocab_size", 10**9, "vocab_size"),
        ("hidden_dropout_prob", 1.5, "hidden_dropout_prob"),
        ("max_position_embeddings", "512", "max_position_embeddings"),
    ],
)
def test_absurd_encoder_values_are_refused(key, value, message):
    from transformers import BertConfig

    from gear_core import GeARConfig

    encoder = BertConfig().to_dict() | {key: value}
    with pytest.raises(ValueError, match=message):
        GeARConfig(encoder_config=encoder)


def test_a_malformed_config_json_is_refused(tiny_encoder_dir, tmp_path):
    import json

    from gear_core import GeARModel

    tiny_gear(tiny_encoder_dir).save_pretrained(tmp_path)
    (tmp_path / "checksums.sha256").unlink()  # as if edited by hand, loaded unchecked on purpose
    config = json.loads((tmp_path / "config.json").read_text())
    config["ranking_layr"] = 0
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="ranking_layr"):
        GeARModel.from_pretrained(tmp_path, verify=False)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises((ValueError, OSError), match=r"config\.json"):
        GeARModel.from_pretrained(tmp_path, verify=False)


# ---- bad inputs ------------------------------------------------------------------------------------------

BAD_CALLS = {
    # name: (call(model, searcher), error type, message)
    "no_repeat_ngram_size=1.5": (
        lambda m, s: m.generate("q", "d.", no_repeat_ngram_size=1.5),
        ValueError,
        "non-negative",
    ),
    "searcher batch_size=0": (lambda m, s: setattr(s, "batch_size", 0), ValueError, "batch_size must be a positive"),
    "highlighter min_score=nan": (lambda m, s: GeARHighlighter(model=m, min_score=float("nan")), ValueError, "finite"),
    "highlighter max_new_tokens=-1": (lambda m, s: GeARHighlighter(model=m, max_new_tokens=-1), ValueError, "greater"),
    "ground_evidence(None, ...)": (lambda m, s: ground_evidence(None, "d"), TypeError, "text must be a str"),
    "search top_sentences=2.5": (lambda m, s: s.search("q", top_sentences=2.5), ValueError, "top_n must be"),
    "search k=True": (lambda m, s: s.search("q", k=True), ValueError, "k must be a positive int"),
    "generate max_new_tokens=-1": (lambda m, s: m.generate("q", "d.", max_new_tokens=-1), ValueError, "max_new"),
    "rank_sentences(b'..')": (lambda m, s: m.rank_sentences("q", b"d."), TypeError, "expected str"),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_parameters_get_clear_errors(tiny_model, name):
    from gear_core.retrieval import GeARSearcher

    call, error, message = BAD_CALLS[name]
    searcher = GeARSearcher.from_documents(tiny_model, ["Paris is big. It is old.", "Rome is old."])
    with pytest.raises(error, match=message):
        call(tiny_model, searcher)


# ---- memory ----------------------------------------------------------------------------------------------


def test_ranking_hands_freed_memory_back_after_each_batch(tiny_model, monkeypatch):
    """glibc kept each batch's freed activations and `gear eval --tasks long` grew to 24 GB; the ranking loop now
    trims after each batch (benchmarks/results/ranking_memory.md measures the memory)."""
    import gear_core.allocator
    from gear_core.ranking import document_windows

    documents = ["Paris is big. It is old. " * 12, "Rome is old. It has a river. " * 15, "Oslo is cold."]
    queries = ["is it old", "a river", "cold"]
    windows = len(document_windows(tiny_model, documents)["input_ids"])
    assert windows > 4  # several batches of two windows
    expected = tiny_model.sentence_scores_batch(queries, documents, batch_size=2)
    trims = []
    monkeypatch.setattr(gear_core.allocator, "_MALLOC_TRIM", lambda pad: trims.append(pad) or 1)
    scored = tiny_model.sentence_scores_batch(queries, documents, batch_size=2)
    assert trims == [0] * -(-windows // 2)
    for got, want in zip(scored[1][0], expected[1][0], strict=True):
        np.testing.assert_array_equal(got, want)
    monkeypatch.setattr(gear_core.allocator, "_MALLOC_TRIM", None)  # a C library without malloc_trim
    assert gear_core.allocator.release_freed_memory() is False
    without = tiny_model.sentence_scores_batch(queries, documents, batch_size=2)
    for got, want in zip(without[1][0], expected[1][0], strict=True):
        np.testing.assert_array_equal(got, want)
