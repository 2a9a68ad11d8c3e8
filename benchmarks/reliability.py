"""Reliability probes: what a hostile but fair user tries, and whether each gets a correct result or a clear error,
with nothing lost.

    python benchmarks/reliability.py [--model FOLDER] [--kills 10] [--out benchmarks/results/reliability.md]

Each probe is a call with an expected outcome:

- ``result``: valid but odd input (Unicode, huge, empty, structured text): the answer must be right (offsets slice
  the text exactly, vectors are finite, every sentence is ranked).
- ``error``: bad input or a damaged file: the call must raise one of the errors a caller can handle (ValueError,
  TypeError, FileNotFoundError and their subclasses) whose message names what is wrong (the parameter or the file).
  For the CLI: exit code 2, a last stderr line starting with ``gear``, no traceback.
- nothing lost: saves beside a user's files, over metadata edited to name them, through planted symbolic links,
  with text that is not valid UTF-8: the user's files stay byte for byte and the save loads.
- concurrency: results under threads and concurrent tasks identical to serial ones.
- crash during save: a process saving over an existing index, retriever or model is SIGKILLed at random moments;
  the folder must load afterwards, as one whole version (nothing lost).

The run uses the shipped model on the CPU; the one timing is ``gear --help`` (arguments are parsed before the
heavy imports), so run it with the cores free.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import io
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import torch
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.core.storage.docstore import SimpleDocumentStore

from gear_core import DEFAULT_MODEL, GeARModel, split_sentences
from gear_core.cli import main as gear_cli
from gear_core.evidence import ground_evidence
from gear_core.files import TEMPORARY_PREFIX, sha256_file
from gear_core.retrieval import DocumentIndex, GeARSearcher
from llama_index_gear import GeARHighlighter, GeARRetriever

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _results import write_result
from reliability_helpers import (
    INDEX_MODEL,
    frequent_thread_switches,
    index_versions,
    kill_while_saving,
    random_unit_vectors,
    retriever_versions,
    save_in_turn,
)

HANDLED = (ValueError, TypeError, FileNotFoundError)


@dataclass
class Outcome:
    category: str
    name: str
    ok: bool
    detail: str = ""


def expect_error(category: str, name: str, call: Callable[[], object], needle: str) -> Outcome:
    """A clear error: a handled type, whose message names ``needle``."""
    try:
        call()
    except HANDLED as error:
        message = str(error)
        clear = needle.lower() in message.lower()
        return Outcome(category, name, clear, "" if clear else f"{type(error).__name__}: {message[:120]}")
    except Exception as error:
        return Outcome(category, name, False, f"{type(error).__name__}: {str(error)[:120]}")
    return Outcome(category, name, False, "accepted")


def expect_result(category: str, name: str, check: Callable[[], bool]) -> Outcome:
    try:
        ok = bool(check())
    except Exception as error:
        return Outcome(category, name, False, f"{type(error).__name__}: {str(error)[:120]}")
    return Outcome(category, name, ok, "" if ok else "wrong result")


# ---- probes ------------------------------------------------------------------------------------------------

ODD_TEXTS = {
    "RTL": "القاهرة هي عاصمة مصر. تقع على نهر النيل.",
    "combining marks": "Cafe\u0301 de Flore is old. Cre\u0300me bru\u0302le\u0301e is sweet.",
    "ZWJ emoji": "The family 👨\u200d👩\u200d👧 is here. Flags 🇫🇷 wave.",
    "control characters": "First\x00 sentence\x07 here.\x1b Second one.",
    "lone surrogate": "A \ud800 b. Another sentence \udfff here.",
    "NBSP and zero-width": "Paris\u00a0is big.\u200b It is\u200b old.",
    "CJK": "北京是中国的首都。上海是最大的城市！",
    "Markdown": "# Title\nIntro text here.\n- item one\n- item two\n1. first\n2. second",
    "HTML": "<h1>Title</h1><p>Paragraph one.</p><ul><li>Item</li></ul>",
    "one long word": "x" * 5000,
    "200k characters": "Paris is the capital of France. " * 6250,
    "whitespace only": " \n\t ",
    "empty": "",
}


def text_probes(model: GeARModel) -> list[Outcome]:
    outcomes = []
    for name, text in ODD_TEXTS.items():

        def ranking_is_exact(text: str = text) -> bool:
            ranked = model.rank_sentences("what is it", text, top_n=None)
            exact = all(text[s.start_char : s.end_char] == s.text for s in ranked)
            return exact and len(ranked) == len(split_sentences(text)) and all(np.isfinite(s.score) for s in ranked)

        outcomes.append(expect_result("odd text", f"rank_sentences: {name}", ranking_is_exact))
        outcomes.append(
            expect_result(
                "odd text",
                f"encode_documents: {name}",
                lambda text=text: np.isfinite(model.encode_documents([text])).all(),
            )
        )

        def highlight_is_exact(text: str = text) -> bool:
            node = NodeWithScore(node=TextNode(text=text), score=1.0)
            [result] = GeARHighlighter(model=model, top_n=2).postprocess_nodes([node], query_str="what is it")
            content = result.node.get_content()
            highlights = result.node.metadata.get("gear_highlights", [])
            return all(content[h["start_char_idx"] : h["end_char_idx"]] == h["text"] for h in highlights)

        outcomes.append(expect_result("odd text", f"highlighter: {name}", highlight_is_exact))

    def evidence_is_grounded_text() -> bool:
        document = "A \ud800 b. It is here."
        evidence = ground_evidence(model.generate("a \ud800?", document), document)
        span = evidence.start_char is None or document[evidence.start_char : evidence.end_char] is not None
        return isinstance(evidence.text, str) and span and 0 <= evidence.support <= 1

    outcomes.append(expect_result("odd text", "generate + ground_evidence: lone surrogate", evidence_is_grounded_text))
    return outcomes


def parameter_probes(model: GeARModel, searcher: GeARSearcher) -> list[Outcome]:
    document = "Paris is the capital. It is big."
    nodes = [TextNode(text=document)]
    cases: list[tuple[str, Callable[[], object], str]] = [
        ("encode_queries('a string')", lambda: model.encode_queries("a query"), "single string"),
        ("encode_queries([1])", lambda: model.encode_queries([1]), "expected str"),
        ("encode_documents(batch_size=0)", lambda: model.encode_documents(["x"], batch_size=0), "batch_size"),
        ("encode_documents(batch_size=True)", lambda: model.encode_documents(["x"], batch_size=True), "batch_size"),
        ("rank_sentences(top_n=0)", lambda: model.rank_sentences("q", document, top_n=0), "top_n"),
        ("rank_sentences(top_n=-1)", lambda: model.rank_sentences("q", document, top_n=-1), "top_n"),
        ("rank_sentences(top_n=2.5)", lambda: model.rank_sentences("q", document, top_n=2.5), "top_n"),
        ("rank_sentences(None, ...)", lambda: model.rank_sentences(None, document), "expected str"),
        ("rank_sentences(q, b'bytes')", lambda: model.rank_sentences("q", b"x"), "expected str"),
        ("rank_sentences_batch(2 queries, 1 doc)", lambda: model.rank_sentences_batch(["a", "b"], [document]), "pair"),
        ("generate(max_new_tokens=-1)", lambda: model.generate("q", document, max_new_tokens=-1), "max_new_tokens"),
        ("generate(max_new_tokens=2.5)", lambda: model.generate("q", document, max_new_tokens=2.5), "max_new_tokens"),
        (
            "generate(no_repeat_ngram_size=1.5)",
            lambda: model.generate("q", document, no_repeat_ngram_size=1.5),
            "ngram",
        ),
        ("search(k=0)", lambda: searcher.search("q", k=0), "k must"),
        ("search(k=True)", lambda: searcher.search("q", k=True), "k must"),
        ("search(top_sentences=0)", lambda: searcher.search("q", top_sentences=0), "top_n"),
        ("search(query=1)", lambda: searcher.search(1), "query"),
        ("searcher.batch_size = 0", lambda: setattr(searcher, "batch_size", 0), "batch_size"),
        ("add_documents(2 ids for 1 text)", lambda: searcher.add_documents(["x"], ids=["a", "b"]), "ids"),
        ("add_documents(duplicate id)", lambda: searcher.add_documents(["x"], ids=[searcher.index.ids[0]]), "unique"),
        ("GeARHighlighter(top_n=0)", lambda: GeARHighlighter(model=model, top_n=0), "top_n"),
        ("GeARHighlighter(min_score=nan)", lambda: GeARHighlighter(model=model, min_score=float("nan")), "min_score"),
        ("GeARHighlighter(mode='x')", lambda: GeARHighlighter(model=model, mode="x"), "mode"),
        ("GeARHighlighter(neighbors=-1)", lambda: GeARHighlighter(model=model, neighbors=-1), "neighbors"),
        ("GeARHighlighter(max_new_tokens=-1)", lambda: GeARHighlighter(model=model, max_new_tokens=-1), "max_new"),
        (
            "GeARRetriever(similarity_top_k=0)",
            lambda: GeARRetriever.from_defaults(nodes=nodes, model=model, similarity_top_k=0),
            "top_k",
        ),
        (
            "GeARRetriever(index_type='x')",
            lambda: GeARRetriever.from_defaults(nodes=nodes, model=model, index_type="x"),
            "index_type",
        ),
        (
            "GeARRetriever(nodes and docstore)",
            lambda: GeARRetriever.from_defaults(nodes=nodes, docstore=SimpleDocumentStore(), model=model),
            "exactly one",
        ),
        ("ground_evidence(min_support=2)", lambda: ground_evidence("a", "a b", min_support=2), "min_support"),
        ("ground_evidence(None, ...)", lambda: ground_evidence(None, "a"), "text"),
        (
            "GeARConfig(typo field)",
            lambda: GeARModel.from_encoder(DEFAULT_MODEL, decoder_num_layer=2),
            "decoder_num_layer",
        ),
        ("DocumentIndex(dim=0)", lambda: DocumentIndex(0), "dim"),
        ("DocumentIndex.add(unnormalised)", lambda: DocumentIndex(4).add(np.ones((1, 4)), ["a"], ["t"]), "normalised"),
        ("DocumentIndex.add(NaN)", lambda: DocumentIndex(4).add(np.full((1, 4), np.nan), ["a"], ["t"]), "NaN"),
    ]
    return [expect_error("bad parameter", name, call, needle) for name, call, needle in cases]


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flip a bit":
        damaged = bytearray(data)
        damaged[len(damaged) // 2] ^= 0x04
        path.write_bytes(bytes(damaged))
    elif how == "delete":
        path.unlink()
    elif how == "garbage":
        path.write_bytes(b"\x00\xffnot what it was")


def file_probes(model: GeARModel, work: Path) -> list[Outcome]:
    outcomes = []
    texts = [f"Document {i} is about topic {i}. It has a second sentence." for i in range(40)]

    def fresh_retriever(folder: Path) -> dict:
        retriever = GeARRetriever.from_defaults(
            nodes=[TextNode(text=t, id_=f"n{i}") for i, t in enumerate(texts)], model=model
        )
        retriever.persist(folder)
        return json.loads((folder / "gear_retriever.json").read_text())

    # The index inside a persisted retriever, and the retriever's own files.
    for target in ("gear_retriever.json", "docstore", "gear_index.json", "index.faiss", "documents.jsonl"):
        for how in ("truncate", "flip a bit", "delete", "garbage"):
            folder = work / f"retriever-{target}-{how}".replace(" ", "-")
            settings = fresh_retriever(folder)
            index_folder = folder / settings["files"]["index"]
            metadata = json.loads((index_folder / "gear_index.json").read_text())
            path = {
                "gear_retriever.json": folder / "gear_retriever.json",
                "docstore": folder / settings["files"]["docstore"],
                "gear_index.json": index_folder / "gear_index.json",
                "index.faiss": index_folder / metadata["files"]["index"],
                "documents.jsonl": index_folder / metadata["files"]["documents"],
            }[target]
            damage(path, how)
            outcomes.append(
                expect_error(
                    "damaged file",
                    f"retriever: {how} {target}",
                    lambda folder=folder: GeARRetriever.from_persist_dir(folder, model=model),
                    path.name,
                )
            )
    folder = work / "retriever-one-letter"
    settings = fresh_retriever(folder)
    docstore = folder / settings["files"]["docstore"]
    docstore.write_text(docstore.read_text().replace("topic 7", "topic 8", 1))
    outcomes.append(
        expect_error(
            "damaged file",
            "retriever: one letter of a node changed",
            lambda: GeARRetriever.from_persist_dir(folder, model=model),
            docstore.name,
        )
    )
    folder = work / "retriever-null-model"
    settings = fresh_retriever(folder)
    metadata_path = folder / settings["files"]["index"] / "gear_index.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["model"] = None
    metadata_path.write_text(json.dumps(metadata))
    outcomes.append(
        expect_error(
            "damaged file",
            'index: "model": null',
            lambda: GeARRetriever.from_persist_dir(folder, model=model),
            "does not record",
        )
    )

    # Model folders.
    for target in ("shard", "config.json", "tokenizer.json", "model.safetensors.index.json"):
        for how in ("truncate", "flip a bit", "delete", "garbage"):
            folder = work / f"model-{target}-{how}".replace(" ", "-")
            shutil.copytree(DEFAULT_MODEL, folder)
            path = sorted(folder.glob("model-*.safetensors"))[1] if target == "shard" else folder / target
            damage(path, how)
            outcomes.append(
                expect_error(
                    "damaged file",
                    f"model: {how} {target}",
                    lambda folder=folder: GeARModel.from_pretrained(folder),
                    path.name,
                )
            )
    folder = work / "model-nan"
    model.save_pretrained(folder)
    (folder / "checksums.sha256").unlink()  # a folder written by other tools: no checksums to catch it
    from safetensors.torch import load_file, save_file

    shard = next(folder.glob("*.safetensors"))
    tensors = load_file(shard)
    name = next(k for k in tensors if "query_encoder" in k and tensors[k].is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, shard, metadata={"format": "pt"})
    outcomes.append(
        expect_error("damaged file", "model: no checksums", lambda: GeARModel.from_pretrained(folder), "checksums")
    )
    outcomes.append(
        expect_error(
            "damaged file",
            "model: a NaN tensor, no checksums, verify=False",
            lambda: GeARModel.from_pretrained(folder, verify=False),
            name,
        )
    )
    outcomes += verification_probes(work)
    return outcomes


def verification_probes(work: Path) -> list[Outcome]:
    """What loading cannot verify (issue 31, points 6 and 8): each refused, naming the file or the value."""
    from gear_core.files import CHECKSUMS_FILE, write_checksums

    def shipped_copy(name: str) -> Path:
        folder = work / f"verify-{name}"
        shutil.copytree(DEFAULT_MODEL, folder)
        return folder

    outcomes = []
    folder = shipped_copy("line-removed")
    lines = (folder / CHECKSUMS_FILE).read_text().splitlines(keepends=True)
    (folder / CHECKSUMS_FILE).write_text("".join(line for line in lines if not line.endswith("config.json\n")))
    outcomes.append(
        expect_error(
            "damaged file", "model: a checksums line removed", lambda: GeARModel.from_pretrained(folder), "config.json"
        )
    )
    folder = shipped_copy("checksums-flipped")
    damage(folder / CHECKSUMS_FILE, "flip a bit")
    outcomes.append(
        expect_error(
            "damaged file",
            "model: a byte flipped in checksums.sha256",
            lambda: GeARModel.from_pretrained(folder),
            "checksums.sha256",
        )
    )
    folder = shipped_copy("no-checksums")
    (folder / CHECKSUMS_FILE).unlink()
    outcomes.append(
        expect_error(
            "damaged file", "model: checksums.sha256 deleted", lambda: GeARModel.from_pretrained(folder), "checksums"
        )
    )
    # Config values a tool wrote and checksummed: valid JSON, absurd values.
    for key, value in (("layer_norm_eps", float("nan")), ("num_hidden_layers", 10**6), ("vocab_size", 10**9)):
        folder = shipped_copy(key)
        config = json.loads((folder / "config.json").read_text())
        config["encoder_config"][key] = value
        (folder / "config.json").write_text(json.dumps(config))
        write_checksums(folder, [line.split()[-1] for line in lines])
        outcomes.append(
            expect_error(
                "damaged file",
                f"model: config {key} = {value}",
                lambda folder=folder: GeARModel.from_pretrained(folder),
                key,
            )
        )
    # A non-finite vector in a FAISS file whose checksum was recorded with it (it vanished from results).
    folder = work / "index-nan"
    index = index_versions(50)[0]
    index.save(folder)
    metadata = json.loads((folder / "gear_index.json").read_text())
    index_path = folder / metadata["files"]["index"]
    vectors = random_unit_vectors(50, 16, 0)
    vectors[3, 5] = np.nan
    damaged = faiss.read_index(str(index_path))
    damaged.reset()
    damaged.add(vectors)
    faiss.write_index(damaged, str(index_path))
    metadata["sha256"]["index"] = sha256_file(index_path)
    (folder / "gear_index.json").write_text(json.dumps(metadata))
    outcomes.append(
        expect_error(
            "damaged file",
            "index: a NaN vector, checksum recorded with it",
            lambda: DocumentIndex.load(folder, expected_model=INDEX_MODEL),
            index_path.name,
        )
    )
    return outcomes


def nothing_lost_probes(model: GeARModel, work: Path) -> list[Outcome]:
    """Saves beside a user's files, over metadata edited to name them, through planted links, with text that is
    not valid UTF-8 (issue 31, points 1, 2 and 7): the user's files stay byte for byte, the save loads."""
    theirs = {
        "draft.tmp": "a draft",
        "index-notes.faiss": "notes",
        "documents-2023.jsonl": "{}",
        "docstore-archive.json": "{}",
        "gear_index-mine/notes.txt": "mine",
        "my_project/main.py": "print()",
        "model_backup.safetensors": "weights",
        "README.md": "my model card",
    }

    def planted(name: str) -> Path:
        folder = work / f"lost-{name}"
        for file, text in theirs.items():
            (folder / file).parent.mkdir(parents=True, exist_ok=True)
            (folder / file).write_text(text)
        return folder

    def kept(folder: Path) -> bool:
        return all((folder / file).read_text() == text for file, text in theirs.items())

    outcomes = []
    versions = index_versions(20)
    folder = planted("index")

    def index_saves_beside_theirs() -> bool:
        versions[0].save(folder)
        versions[1].save(folder)
        for name in ("*", "draft.tmp", "index-[0-9]*.faiss"):  # metadata edited to name their files
            metadata = json.loads((folder / "gear_index.json").read_text())
            metadata["files"]["index"] = name
            (folder / "gear_index.json").write_text(json.dumps(metadata))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                versions[0].save(folder)
        return kept(folder) and DocumentIndex.load(folder, expected_model=INDEX_MODEL).ids == versions[0].ids

    outcomes.append(
        expect_result("nothing lost", "index saves beside a user's files, metadata edited", index_saves_beside_theirs)
    )

    folder = planted("retriever")
    retriever = GeARRetriever.from_defaults(
        nodes=[TextNode(text=f"Node {i} is about topic {i}.", id_=f"n{i}") for i in range(10)], model=model
    )

    def retriever_persists_beside_theirs() -> bool:
        retriever.persist(folder)
        retriever.persist(folder)
        for key, name in (("index", "*"), ("docstore", "draft.tmp"), ("index", "my_project")):
            settings = json.loads((folder / "gear_retriever.json").read_text())
            settings["files"][key] = name
            (folder / "gear_retriever.json").write_text(json.dumps(settings))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                retriever.persist(folder)
        again = GeARRetriever.from_persist_dir(folder, model=model)
        return kept(folder) and len(again.searcher.index) == 10

    outcomes.append(
        expect_result(
            "nothing lost",
            "retriever persists beside a user's files, settings edited",
            retriever_persists_beside_theirs,
        )
    )

    folder = planted("model")

    def model_saves_beside_theirs() -> bool:
        model.save_pretrained(folder)
        model.save_pretrained(folder)
        return kept(folder) and torch.equal(GeARModel.from_pretrained(folder).temperature, model.temperature)

    outcomes.append(
        expect_result("nothing lost", "model saves over itself beside a user's files", model_saves_beside_theirs)
    )
    victim = work / "victim.json"
    victim.write_text("precious")
    (folder / "config.json").unlink()
    (folder / "config.json").symlink_to(victim)
    outcomes.append(
        expect_error(
            "nothing lost",
            "model save through a planted link: refused",
            lambda: model.save_pretrained(folder),
            "symbolic link",
        )
    )
    outcomes.append(
        expect_result(
            "nothing lost",
            "model save through a planted link: the target kept",
            lambda: victim.read_text() == "precious",
        )
    )

    surrogates = ["caf\udce9 au lait.", "half \ud83d of an emoji.", "\ude00 the other half."]

    def surrogates_persist() -> bool:
        folder = work / "lost-surrogates"
        nodes = [TextNode(text=text, id_=f"s{i}") for i, text in enumerate(surrogates)]
        GeARRetriever.from_defaults(nodes=nodes, model=model).persist(folder)
        again = GeARRetriever.from_persist_dir(folder, model=model)
        return sorted(again.searcher.index.get_text(f"s{i}") for i in range(3)) == sorted(surrogates)

    outcomes.append(expect_result("nothing lost", "lone surrogates persist and reload", surrogates_persist))

    folder = work / "lost-surrogate-pair"
    pair = GeARRetriever.from_defaults(nodes=[TextNode(text="Smile \ud83d\ude00.", id_="p")], model=model)
    outcomes.append(
        expect_error(
            "nothing lost",
            "a character as two surrogates (JSON would join them): refused at persist",
            lambda: pair.persist(folder),
            "two surrogates",
        )
    )
    outcomes.append(expect_result("nothing lost", "a refused persist writes nothing", lambda: not folder.exists()))
    return outcomes


