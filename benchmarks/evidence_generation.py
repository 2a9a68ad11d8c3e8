"""Evidence generation on every validation source: answer EM / F1, grounding, and cost beside the bi-encoder.

    python benchmarks/evidence_generation.py --model NAME=PATH [--model NAME=PATH ...]
        [--decoding NAME=JSON ...] [--questions 300] [--long-questions 100] [--cost-pairs 64]
        [--sets squad long nq synthetic]
        [--out benchmarks/results/evidence_generation.md]

Sets: the validation sources training validates on (``benchmarks/validation_sources.py``: held-out SQuAD-train
articles as paragraphs and as whole articles, held-out NQ examples, held-out synthetic Wikipedia titles). The
target is the answer for the question sets and the relevant sentence for the synthetic keyword queries. Grounded:
the span of the document that best supports the output reaches token F1 0.5 (``gear_core.evidence``); on the gold
sentence: that span overlaps a sentence holding the answer. Cost: milliseconds per (query, paragraph) pair on the
SQuAD set, generation against encoding the query and the paragraph with the bi-encoder, interleaved rounds.
Decoding: each ``--decoding NAME=JSON`` gives ``generate_batch`` options (``{"spans_only": false}``...), every
model is run with each; without any, each model decodes as its config says.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch

from gear_core import GeARModel
from gear_core.evaluation.benchmark import generation_metrics

sys.path.insert(0, str(Path(__file__).parent))
from validation_sources import sets_from_args, validation_parser

METRICS = ("EM", "F1", "grounded %", "grounded on the gold sentence %")


def cost_ratio(
    model: GeARModel, pairs: list[tuple[str, str]], batch_size: int, rounds: int, options: dict
) -> tuple[float, float]:
    """(ms per pair generating, generation / bi-encoder ratio), medians over interleaved rounds."""
    queries, documents = [q for q, _ in pairs], [d for _, d in pairs]

    def encode() -> None:
        model.encode_queries(queries, batch_size=batch_size)
        model.encode_documents(documents, batch_size=batch_size)

    def generate() -> None:
        model.generate_batch(queries, documents, batch_size=batch_size, **options)

    times: dict[str, list[float]] = {"encode": [], "generate": []}
    encode(), generate()  # warm-up
    for _ in range(rounds):
        for name, job in (("encode", encode), ("generate", generate)):
            tick = time.perf_counter()
            job()
            times[name].append(time.perf_counter() - tick)
    encoded, generated = statistics.median(times["encode"]), statistics.median(times["generate"])
    return 1000 * generated / len(pairs), generated / encoded


def main() -> None:
    parser = validation_parser(__doc__)
    parser.add_argument("--decoding", action="append", default=[], help="NAME=JSON of generate_batch options")
    parser.add_argument("--cost-pairs", type=int, default=64)
    parser.add_argument("--cost-rounds", type=int, default=5, help="0 skips the cost measurement")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/evidence_generation.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    sets = sets_from_args(args)
    decodings = [(name, json.loads(options)) for name, options in (d.split("=", 1) for d in args.decoding)]
    rows, examples_shown = [], []
    for spec in args.model:
        label, path = spec.split("=", 1)
        model = GeARModel.from_pretrained(path)
        memory = f"{model.config.decoder_memory}{', copy' if model.config.decoder_copy else ''}"
        for decoding, options in decodings or [("config", {})]:
            for name, examples in sets.items():
                tick = time.perf_counter()
                metrics, outputs = generation_metrics(model, examples, args.batch_size, **options)
                print(f"{label} {decoding} {name}: {time.perf_counter() - tick:.0f} s {metrics}", flush=True)
                rows.append((label, memory, decoding, name, metrics))
                if name in ("squad", "nq"):
                    examples_shown += [
                        f"- {label}, {decoding}, {name}: {e.question} -> `{o}` (gold: {e.answers[0]})"
                        for e, o in list(zip(examples, outputs, strict=True))[:3]
                    ]
            if "squad" in sets and args.cost_rounds > 0:
                pairs = [(e.question, e.context) for e in sets["squad"][: args.cost_pairs]]
                ms, ratio = cost_ratio(model, pairs, args.batch_size, args.cost_rounds, options)
                rows.append((label, memory, decoding, "cost", {"ms/pair": ms, "x bi-encoder": ratio}))
    lines = [
        "# Evidence generation on every validation source",
        "",
        f"Command: `python benchmarks/evidence_generation.py {' '.join('--model ' + m for m in args.model)} "
        + "".join(f"--decoding {name}='{json.dumps(options)}' " for name, options in decodings)
        + f"--questions {args.questions} --long-questions {args.long_questions} --cost-pairs {args.cost_pairs} "
        + f"--cost-rounds {args.cost_rounds}"
        + ("" if len(sets) == 4 else f" --sets {' '.join(sets)}")
        + "`; "
        f"torch {torch.__version__}, {args.threads} threads. Questions: "
        + ", ".join(f"{n} {len(e)}" for n, e in sets.items())
        + ". Greedy decoding; long documents are read at the window of their best-ranked sentence.",
        "",
        "| model | decoder memory | decoding | set | " + " | ".join(METRICS) + " |",
        "| --- | --- | --- | --- |" + " ---: |" * len(METRICS),
    ]
    for label, memory, decoding, name, metrics in rows:
        if name != "cost":
            values = " | ".join(f"{metrics[m]:.1f}" for m in METRICS)
            lines.append(f"| {label} | {memory} | {decoding} | {name} | {values} |")
    if args.cost_rounds > 0:
        lines += [
            "",
            f"Cost on the CPU ({args.cost_pairs} SQuAD pairs, batches of {args.batch_size}, median of "
            f"{args.cost_rounds} interleaved rounds):",
            "",
            "| model | decoding | ms / pair generating | generation / bi-encoder |",
            "| --- | --- | ---: | ---: |",
        ]
        lines += [
            f"| {label} | {decoding} | {m['ms/pair']:.1f} | {m['x bi-encoder']:.2f}x |"
            for label, _, decoding, n, m in rows
            if n == "cost"
        ]
    lines += ["", "Examples:", "", *examples_shown, "", f"Wall time: {time.perf_counter() - start:.0f} s.", ""]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
