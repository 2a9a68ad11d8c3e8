"""Global retrieval on the validation sources through the searcher the library serves: GeAR alone
(``GeARSearcher(mode="dense")``), BM25 alone (its ``LexicalIndex``) and both merged (``mode="hybrid"``).

    python benchmarks/hybrid_retrieval.py [--model gear-minilm] [--questions 300] [--sets squad nq synthetic]
        [--no-wiki] [--out benchmarks/results/hybrid_retrieval.md]

Per set, the corpus is the distinct documents of its validation questions (held-out SQuAD-train paragraphs, held-out
NQ passages, held-out titles of the synthetic Wikipedia triples: see validation_sources.py; never the SQuAD ``test``
articles), then the same with the 10,033 wiki-vital summaries added as distractors (as ``gear eval``'s global table).
Each question's gold is its own document. The corpus is encoded once per set (with its sentences), the distractors
once for all; every system ranks the same questions. This is where ``mode``'s default is chosen, the sentence grid is
where ``GeARConfig.retrieval_sentence_weight`` is (GeAR alone and the hybrid at each weight; 0: document vectors
alone), and the fusion grid is where :class:`~gear_core.retrieval.HybridFusion`'s defaults are: every setting (by
standardised score or by reciprocal rank, each at several depths and weights) fuses the same dense and BM25 top 50s
through ``HybridFusion.fuse``, the function the searcher calls, and the default's row is checked against the
searcher's own hybrid results.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from gear_core.data.sources import WIKI_VITAL, data_path, wiki_vital_documents
from gear_core.evaluation.benchmark import (
    HYBRID_GLOBAL,
    dense_searcher,
    global_retrieval_metrics,
    passage_questions,
    searcher_rankings,
)
from gear_core.evaluation.metrics import retrieval_metrics
from gear_core.loading import load_model
from gear_core.retrieval import GeARSearcher, HybridFusion, encode_for_index

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result
from validation_sources import DEFAULT_TRIPLES, validation_examples

#: The fusion settings compared: by standardised score at two depths and five weights of GeAR's; by reciprocal rank
#: at four depths, two constants and three weights.
FUSION_GRID = [
    HybridFusion(depth, dense_weight=weight, method="z_score")
    for depth in (20, 50)
    for weight in (0.5, 1.0, 1.5, 2.0, 3.0)
] + [
    HybridFusion(depth, constant, weight, method="reciprocal_rank")
    for depth in (5, 10, 20, 50)
    for constant in (60.0, 10.0)
    for weight in (0.5, 1.0, 2.0)
]
GRID_DEPTH = 50  # each retriever's ranking is fetched this deep once; every setting cuts it to its own depth
#: The weights of a document's best sentence compared (GeARConfig.retrieval_sentence_weight; 0: documents alone).
SENTENCE_WEIGHTS = (0.0, 0.5, 1.0, 2.0)


def sentence_grid(searcher: GeARSearcher, queries: list[str], golds: list[set[str]]) -> dict[str, dict[str, float]]:
    """R@1 and R@5 of GeAR alone and of the hybrid at each :data:`SENTENCE_WEIGHTS` (the model's weight is put back)."""
    config = searcher.model.config
    weight = config.retrieval_sentence_weight
    grid = {}
    try:
        for config.retrieval_sentence_weight in SENTENCE_WEIGHTS:
            found = searcher_rankings(searcher, queries, 5)
            for system, name in (("GeAR", "dense"), (HYBRID_GLOBAL, "hybrid")):
                metrics = retrieval_metrics(found[system], golds, recall_ks=(1, 5), map_ks=())
                grid[f"{name}, sentence weight {config.retrieval_sentence_weight:g}"] = metrics
    finally:
        config.retrieval_sentence_weight = weight
    return grid


def fusion_grid(searcher: GeARSearcher, queries: list[str], golds: list[set[str]]) -> dict[str, dict[str, float]]:
    """R@1 and R@5 of every :data:`FUSION_GRID` setting on one corpus, from one dense and one BM25 search."""
    mode = searcher.mode
    searcher.mode = "dense"
    try:
        dense = [
            [(r.id, r.score) for r in row] for row in searcher.search_batch(queries, GRID_DEPTH, rank_sentences=False)
        ]
    finally:
        searcher.mode = mode
    lexical = searcher.lexical_index().search(queries, GRID_DEPTH)
    grid = {}
    for fusion in FUSION_GRID:
        fused = [[id_ for id_, _ in fusion.fuse(d, b, 5)] for d, b in zip(dense, lexical, strict=True)]
        grid[fusion_name(fusion)] = retrieval_metrics(fused, golds, recall_ks=(1, 5), map_ks=())
    return grid


def fusion_name(fusion: HybridFusion) -> str:
    if fusion.method == "z_score":
        return f"scores, depth {fusion.depth}, dense weight {fusion.dense_weight:g}"
    return f"ranks, depth {fusion.depth}, constant {fusion.rank_constant:g}, dense weight {fusion.dense_weight:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gear-minilm")
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--sets", nargs="+", choices=("squad", "nq", "synthetic"), default=["squad", "nq", "synthetic"])
    parser.add_argument("--triples", default=DEFAULT_TRIPLES, help="the synthetic set's triples (gear synthesize)")
    parser.add_argument("--no-wiki", action="store_true", help="leave the wiki-vital distractors out")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/hybrid_retrieval.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = load_model(args.model)
    if "synthetic" in args.sets and not Path(args.triples).is_file():
        parser.error(f"no synthetic triples at {args.triples}: write them with `gear synthesize` or leave the set out")
    sets = validation_examples(args.questions, 1, [args.triples] if "synthetic" in args.sets else [])
    wiki: tuple[list[str], list[str], object] | None = None
    if not args.no_wiki:
        wiki_ids, wiki_texts = map(list, zip(*wiki_vital_documents(data_path(WIKI_VITAL)), strict=True))
        wiki = (wiki_ids, wiki_texts, encode_for_index(model, wiki_texts, sentences=True, show_progress=True))
    results: dict[str, dict[str, dict[str, float]]] = {}
    grids: dict[str, dict[str, dict[str, float]]] = {}
    sentence_grids: dict[str, dict[str, dict[str, float]]] = {}
    counts: dict[str, int] = {}
    for name in args.sets:
        queries, golds, ids, documents = passage_questions(sets[name], name)
        corpus = (encode_for_index(model, documents, sentences=True), ids, documents)
        counts[f"{name} questions"], counts[f"{name} documents"] = len(queries), len(documents)
        corpora = {name: dense_searcher(model, corpus)}
        if wiki is not None:
            corpora[f"{name} + wiki"] = dense_searcher(model, corpus, (wiki[2], wiki[0], wiki[1]))
        for corpus, corpus_searcher in corpora.items():
            results[corpus] = global_retrieval_metrics(corpus_searcher, queries, golds)
            grids[corpus] = fusion_grid(corpus_searcher, queries, golds)
            sentence_grids[corpus] = sentence_grid(corpus_searcher, queries, golds)
            served = {m: results[corpus][HYBRID_GLOBAL][m] for m in ("R@1", "R@5")}
            if grids[corpus][fusion_name(HybridFusion())] != served:  # the grid must measure what is served
                raise AssertionError(f"{corpus}: the grid's default differs from the searcher's hybrid {served}")
    seconds = time.perf_counter() - start
    lines = [
        "# Hybrid retrieval on the validation sources",
        "",
        f"`python benchmarks/hybrid_retrieval.py --model {args.model} --questions {args.questions} --sets "
        f"{' '.join(args.sets)}{' --no-wiki' if args.no_wiki else ''}`; torch {torch.__version__}, {args.threads} "
        "threads. Corpus: the distinct documents of each set's validation questions, then with the 10,033 wiki-vital "
        'summaries as distractors. Every system through the library\'s own searcher: `GeARSearcher(mode="dense")`, '
        'BM25 from its `LexicalIndex`, and `mode="hybrid"` (merged as the default `HybridFusion` '
        f"says: {fusion_name(HybridFusion())}), documents scored with their best sentence at the model's "
        f"`retrieval_sentence_weight` ({model.config.retrieval_sentence_weight:g}). R@1, R@5 and MAP@5 from top-5 "
        "searches, R@20 from top-20 ones.",
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
    lines += grid_table(
        "Sentence grid",
        "GeAR alone (`dense`) and the default hybrid with each weight of a document's best sentence "
        "(`retrieval_sentence_weight`; 0: the document vector alone); R@1 / R@5 of the top 5. `mean`: over every "
        "corpus and both metrics. The model's weight in bold.",
        sentence_grids,
        {f"{m}, sentence weight {model.config.retrieval_sentence_weight:g}" for m in ("dense", "hybrid")},
    )
    lines += grid_table(
        "Fusion grid",
        "Each setting fuses the same dense and BM25 rankings (`HybridFusion.fuse`, as the searcher does); R@1 / R@5 "
        "of the fused top 5. `mean`: over every corpus and both metrics. The searcher's default in bold.",
        grids,
        {fusion_name(HybridFusion())},
    )
    lines.append(f"Wall time: {seconds:.0f} s.")
    write_result(
        args.out,
        lines,
        {
            "args": vars(args),
            "counts": counts,
            "results": results,
            "fusion_grid": grids,
            "sentence_grid": sentence_grids,
        },
    )


def grid_table(
    title: str, caption: str, grids: dict[str, dict[str, dict[str, float]]], defaults: set[str]
) -> list[str]:
    """A grid as a table: a setting a row, R@1 / R@5 per corpus, and their mean over every corpus and metric
    (the column defaults are chosen by); the defaults in bold."""
    corpora = list(grids)
    lines = [
        f"## {title}",
        "",
        caption,
        "",
        "| setting | " + " | ".join(corpora) + " | mean |",
        "| --- | " + " | ".join("---:" for _ in corpora) + " | ---: |",
    ]
    for name in grids[corpora[0]]:
        cells = [f"{grids[c][name]['R@1']:.3f} / {grids[c][name]['R@5']:.3f}" for c in corpora]
        mean = sum(grids[c][name][m] for c in corpora for m in ("R@1", "R@5")) / (2 * len(corpora))
        label = f"**{name}**" if name in defaults else name
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {mean:.4f} |")
    return [*lines, ""]


if __name__ == "__main__":
    main()