def run_cli(argv: list[str]) -> tuple[object, str, str]:
    """``gear ARGV`` in this process: the exit code (or the exception's name), stdout and stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        try:
            code = gear_cli(argv)
        except SystemExit as exit_:
            code = exit_.code
        except Exception as error:
            code = f"{type(error).__name__}"
    return code, stdout.getvalue(), stderr.getvalue()


def cli_probes(model_folder: str, work: Path) -> list[Outcome]:
    binary = work / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")
    not_json = work / "not-json.json"
    not_json.write_text("this is not JSON")
    damaged = work / "cli-damaged-model"
    shutil.copytree(model_folder, damaged)
    damage(sorted(damaged.glob("model-*.safetensors"))[0], "flip a bit")
    out = work / "cli-out"
    highlight = ["highlight", model_folder, "--query"]
    cases = {  # name -> (argv, what the one line must name)
        "wrong model name": (["info", "no-such-model"], "no-such-model"),
        "binary --file": ([*highlight, "q", "--file", str(binary)], str(binary)),
        "missing --file": ([*highlight, "q", "--file", str(work / "missing.txt")], "missing.txt"),
        "a folder as --file": ([*highlight, "q", "--file", str(work)], str(work)),
        "/dev/null as --file": ([*highlight, "q", "--file", "/dev/null"], "/dev/null"),
        "empty --document": ([*highlight, "q", "--document", ""], "--document"),
        "blank --query": ([*highlight, " ", "--document", "A. B."], "--query"),
        "--top-n 0": ([*highlight, "q", "--document", "A. B.", "--top-n", "0"], "--top-n"),
        "damaged model": (["info", str(damaged)], "safetensors"),
        "init from a missing encoder": (["init", "/nonexistent", str(out)], "/nonexistent"),
        "init from a GeAR folder": (["init", model_folder, str(out)], model_folder),
        "init --decoder-layers -1": (["init", "/nonexistent", str(out), "--decoder-layers", "-1"], "--decoder-layers"),
        "export --max-shard-size abc": (
            ["export", model_folder, str(out), "--max-shard-size", "abc"],
            "--max-shard-size",
        ),
        "eval --squad not JSON": (["eval", model_folder, "--squad", str(not_json)], str(not_json)),
        "eval with missing data": (["eval", model_folder, "--squad", str(work / "missing.json")], "missing.json"),
        "synthesize --wiki not JSON": (
            ["synthesize", "--wiki", str(not_json), "--no-filter", "--out", str(out)],
            str(not_json),
        ),
        "missing train config": (["train", "-c", "no-such-config"], "no-such-config"),
    }
    outcomes = []
    for name, (argv, needle) in cases.items():
        code, _, err = run_cli(argv)
        lines = err.strip().splitlines()
        ok = code == 2 and bool(lines) and lines[-1].startswith("gear") and needle in lines[-1]
        ok = ok and "Traceback" not in err and not out.exists()  # nothing half-written
        outcomes.append(Outcome("CLI", name, ok, "" if ok else f"exit {code}: {lines[-1:]}"))

    crlf = work / "crlf.txt"
    crlf.write_bytes(b"Intro line here.\r\nThe tower is in Paris.\r\nIt was finished in 1889.\r\nIt is tall.")

    def offsets_slice_the_file() -> bool:
        code, printed, _ = run_cli([*highlight, "when was it finished", "--file", str(crlf), "--top-n", "4"])
        spans = re.findall(r"\((\d+):(\d+)\) (.*)", printed)  # the 4 sentences, and the evidence if any
        text = crlf.read_bytes().decode("utf-8")
        return code == 0 and len(spans) >= 4 and all(text[int(a) : int(b)] == s for a, b, s in spans)

    outcomes.append(expect_result("CLI", "highlight --file CRLF: offsets slice the file", offsets_slice_the_file))

    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gear_core.cli", "--help"], capture_output=True, check=True)
        seconds.append(time.perf_counter() - start)
    help_seconds = sorted(seconds)[1]
    outcomes.append(
        Outcome("CLI", f"gear --help in {help_seconds:.2f} s (median of 3; target < 2 s)", help_seconds < 2)
    )
    return outcomes


def concurrency_probes(model: GeARModel, rounds: int) -> list[Outcome]:
    texts = [" ".join(f"Fact {i}.{j} is about topic{i} and item{j}." for j in range(2 + i % 9)) for i in range(24)]
    queries = [f"what is item{i % 5} {'and the other one ' * (i % 4)}" for i in range(24)]

    def job(kind: str, i: int):
        if kind == "query":
            return model.encode_queries([texts[i]])[0].tolist()
        if kind == "document":
            return model.encode_documents([texts[i]])[0].tolist()
        return [(s.start_char, s.score) for s in model.rank_sentences(queries[i], texts[i], top_n=None)]

    jobs = [(kind, i) for i in range(24) for kind in ("query", "document", "ranking")]
    serial = {j: job(*j) for j in jobs}
    same = total = 0
    with frequent_thread_switches(), ThreadPoolExecutor(8) as pool:
        for _ in range(rounds):
            for j, result in zip(jobs, pool.map(lambda j: job(*j), jobs), strict=True):
                same += result == serial[j]
                total += 1
    outcomes = [Outcome("concurrency", f"8 threads: {same} of {total} results as serial", same == total)]

    highlighter = GeARHighlighter(model=model, top_n=3, generate_evidence=True, max_new_tokens=6)
    calls = [([NodeWithScore(node=TextNode(text=texts[i], id_=f"n{i}"), score=1.0)], queries[i]) for i in range(20)]

    def summary(nodes):
        return [(n.node.metadata["gear_highlights"], n.node.metadata["gear_evidence"]) for n in nodes]

    serial_calls = [summary(highlighter.postprocess_nodes(n, query_str=q)) for n, q in calls]

    async def all_at_once():
        return await asyncio.gather(*(highlighter.apostprocess_nodes(n, query_str=q) for n, q in calls))

    same = total = 0
    with frequent_thread_switches():
        for _ in range(rounds):
            for result, expected in zip(asyncio.run(all_at_once()), serial_calls, strict=True):
                same += summary(result) == expected
                total += 1
    outcomes.append(Outcome("concurrency", f"20 async highlighter tasks: {same} of {total} as serial", same == total))
    return outcomes


def crash_probes(model: GeARModel, work: Path, kills: int) -> list[Outcome]:
    rng = random.Random(0)

    def whole_after_kills(what: str, save_forever, load_ids: Callable[[], list[str]], size: int, seconds: float):
        """Kill the saving process ``kills`` times; count the kills after which the folder loads as one version."""
        whole = 0
        for _ in range(kills):
            kill_while_saving(save_forever, rng.uniform(0.0, seconds))
            try:
                ids = load_ids()
                whole += len(ids) == size and len({i[0] for i in ids}) == 1
            except Exception:
                pass
        return Outcome(
            "crash during save", f"{what}: {whole} of {kills} kills left a whole, loadable version", whole == kills
        )

    index_folder, retriever_folder = work / "crash-index", work / "crash-retriever"
    return [
        whole_after_kills(
            "index",
            save_in_turn(index_versions(20000), lambda index: index.save(index_folder)),
            lambda: DocumentIndex.load(index_folder, expected_model=INDEX_MODEL).ids,
            20000,
            0.3,
        ),
        whole_after_kills(
            "retriever",
            save_in_turn(retriever_versions(model, 3000), lambda retriever: retriever.persist(retriever_folder)),
            lambda: GeARRetriever.from_persist_dir(retriever_folder, model=model).searcher.index.ids,
            3000,
            0.5,
        ),
        model_kills(model, work / "crash-model", kills, rng),
    ]


def model_kills(model: GeARModel, folder: Path, kills: int, rng: random.Random) -> Outcome:
    """save_pretrained over itself, killed at random moments: the folder loads as one of the two versions, the
    user's model card stays, and at most one temporary (the killed save's) waits beside it for the next save."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.temperature.add_(0.01)
    versions = [model, other]
    versions[0].save_pretrained(folder)
    (folder / "README.md").write_text("my model card")
    whole = 0
    for _ in range(kills):
        kill_while_saving(save_in_turn(versions, lambda m: m.save_pretrained(folder)), rng.uniform(0.0, 2.0))
        try:
            loaded = GeARModel.from_pretrained(folder).temperature
            one_version = sum(torch.equal(loaded, v.temperature) for v in versions) == 1
            card = (folder / "README.md").read_text() == "my model card"
            temporaries = [p for p in folder.parent.iterdir() if p.name.startswith(TEMPORARY_PREFIX)]
            whole += one_version and card and len(temporaries) <= 1
        except Exception:
            pass
    return Outcome(
        "crash during save", f"model: {whole} of {kills} kills left a whole, loadable version", whole == kills
    )


