"""What hybrid retrieval costs against GeAR alone, through the searcher the library serves: indexing throughput
(documents/s) and query latency (ms per question, one question at a time, as a user asks), interleaved rounds, with
and without sentence vectors (``GeARConfig.retrieval_sentence_weight``).

    python benchmarks/hybrid_cost.py [--model gear-minilm] [--documents 2000] [--questions 100] [--rounds 3]
        [--out benchmarks/results/hybrid_cost.md]

The corpus is the first ``--documents`` wiki-vital summaries (the 10,033 distractors of the global tables); the
questions are held-out SQuAD-train questions (validation_sources.py; never the SQuAD ``test`` articles). Indexing:
documents only is encoding and adding the documents (``GeARSearcher.from_documents(..., sentences=False)``); dense
(the model's default) encodes each document's sentences too; hybrid adds building BM25 over the same texts (what the
first hybrid search does, ``GeARSearcher.lexical_index``). Queries: the searchers take turns each round; retrieval
alone (``rank_sentences=False``) and the default search (top 5 with their 3 best sentences ranked).
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
    plain = GeARSearcher.from_documents(model, texts, ids, sentences=False)
    plain_seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    searcher = GeARSearcher.from_documents(model, texts, ids)  # the model's default: with sentence vectors
    dense_seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    searcher.lexical_index()
    bm25_seconds = time.perf_counter() - tick

    systems = {"documents only": (plain, "dense"), "dense": (searcher, "dense"), "hybrid": (searcher, "hybrid")}
    jobs = [(system, ranked) for system in systems for ranked in (False, True)]  # (system, rank sentences)
    samples: dict[tuple[str, bool], list[float]] = {job: [] for job in jobs}

    def run(system: str, ranked: bool) -> float:
        system_searcher, mode = systems[system]
        system_searcher.mode = mode
        tick = time.perf_counter()
        for question in questions:
            system_searcher.search(question, k=5, rank_sentences=ranked)
        return time.perf_counter() - tick

    for system, ranked in jobs:  # warm-up
        run(system, ranked)
    for _ in range(args.rounds):
        for system, ranked in jobs:
            samples[(system, ranked)].append(run(system, ranked))
    ms = {job: 1000 * statistics.median(values) / len(questions) for job, values in samples.items()}

    rates = {
        "documents only": len(texts) / plain_seconds,
        "dense": len(texts) / dense_seconds,
        "hybrid": len(texts) / (dense_seconds + bm25_seconds),
    }
    results = {
        "documents": len(texts),
        "sentence vectors": searcher.index.num_sentences,
        "questions": len(questions),
        "indexing documents/s": rates,
        "BM25 build s": bm25_seconds,
        "ms/question": {f"{system}{' + sentences' if ranked else ''}": v for (system, ranked), v in ms.items()},
    }
    lines = [
        "# Hybrid retrieval and sentence vectors: what they cost",
        "",
        f"Command: `python benchmarks/hybrid_cost.py --model {args.model} --documents {args.documents} --questions "
        f"{args.questions} --rounds {args.rounds}`; torch {torch.__version__}, {args.threads} threads. "
        f"{len(texts):,} wiki-vital summaries ({searcher.index.num_sentences:,} sentences), {len(questions)} held-out "
        f"SQuAD-train questions asked one at a time, median of {args.rounds} interleaved rounds. `documents only`: "
        "GeAR's document vectors alone (`sentences=False`, an embedding retriever's cost); `dense`: the model's "
        f"default, documents scored with their best sentence too (`retrieval_sentence_weight` "
        f"{model.config.retrieval_sentence_weight:g}); `hybrid`: that merged with BM25 (the searcher's default).",
        "",
        "| indexing | documents/s | time against documents only |",
        "| --- | ---: | ---: |",
        f"| documents only (encode + FAISS) | {rates['documents only']:.1f} | 1.00x |",
        f"| dense (+ each sentence encoded) | {rates['dense']:.1f} | {rates['documents only'] / rates['dense']:.2f}x |",
        f"| hybrid (+ BM25, {bm25_seconds:.2f} s) | {rates['hybrid']:.1f} | "
        f"{rates['documents only'] / rates['hybrid']:.2f}x |",
        "",
        "| query (k = 5) | documents only ms | dense ms | hybrid ms | hybrid / dense | hybrid / documents only |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for ranked, label in ((False, "retrieval alone"), (True, "with each hit's 3 best sentences ranked")):
        plain_ms, dense, hybrid = (ms[(system, ranked)] for system in systems)
        lines.append(
            f"| {label} | {plain_ms:.1f} | {dense:.1f} | {hybrid:.1f} | {hybrid / dense:.2f}x | "
            f"{hybrid / plain_ms:.2f}x |"
        )
    write_result(args.out, lines, {"args": vars(args), "results": results})
    print("\n".join(lines))


if __name__ == "__main__":
    main()
