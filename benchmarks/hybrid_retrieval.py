"""Global retrieval on the validation sources through the searcher the library serves: GeAR alone
(``GeARSearcher(mode="dense")``), BM25 alone (its ``LexicalIndex``) and both merged (``mode="hybrid"``).

    python benchmarks/hybrid_retrieval.py [--model gear-minilm] [--questions 300] [--sets squad nq]
        [--no-wiki] [--out benchmarks/results/hybrid_retrieval.md]

Per set, the corpus is the distinct documents of its validation questions (held-out SQuAD-train paragraphs,
held-out NQ passages: see validation_sources.py; never the SQuAD ``test`` articles), then the same with the
10,033 wiki-vital summaries added as distractors (as ``gear eval``'s global table). Each question's gold is its own
document. The corpus is encoded once per set, the distractors once for all; every system ranks the same questions.
This is where ``mode``'s default is chosen.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from gear_core.data.sources import WIKI_VITAL, data_path, wiki_vital_documents
from gear_core.evaluation.benchmark import dense_searcher, global_retrieval_metrics, passage_questions
from gear_core.loading import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result
from validation_sources import validation_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gear-minilm")
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--sets", nargs="+", choices=("squad", "nq"), default=["squad", "nq"])
    parser.add_argument("--no-wiki", action="store_true", help="leave the wiki-vital distractors out")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/hybrid_retrieval.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = load_model(args.model)
    sets = validation_examples(args.questions, 1, [])
    wiki: tuple[list[str], list[str], object] | None = None
    if not args.no_wiki:
        wiki_ids, wiki_texts = map(list, zip(*wiki_vital_documents(data_path(WIKI_VITAL)), strict=True))
        wiki = (wiki_ids, wiki_texts, model.encode_documents(wiki_texts, batch_size=32, show_progress=True))
    results: dict[str, dict[str, dict[str, float]]] = {}
    counts: dict[str, int] = {}
    for name in args.sets:
        queries, golds, ids, documents = passage_questions(sets[name], name)
        corpus = (model.encode_documents(documents, batch_size=32), ids, documents)
        counts[f"{name} questions"], counts[f"{name} documents"] = len(queries), len(documents)
        corpora = {name: dense_searcher(model, corpus)}
        if wiki is not None:
            corpora[f"{name} + wiki"] = dense_searcher(model, corpus, (wiki[2], wiki[0], wiki[1]))
        for corpus, corpus_searcher in corpora.items():
            results[corpus] = global_retrieval_metrics(corpus_searcher, queries, golds)
    seconds = time.perf_counter() - start
    lines = [
        "# Hybrid retrieval on the validation sources",
        "",
        f"`python benchmarks/hybrid_retrieval.py --model {args.model} --questions {args.questions} --sets "
        f"{' '.join(args.sets)}{' --no-wiki' if args.no_wiki else ''}`; torch {torch.__version__}, {args.threads} "
        "threads. Corpus: the distinct documents of each set's validation questions, then with the 10,033 wiki-vital "
        'summaries as distractors. Every system through the library\'s own searcher: `GeARSearcher(mode="dense")`, '
        'BM25 from its `LexicalIndex`, and `mode="hybrid"` (each one\'s top k merged by reciprocal rank). R@1, R@5 '
        "and MAP@5 from top-5 searches, R@20 from top-20 ones.",
        "",
        "Counts: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()) + ".",
        "",
    ]
    for corpus, systems in results.items():
        metrics = list(next(iter(systems.values())))
        lines += [f"## {corpus}", "", "| system | " + " | ".join(metrics) + " |"]
        lines.append("| --- | " + " | ".join("---:" for _ in metrics) + " |")
        lines += [f"| {s} | " + " | ".join(f"{v:.3f}" for v in m.values()) + " |" for s, m in systems.items()]
        lines.append("")
    lines.append(f"Wall time: {seconds:.0f} s.")
    write_result(args.out, lines, {"args": vars(args), "counts": counts, "results": results})


if __name__ == "__main__":
    main()
