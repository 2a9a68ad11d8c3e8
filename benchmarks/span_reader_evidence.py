"""The span reader's evidence on the validation sources: how many sentences to read, and when to abstain.

    python benchmarks/span_reader_evidence.py --model PATH [--questions 300] [--long-questions 100]
        [--sets squad long nq] [--sentences 1 2 3] [--thresholds 0 0.1 0.2 0.3 0.4 0.5]
        [--out benchmarks/results/span_reader_evidence]

Each set (``benchmarks/validation_sources.py``'s: held-out SQuAD-train articles as paragraphs and as whole articles,
held-out NQ examples; never the SQuAD ``test`` articles) is ranked once by the model (its serving ranking); the
span reader then reads the ranking's 1, 2 or 3 best sentences of each gold document (``span_reader_sentences``)
without abstaining, and each support threshold (``span_reader_min_support``) is applied to those answers: below it
the reader abstains and its answer counts as empty (wrong). The model's decoder (``evidence_from="decoder"``) answers
the same questions in the same run. EM / F1 are SQuAD's; in the gold sentence: the span overlaps a sentence holding
an answer. Writes ``OUT.md`` and ``OUT.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gear_core import GeARModel
from gear_core.evaluation.benchmark import generation_metrics
from gear_core.evaluation.metrics import exact_match, mean, token_f1

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result

from gear_core.scoring import fill_unscored

sys.path.insert(0, str(Path(__file__).parent))
from validation_sources import sets_from_args, validation_parser


def in_gold_sentence(evidence, example) -> bool:
    return evidence.start_char is not None and any(
        evidence.start_char < example.sentences[i].end_char and example.sentences[i].start_char < evidence.end_char
        for i in example.gold_sentences
    )


def ranked_sentences(model: GeARModel, queries: list[str], documents: list[str]) -> list[list]:
    sentences, (scores,) = model.sentence_scores_batch(queries, documents)
    return [
        [s[i] for i in np.argsort(-fill_unscored(sc), kind="stable")] for s, sc in zip(sentences, scores, strict=True)
    ]


def reader_rows(model: GeARModel, examples, counts: list[int], thresholds: list[float]) -> list[dict]:
    queries, documents = [e.question for e in examples], [e.context for e in examples]
    # A passage without the answer, as most nodes a highlighter sees are: another question's (7 further on).
    others = [documents[(i + 7) % len(documents)] for i in range(len(documents))]
    tick = time.perf_counter()
    ranked = ranked_sentences(model, queries, documents)
    rank_seconds = time.perf_counter() - tick
    ranked_others = ranked_sentences(model, queries, others)
    rows = []
    for count in counts:
        tick = time.perf_counter()
        evidence = model.read_spans_batch(queries, documents, [r[:count] for r in ranked], min_support=0.0)
        read_seconds = time.perf_counter() - tick
        elsewhere = model.read_spans_batch(queries, others, [r[:count] for r in ranked_others], min_support=0.0)
        support_elsewhere = np.array([e.support for e in elsewhere])
        em = np.array([exact_match(e.text, x.answers) for e, x in zip(evidence, examples, strict=True)])
        f1 = np.array([token_f1(e.text, x.answers) for e, x in zip(evidence, examples, strict=True)])
        support = np.array([e.support for e in evidence])
        row = {
            "sentences": count,
            "in the gold sentence %": 100
            * mean(in_gold_sentence(e, x) for e, x in zip(evidence, examples, strict=True)),
            "read / rank time": read_seconds / rank_seconds,
            "thresholds": {},
        }
        for threshold in thresholds:
            answered = support >= threshold
            row["thresholds"][threshold] = {
                "EM": 100 * float(np.mean(em * answered)),
                "F1": 100 * float(np.mean(f1 * answered)),
                "answered %": 100 * float(np.mean(answered)),
                "EM of answered": 100 * float(np.mean(em[answered])) if answered.any() else float("nan"),
                "F1 of answered": 100 * float(np.mean(f1[answered])) if answered.any() else float("nan"),
                "answered without the answer %": 100 * float(np.mean(support_elsewhere >= threshold)),
            }
        rows.append(row)
    return rows


def main() -> None:
    parser = validation_parser(__doc__)
    parser.set_defaults(sets=["squad", "long", "nq"])
    parser.add_argument("--sentences", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.7, 0.9])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/span_reader_evidence")
    args = parser.parse_args()
    if len(args.model) != 1:
        raise SystemExit("give one --model PATH (a GeAR folder with a span reader)")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    model = GeARModel.from_pretrained(args.model[0].split("=", 1)[-1])
    sets = sets_from_args(args)
    results = {}
    for name, examples in sets.items():
        tick = time.perf_counter()
        decoder, _ = generation_metrics(model, examples, evidence_from="decoder")
        results[name] = {"decoder": decoder, "reader": reader_rows(model, examples, args.sentences, args.thresholds)}
        print(f"{name}: {time.perf_counter() - tick:.0f} s", json.dumps(results[name]), flush=True)
    lines = [
        "# Span reader evidence on the validation sources",
        "",
        f"Command: `python benchmarks/span_reader_evidence.py --model {args.model[0]} --questions {args.questions} "
        f"--long-questions {args.long_questions} --sets {' '.join(args.sets)}`; torch {torch.__version__}, "
        f"{args.threads} threads. Questions: " + ", ".join(f"{n} {len(e)}" for n, e in sets.items()) + ".",
        "",
        "EM / F1 over every question (an abstention counts as an empty answer); of answered: over the answers given. "
        "Answered without the answer: how often the reader still answers when the question is put to another "
        "question's passage (ranked and read the same way), where it should abstain.",
        "",
        "| set | evidence | sentences read | min support | EM | F1 | answered % | EM of answered | F1 of answered "
        "| answered without the answer % | in the gold sentence % | read / rank time |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, result in results.items():
        d = result["decoder"]
        lines.append(
            f"| {name} | decoder | | | {d['EM']:.1f} | {d['F1']:.1f} | | | | | {d['in the gold sentence %']:.1f} | |"
        )
        for row in result["reader"]:
            for threshold, m in row["thresholds"].items():
                lines.append(
                    f"| {name} | span reader | {row['sentences']} | {threshold:g} | {m['EM']:.1f} | {m['F1']:.1f} | "
                    f"{m['answered %']:.1f} | {m['EM of answered']:.1f} | {m['F1 of answered']:.1f} | "
                    f"{m['answered without the answer %']:.1f} | {row['in the gold sentence %']:.1f} | "
                    f"{row['read / rank time']:.2f} |"
                )
    lines += ["", f"Wall time: {time.perf_counter() - start:.0f} s.", ""]
    write_result(args.out, lines, {"args": vars(args), "results": results})


if __name__ == "__main__":
    main()
