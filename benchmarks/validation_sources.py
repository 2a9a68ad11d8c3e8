"""Local R@1 on every validation source, GeAR beside both sentence baselines, on the same questions.

    python benchmarks/validation_sources.py --model NAME=PATH [--model NAME=PATH ...]
        [--questions 300] [--long-questions 100] [--sets squad long nq synthetic]
        [--out benchmarks/results/validation_sources.md]

The validation sets are the ones training validates on (``GeARDataModule`` with the fusion-cpu config's data:
held-out SQuAD-train articles as paragraphs (``squad``) and as whole articles (``long``), held-out NQ examples
(``nq``), held-out titles of the synthetic Wikipedia triples (``synthetic``)); none of them is ever trained on,
and the SQuAD ``test`` articles are not among them. Every GeAR model is scored with each window weighting
(``GeARConfig.ranking_window_weighting``) from one fusion pass; they differ only on documents longer than one
window; the lexical mixes (``GeARConfig.ranking_lexical_weight``) add BM25 over each document's sentences.
Baselines: BM25 over each document's sentences, all-MiniLM-L6-v2 sentence embeddings, first sentence.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
import yaml

from gear_core import GeARModel
from gear_core.evaluation.metrics import retrieval_metrics
from gear_core.evaluation.ranking import scoring_ablation
from gear_core.evaluation.tasks import examples_from_triples
from gear_core.scoring import WINDOW_WEIGHTINGS
from gear_core.training.cli import resolve_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_result

from gear_core.training.datamodule import GeARDataModule

# The sources and held-out slices training validates on: the fusion-cpu config's (sizes are set here).
_CONFIG = yaml.safe_load(Path(resolve_config("fusion-cpu")).read_text(encoding="utf-8"))["data"]
DATA = {
    key: _CONFIG[key]
    for key in (
        "squad_path",
        "split_path",
        "squad_train_path",
        "nq_path",
        "validation_articles",
        "validation_fraction",
    )
}

#: The validation sets, and where the synthetic one's triples are written by `gear synthesize`.
SETS = ("squad", "long", "nq", "synthetic")
DEFAULT_TRIPLES = "runs/data/wiki_extract.jsonl"
DEFAULT_OUT = "benchmarks/results/validation_sources.md"


def validation_triples(questions: int, long_questions: int, triples_paths: list[str]) -> dict[str, list]:
    """Each validation set's triples, as training validates on them (the same questions for the same sizes)."""
    data = GeARDataModule(
        **DATA,
        triples_paths=triples_paths,
        validation_max_questions=questions,
        long_document_questions=long_questions,
    )
    data.setup()
    return {v.name: v.triples for v in data.validation_sets}


def validation_examples(questions: int, long_questions: int, triples_paths: list[str]) -> dict[str, list]:
    triples = validation_triples(questions, long_questions, triples_paths)
    return {name: examples_from_triples(t) for name, t in triples.items()}