def report(outcomes: list[Outcome]) -> str:
    categories = list(dict.fromkeys(o.category for o in outcomes))
    lines = [
        "# Reliability probes",
        "",
        "`python benchmarks/reliability.py` (shipped model, CPU). A probe passes when the answer is right (odd but",
        "valid input), the error is clear (a ValueError/TypeError/FileNotFoundError naming the parameter or the file;",
        "for the CLI exit code 2 and one `gear: ...` line naming it, nothing half-written), a user's files beside a",
        "save stay byte for byte, results under concurrency equal the serial ones, and a save killed at a random",
        "moment leaves a whole, loadable version.",
        "",
        "| category | probes | passed |",
        "| --- | ---: | ---: |",
    ]
    for category in categories:
        rows = [o for o in outcomes if o.category == category]
        lines.append(f"| {category} | {len(rows)} | {sum(o.ok for o in rows)} |")
    lines.append(f"| **all** | {len(outcomes)} | {sum(o.ok for o in outcomes)} |")
    failures = [o for o in outcomes if not o.ok]
    lines += ["", "## Failures", ""]
    lines += [f"- {o.category}: {o.name}: {o.detail}" for o in failures] or ["none"]
    lines += ["", "## Every probe", ""]
    lines += [f"- {'pass' if o.ok else 'FAIL'}: {o.category}: {o.name}" for o in outcomes]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs per kind of save")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each concurrency probe")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "reliability.md"))
    args = parser.parse_args()
    model = GeARModel.from_pretrained(args.model).eval()
    searcher = GeARSearcher.from_documents(model, ["Paris is big. It is old.", "Rome is old."], ids=["p", "r"])
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        outcomes = text_probes(model) + parameter_probes(model, searcher) + file_probes(model, work)
        outcomes += nothing_lost_probes(model, work) + cli_probes(args.model, work)
        outcomes += concurrency_probes(model, args.rounds)
        outcomes += crash_probes(model, work, args.kills)
    probes = [{"category": o.category, "name": o.name, "ok": o.ok, "detail": o.detail} for o in outcomes]
    write_result(args.out, report(outcomes).split("\n"), {"args": vars(args), "probes": probes})


if __name__ == "__main__":
    main()
