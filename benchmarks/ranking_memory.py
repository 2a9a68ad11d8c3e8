"""Peak memory and time of ranking one long document's sentences, by document size, and of ranking many long
documents in one call, with and without handing freed memory back (:mod:`gear_core.allocator`).

    python benchmarks/ranking_memory.py [--sizes 20000 200000 2000000] [--documents 30 100]
        [--model gear-minilm] [--out benchmarks/results/ranking_memory.md]

Each size runs in a fresh process (so its peak resident memory is its own): load the model, build a document of
that many characters from ``../shared/data/wiki-extract`` articles (whole articles joined by blank lines),
then ``rank_sentences`` once. Reports the process's peak resident memory above what it held after loading, the
ranking's wall time, and the document's sentences and windows. Issue 31 measured a (windows x sentences) array:
622 MB at 200 KB, 3.7 GB at 2 MB.

The second table ranks ``--documents`` documents of 40,000 characters (about a whole SQuAD article, what
``gear eval --tasks long`` reads), each with its own question, in one ``rank_sentences_batch`` call: once as
shipped, once with the allocator's release switched off. Without it, glibc kept the freed memory of each batch
and the task's memory grew with its length (24 GB at ``gear eval``'s default size).
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ARTICLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "wiki-extract" / "articles.jsonl.gz"


def documents_of(count: int, size: int) -> tuple[list[str], list[str]]:
    """``count`` documents of ``size`` characters (consecutive articles joined by blank lines; the last may be
    shorter if the articles run out) and a question for each (about its first article: the questions differ in
    length, as users' do)."""
    documents, questions, parts, length = [], [], [], 0
    with gzip.open(ARTICLES, "rt", encoding="utf-8") as lines:
        for line in lines:
            article = json.loads(line)
            if not parts:
                questions.append(f"what is known about the history of {article['title']}")
            parts.append(article["text"])
            length += len(article["text"]) + 2
            if length >= size:
                documents.append("\n\n".join(parts)[:size])
                parts, length = [], 0
                if len(documents) == count:
                    break
    if parts:
        documents.append("\n\n".join(parts)[:size])
    return questions, documents


def load_and_warm(model_name: str, document: str):
    """The model, loaded and warmed on a short ranking (lazy buffers, the BM25 import)."""
    from gear_core.loading import load_model

    model = load_model(model_name)
    model.rank_sentences("when was it founded", document[:2000], top_n=1)
    return model


def timed_peak(call) -> tuple[object, dict]:
    """``call()``'s result, its wall time and the process's peak resident memory, also above what it held before."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tick = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - tick
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux
    return result, {"seconds": seconds, "peak MB above loaded": max(peak - before, 0) / 1024, "peak MB": peak / 1024}


def measure_documents(model_name: str, count: int, release: bool) -> dict:
    """In this process: rank ``count`` long documents in one call; the peak memory above the loaded state."""
    import gear_core.allocator

    if not release:
        gear_core.allocator._MALLOC_TRIM = None
    questions, documents = documents_of(count, 40_000)
    model = load_and_warm(model_name, documents[0])
    _, measured = timed_peak(lambda: model.rank_sentences_batch(questions, documents, top_n=None))
    return {"documents": len(documents), "characters": sum(map(len, documents)), "release": release, **measured}


def measure(model_name: str, size: int) -> dict:
    """In this process: load, build the document, rank it; the peak memory above the loaded state."""
    from gear_core.ranking import document_windows

    [document] = documents_of(1, size)[1]
    model = load_and_warm(model_name, document)
    ranked, measured = timed_peak(lambda: model.rank_sentences("when was it founded", document, top_n=None))
    windows = len(document_windows(model, [document])["input_ids"])
    return {"characters": len(document), "sentences": len(ranked), "windows": windows, **measured}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000, 2_000_000])
    parser.add_argument("--documents", type=int, nargs="*", default=[30, 100])
    parser.add_argument("--model", default="gear-minilm")
    parser.add_argument("--out", default="benchmarks/results/ranking_memory.md")
    # The child process: measure one size, or one count of documents with or without the release.
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--many", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-release", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.model, args.one)))
        return
    if args.many is not None:
        print(json.dumps(measure_documents(args.model, args.many, not args.no_release)))
        return

    def child(*options: str) -> dict:
        command = [sys.executable, __file__, "--model", args.model, *options]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        row = json.loads(output.strip().splitlines()[-1])
        print(row, flush=True)
        return row

    rows = [child("--one", str(size)) for size in args.sizes]
    many = [
        child("--many", str(n), *([] if release else ["--no-release"]))
        for n in args.documents
        for release in (True, False)
    ]
    lines = [
        "# Ranking memory and time by document size",
        "",
        f"`python benchmarks/ranking_memory.py --sizes {' '.join(map(str, args.sizes))} --documents "
        f"{' '.join(map(str, args.documents))} --model {args.model}`; one fresh process per row, nothing else "
        "running; wiki-extract articles joined. Peak: the process's peak resident memory above what it held after "
        "loading the model and ranking a short warm-up document.",
        "",
        "## One document",
        "",
        "| characters | sentences | windows | ranking time (s) | peak MB above loaded | peak MB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['characters']:,} | {r['sentences']:,} | {r['windows']:,} | {r['seconds']:.1f} | "
        f"{r['peak MB above loaded']:.0f} | {r['peak MB']:.0f} |"
        for r in rows
    ]
    if many:
        lines += [
            "",
            "## Many documents in one call",
            "",
            "Documents of 40,000 characters, a question each, one `rank_sentences_batch` call. Release: freed memory "
            "handed back after each batch (`gear_core.allocator`), as shipped; off: the same code with it switched "
            "off (what the library did before).",
            "",
            "| documents | characters | release | ranking time (s) | peak MB above loaded | peak MB |",
            "| ---: | ---: | --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r['documents']:,} | {r['characters']:,} | {'on' if r['release'] else 'off'} | {r['seconds']:.1f} | "
            f"{r['peak MB above loaded']:.0f} | {r['peak MB']:.0f} |"
            for r in many
        ]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