def validation_parser(description: str) -> argparse.ArgumentParser:
    """The options every validation-source benchmark takes: the models, and the sets' sizes and triples."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], help="NAME=PATH of a saved GeAR")
    parser.add_argument("--questions", type=int, default=300, help="questions per validation set")
    parser.add_argument("--long-questions", type=int, default=100, help="questions against whole articles")
    parser.add_argument("--triples", action="append", default=None, help="synthetic triples file(s)")
    parser.add_argument(
        "--sets", nargs="+", choices=SETS, default=list(SETS), help="which validation sets (default: all four)"
    )
    return parser


def sets_from_args(args: argparse.Namespace) -> dict[str, list]:
    """The validation sets a :func:`validation_parser` command asked for (``synthetic`` needs the triples that
    ``gear synthesize`` writes; the other three read ``../shared/data`` alone)."""
    triples = []
    if "synthetic" in args.sets:
        triples = args.triples or [DEFAULT_TRIPLES]
        missing = [t for t in triples if not Path(t).is_file()]
        if missing:
            raise SystemExit(
                f"no synthetic triples at {', '.join(missing)}: write them with `gear synthesize --wiki-extract ...` "
                "(README, Training at scale) or leave the set out: --sets squad long nq"
            )
    sets = validation_examples(args.questions, args.long_questions, triples)
    return {name: sets[name] for name in args.sets}


def main() -> None:
    parser = validation_parser(__doc__)
    parser.add_argument("--baseline-encoder", default="all-MiniLM-L6-v2")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--window-temperatures",
        type=float,
        nargs="*",
        default=[0.02, 0.05, 0.1, 0.2],
        help="also score 'retrieval' window weighting at these temperatures",
    )
    parser.add_argument(
        "--lexical-weights",
        type=float,
        nargs="*",
        default=[0.0, 0.25, 0.5, 0.75],
        help="also score the configured scoring with BM25 mixed in at these weights (ranking_lexical_weight; "
        "0: cross-attention alone) ...",
    )
    parser.add_argument(
        "--lexical-temperatures",
        type=float,
        nargs="*",
        default=[0.5, 1.0, 2.0],
        help="... and each of these BM25 temperatures (ranking_lexical_temperature)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    sets = sets_from_args(args)
    details: dict[str, dict[str, dict[str, float]]] = {}
    from gear_core.evaluation import baselines  # here: its index needs faiss, which the GPU image lacks

    baseline = baselines.dense_encoder(args.baseline_encoder)
    for name, examples in sets.items():
        golds = [e.gold_sentences for e in examples]
        rankings = {
            "first sentence": baselines.first_sentence_rankings(examples),
            "BM25 (sentences)": baselines.bm25_sentence_rankings(examples),
            f"{Path(args.baseline_encoder).name} (sentences)": baselines.dense_sentence_rankings(baseline, examples),
        }
        for system, ranking in rankings.items():
            details.setdefault(system, {})[name] = retrieval_metrics(ranking, golds, recall_ks=(1, 3), map_ks=())
    for spec in args.model:
        label, path = spec.split("=", 1)
        model = GeARModel.from_pretrained(path)
        configured = model.config.sentence_scoring
        scorings = [dataclasses.replace(configured, window_weighting=w) for w in WINDOW_WEIGHTINGS]
        scorings += [
            dataclasses.replace(configured, window_weighting="retrieval", window_temperature=t)
            for t in args.window_temperatures
            if t != configured.window_temperature
        ]
        scorings += [
            dataclasses.replace(configured, lexical_weight=w, lexical_temperature=t if w else 1.0)
            for w in args.lexical_weights
            for t in args.lexical_temperatures
        ]
        scorings = list(dict.fromkeys(scorings))  # the configured one may be among them
        for name, examples in sets.items():
            tick = time.perf_counter()
            results = scoring_ablation(model, examples, scorings, batch_size=args.batch_size)
            print(f"{label} {name}: {time.perf_counter() - tick:.0f} s", flush=True)
            for scoring, metrics in results.items():
                mark = " (configured)" if scoring == configured else ""
                weighting = scoring.window_weighting
                if weighting == "retrieval":
                    weighting += f" (temperature {scoring.window_temperature:g})"
                system = f"GeAR {label}, windows {weighting}"
                if scoring.lexical_weight:
                    system += f", BM25 {scoring.lexical_weight:g} (temperature {scoring.lexical_temperature:g})"
                system += mark
                details.setdefault(system, {})[name] = metrics
    names = list(sets)
    lines = [
        "# Local R@1 on every validation source (GeAR and the sentence baselines on the same questions)",
        "",
        f"Command: `python benchmarks/validation_sources.py {' '.join('--model ' + m for m in args.model)} "
        f"--questions {args.questions} --long-questions {args.long_questions}"
        f" --window-temperatures {' '.join(f'{t:g}' for t in args.window_temperatures)}"
        f" --lexical-weights {' '.join(f'{w:g}' for w in args.lexical_weights)}"
        f" --lexical-temperatures {' '.join(f'{t:g}' for t in args.lexical_temperatures)}"
        + ("" if len(names) == len(SETS) else f" --sets {' '.join(names)}")
        + ("" if args.out == DEFAULT_OUT else f" --out {args.out}")
        + "`; "
        f"torch {torch.__version__}, "
        f"{args.threads} threads. Questions: "
        + ", ".join(f"{n} {len(sets[n])}" for n in names)
        + " (sentences per document: "
        + ", ".join(f"{n} {sum(len(e.sentences) for e in sets[n]) / max(len(sets[n]), 1):.0f}" for n in names)
        + "). Window weighting changes only documents longer than one window (most of `long`).",
        "",
        "| system | " + " | ".join(f"{n} R@1" for n in names) + " | " + " | ".join(f"{n} R@3" for n in names) + " |",
        "| --- |" + " ---: |" * (2 * len(names)),
    ]
    for system, per_set in details.items():
        r1 = [f"{per_set[n]['R@1']:.3f}" if n in per_set else "" for n in names]
        r3 = [f"{per_set[n]['R@3']:.3f}" if n in per_set else "" for n in names]
        lines.append(f"| {system} | " + " | ".join(r1 + r3) + " |")
    lines += ["", f"Wall time: {time.perf_counter() - start:.0f} s.", ""]
    write_result(
        args.out, lines, {"args": vars(args), "questions": {n: len(sets[n]) for n in names}, "results": details}
    )


if __name__ == "__main__":
    main()
