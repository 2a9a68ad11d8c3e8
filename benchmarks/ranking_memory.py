"""Peak memory and time of ranking one long document's sentences, by document size.

    python benchmarks/ranking_memory.py [--sizes 20000 200000 2000000] [--model gear-minilm]
        [--out benchmarks/results/ranking_memory.md]

Each size runs in a fresh process (so its peak resident memory is its own): load the model, build a document of
that many characters from ``../shared/data/wiki-extract`` articles (whole articles joined by blank lines),
then ``rank_sentences`` once. Reports the process's peak resident memory above what it held after loading, the
ranking's wall time, and the document's sentences and windows. Issue 31 measured a (windows x sentences) array:
622 MB at 200 KB, 3.7 GB at 2 MB.
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


def document_of(size: int) -> str:
    parts, length = [], 0
    with gzip.open(ARTICLES, "rt", encoding="utf-8") as lines:
        for line in lines:
            text = json.loads(line)["text"]
            parts.append(text)
            length += len(text) + 2
            if length >= size:
                break
    return "\n\n".join(parts)[:size]


def measure(model_name: str, size: int) -> dict:
    """In this process: load, build the document, rank it; the peak memory above the loaded state."""
    from gear_core.loading import load_model

    model = load_model(model_name)
    document = document_of(size)
    model.rank_sentences("when was it founded", document[:2000], top_n=1)  # warm: lazy buffers, BM25 import
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tick = time.perf_counter()
    ranked = model.rank_sentences("when was it founded", document, top_n=None)
    seconds = time.perf_counter() - tick
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    windows = len(model._document_windows([document])["input_ids"])
    return {
        "characters": len(document),
        "sentences": len(ranked),
        "windows": windows,
        "seconds": seconds,
        "peak MB above loaded": max(peak - before, 0) / 1024,  # ru_maxrss is in KiB on Linux
        "peak MB": peak / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 200_000, 2_000_000])
    parser.add_argument("--model", default="gear-minilm")
    parser.add_argument("--out", default="benchmarks/results/ranking_memory.md")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process: measure one size
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.model, args.one)))
        return
    rows = []
    for size in args.sizes:
        child = [sys.executable, __file__, "--model", args.model, "--one", str(size)]
        output = subprocess.run(child, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    lines = [
        "# Ranking memory and time by document size",
        "",
        f"`python benchmarks/ranking_memory.py --sizes {' '.join(map(str, args.sizes))} --model {args.model}`; one "
        "fresh process per size, nothing else running; wiki-extract articles joined. Peak: the process's peak "
        "resident memory above what it held after loading the model and ranking a short warm-up document.",
        "",
        "| characters | sentences | windows | ranking time (s) | peak MB above loaded | peak MB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['characters']:,} | {r['sentences']:,} | {r['windows']:,} | {r['seconds']:.1f} | "
        f"{r['peak MB above loaded']:.0f} | {r['peak MB']:.0f} |"
        for r in rows
    ]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
