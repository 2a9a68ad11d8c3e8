"""Reliability probes: what a hostile but fair user tries, and whether each gets a correct result or a clear error,
with nothing lost.

    python benchmarks/reliability.py [--model FOLDER] [--kills 10] [--out benchmarks/results/reliability.md]

Each probe is a call with an expected outcome:

- ``result``: valid but odd input (Unicode, huge, empty, structured text): the answer must be right (offsets slice
  the text exactly, vectors are finite, every sentence is ranked).
- ``error``: bad input or a damaged file: the call must raise one of the errors a caller can handle (ValueError,
  TypeError, FileNotFoundError and their subclasses) whose message names what is wrong (the parameter or the file).
  For the CLI: exit code 2, a last stderr line starting with ``gear``, no traceback.
- concurrency: results under threads and concurrent tasks identical to serial ones.
- crash during save: a process saving over an existing index or retriever is SIGKILLed at random moments; the
  folder must load afterwards, as one whole version (nothing lost).

The run uses the shipped model on the CPU; timings are not reported.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import random
import shutil
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from llama_index.core.schema import NodeWithScore, TextNode
from llama_index.core.storage.docstore import SimpleDocumentStore

from gear_core import DEFAULT_MODEL, GeARModel, split_sentences
from gear_core.cli import main as gear_cli
from gear_core.evidence import ground_evidence
from gear_core.retrieval import DocumentIndex, GeARSearcher
from llama_index_gear import GeARHighlighter, GeARRetriever

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reliability_helpers import (
    INDEX_MODEL,
    frequent_thread_switches,
    index_versions,
    kill_while_saving,
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
    return outcomes


def cli_probes(model_folder: str, work: Path) -> list[Outcome]:
    binary = work / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")
    damaged = work / "cli-damaged-model"
    shutil.copytree(model_folder, damaged)
    damage(sorted(damaged.glob("model-*.safetensors"))[0], "flip a bit")
    cases = {
        "wrong model name": ["info", "no-such-model"],
        "binary --file": ["highlight", model_folder, "--query", "q", "--file", str(binary)],
        "missing --file": ["highlight", model_folder, "--query", "q", "--file", str(work / "missing.txt")],
        "damaged model": ["info", str(damaged)],
        "--top-n 0": ["highlight", model_folder, "--query", "q", "--document", "A. B.", "--top-n", "0"],
        "missing train config": ["train", "-c", "no-such-config"],
        "eval with missing data": ["eval", model_folder, "--squad", str(work / "missing.json")],
    }
    outcomes = []
    for name, argv in cases.items():
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = gear_cli(argv)
            except SystemExit as exit_:
                code = exit_.code
            except Exception as error:
                code = f"{type(error).__name__}"
        lines = stderr.getvalue().strip().splitlines()
        ok = code == 2 and bool(lines) and lines[-1].startswith("gear") and "Traceback" not in stderr.getvalue()
        outcomes.append(Outcome("CLI", name, ok, "" if ok else f"exit {code}: {lines[-1:]}"))
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
    ]


def report(outcomes: list[Outcome]) -> str:
    categories = list(dict.fromkeys(o.category for o in outcomes))
    lines = [
        "# Reliability probes",
        "",
        "`python benchmarks/reliability.py` (shipped model, CPU). A probe passes when the answer is right (odd but",
        "valid input), the error is clear (a ValueError/TypeError/FileNotFoundError naming the parameter or the file;",
        "for the CLI exit code 2 and one `gear: ...` line), results under concurrency equal the serial ones, and a",
        "save killed at a random moment leaves a whole, loadable version.",
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
        outcomes += cli_probes(args.model, work) + concurrency_probes(model, args.rounds)
        outcomes += crash_probes(model, work, args.kills)
    markdown = report(outcomes)
    Path(args.out).write_text(markdown, encoding="utf-8")
    print(markdown.split("## Every probe")[0])


if __name__ == "__main__":
    main()
