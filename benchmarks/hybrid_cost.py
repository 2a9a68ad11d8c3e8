"""What hybrid retrieval costs against GeAR alone, through the searcher the library serves: indexing throughput
(documents/s) and query latency (ms per question, one question at a time, as a user asks), interleaved rounds.

    python benchmarks/hybrid_cost.py [--model gear-minilm] [--documents 2000] [--questions 100] [--rounds 3]
        [--out benchmarks/results/hybrid_cost.md]

The corpus is the first ``--documents`` wiki-vital summaries (the 10,033 distractors of the global tables); the
questions are held-out SQuAD-train questions (validation_sources.py; never the SQuAD ``test`` articles). Indexing:
dense is encoding and adding the documents (``GeARSearcher.from_documents``); hybrid adds building BM25 over the
same texts (what the first hybrid search does, ``GeARSearcher.lexical_index``). Queries: one searcher, its
``mode`` switched between rounds; retrieval alone (``rank_sentences=False``) and the default search (top 5 with
their 3 best sentences ranked).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

from gear_core.data.sources import WIKI_VITAL, data_path, wiki_vital_documents
from gear_core.loading import load_model
from gear_core.retrieval import GeARSearcher

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result
from validation_sources import validation_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gear-minilm")
    parser.add_argument("--documents", type=int, default=2000)
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/hybrid_cost.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    corpus = list(itertools.islice(wiki_vital_documents(data_path(WIKI_VITAL)), args.documents))
    ids, texts = [id_ for id_, _ in corpus], [text for _, text in corpus]
    questions = [e.question for e in validation_examples(args.questions, 0, [])["squad"]]

    tick = time.perf_counter()
    searcher = GeARSearcher.from_documents(model, texts, ids)
    dense_seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    searcher.lexical_index()
    bm25_seconds = time.perf_counter() - tick

    jobs = [(mode, ranked) for mode in ("dense", "hybrid") for ranked in (False, True)]  # (mode, rank sentences)
    samples: dict[tuple[str, bool], list[float]] = {job: [] for job in jobs}

    def run(mode: str, ranked: bool) -> float:
        searcher.mode = mode
        tick = time.perf_counter()
        for question in questions:
            searcher.search(question, k=5, rank_sentences=ranked)
        return time.perf_counter() - tick

    for mode, ranked in jobs:  # warm-up
        run(mode, ranked)
    for _ in range(args.rounds):
        for mode, ranked in jobs:
            samples[(mode, ranked)].append(run(mode, ranked))
    ms = {job: 1000 * statistics.median(values) / len(questions) for job, values in samples.items()}

    results = {
        "documents": len(texts),
        "questions": len(questions),
        "indexing documents/s": {
            "dense": len(texts) / dense_seconds,
            "hybrid": len(texts) / (dense_seconds + bm25_seconds),
        },
        "BM25 build s": bm25_seconds,
        "ms/question": {f"{mode}{' + sentences' if ranked else ''}": v for (mode, ranked), v in ms.items()},
    }
    lines = [
        "# Hybrid retrieval: what it costs",
        "",
        f"Command: `python benchmarks/hybrid_cost.py --model {args.model} --documents {args.documents} --questions "
        f"{args.questions} --rounds {args.rounds}`; torch {torch.__version__}, {args.threads} threads. "
        f"{len(texts):,} wiki-vital summaries, {len(questions)} held-out SQuAD-train questions asked one at a time, "
        f"median of {args.rounds} interleaved rounds.",
        "",
        "| indexing | documents/s | ratio |",
        "| --- | ---: | ---: |",
        f"| dense (encode + FAISS) | {results['indexing documents/s']['dense']:.1f} | 1.00x |",
        f"| hybrid (+ BM25, {bm25_seconds:.2f} s) | {results['indexing documents/s']['hybrid']:.1f} | "
        f"{results['indexing documents/s']['dense'] / results['indexing documents/s']['hybrid']:.2f}x the time |",
        "",
        "| query (k = 5) | dense ms/question | hybrid ms/question | hybrid / dense |",
        "| --- | ---: | ---: | ---: |",
    ]
    for ranked, label in ((False, "retrieval alone"), (True, "with each hit's 3 best sentences ranked")):
        dense, hybrid = ms[("dense", ranked)], ms[("hybrid", ranked)]
        lines.append(f"| {label} | {dense:.1f} | {hybrid:.1f} | {hybrid / dense:.2f}x |")
    write_result(args.out, lines, {"args": vars(args), "results": results})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
