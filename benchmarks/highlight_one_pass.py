"""Ranking and evidence from one pass against two calls: what the highlighter and the searcher save.

    python benchmarks/highlight_one_pass.py [--model PATH] [--pairs 64] [--rounds 5]
        [--out benchmarks/results/highlight_one_pass.md]

``GeARHighlighter(generate_evidence=True)`` and ``GeARSearcher.search(generate=True)`` need each pair's ranked
sentences and its evidence. ``GeARModel.rank_and_generate_batch`` gives both from the ranking pass that evidence
generation runs anyway; before, they called ``rank_sentences_batch`` and then ``generate_evidence_batch``, which
ranks every pair again. Pairs: the first questions of the ``squad`` validation set (held-out SQuAD-train articles,
one question per paragraph), batches of 16, median of interleaved rounds. Both paths must give the same outputs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import gear_core
from gear_core import GeARModel

sys.path.insert(0, str(Path(__file__).parent))
from validation_sources import validation_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=gear_core.DEFAULT_MODEL)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/highlight_one_pass.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = GeARModel.from_pretrained(args.model)
    seen, pairs = set(), []
    for example in validation_examples(args.pairs * 5, 0, [])["squad"]:
        if example.context not in seen:
            seen.add(example.context)
            pairs.append((example.question, example.context))
    pairs = pairs[: args.pairs]
    queries, documents = [q for q, _ in pairs], [d for _, d in pairs]

    def two_calls():
        return model.rank_sentences_batch(queries, documents), model.generate_evidence_batch(queries, documents)

    def one_pass():
        return model.rank_and_generate_batch(queries, documents)

    (ranked_two, evidence_two), (ranked_one, evidence_one) = two_calls(), one_pass()  # also the warm-up
    same_order = all(
        [(s.start_char, s.end_char) for s in a] == [(s.start_char, s.end_char) for s in b]
        for a, b in zip(ranked_two, ranked_one, strict=True)
    )
    # Scores differ only by float rounding: the two paths batch the pairs differently.
    score_gap = max(
        abs(x.score - y.score) for a, b in zip(ranked_two, ranked_one, strict=True) for x, y in zip(a, b, strict=True)
    )
    times: dict[str, list[float]] = {"two calls": [], "one pass": []}
    for _ in range(args.rounds):
        for name, job in (("two calls", two_calls), ("one pass", one_pass)):
            tick = time.perf_counter()
            job()
            times[name].append(time.perf_counter() - tick)
    two, one = statistics.median(times["two calls"]), statistics.median(times["one pass"])
    model_name = "the shipped model" if args.model == gear_core.DEFAULT_MODEL else f"`{args.model}`"
    lines = [
        "# Ranking and evidence: one pass against two calls",
        "",
        f"Command: `python benchmarks/highlight_one_pass.py --pairs {len(pairs)} --rounds {args.rounds}` on "
        f"{model_name}; torch {torch.__version__}, {args.threads} threads. {len(pairs)} (question, paragraph) "
        "pairs of the `squad` validation set, batches of 16, median of interleaved rounds.",
        "",
        "| path | ms / pair | ratio |",
        "| --- | ---: | ---: |",
        f"| `rank_sentences_batch`, then `generate_evidence_batch` | {1000 * two / len(pairs):.1f} | 1.00x |",
        f"| `rank_and_generate_batch` | {1000 * one / len(pairs):.1f} | {one / two:.2f}x |",
        "",
        f"Same sentence order from both paths: {'yes' if same_order else 'NO'}; same evidence: "
        f"{'yes' if evidence_two == evidence_one else 'NO'}; largest score difference {score_gap:.1e} (float "
        "rounding: the paths batch the pairs differently).",
        "",
    ]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
