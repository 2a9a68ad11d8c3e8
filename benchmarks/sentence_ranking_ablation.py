"""Which cross-attention layer and which poolings rank sentences best, on the validation slice (never on test).

    python benchmarks/sentence_ranking_ablation.py --model NAME=PATH [--model NAME=PATH ...]
        [--untrained NAME=ENCODER] [--out benchmarks/results/sentence_ranking_ablation.md]

For each model, every scoring the config allows (fusion layer x head pooling x query-token pooling x sentence
pooling) is computed from one fusion pass per (question, paragraph) pair of the held-out validation articles
(``gear_core.data.validation_paragraphs``: the same articles training holds out). The output has, per model:
the per-layer curve (the paper's Figure 4: R@1 per layer, with the configured poolings and with the best
poolings at that layer), the poolings at the configured layer, the ten best scorings, and two text-free
references on the same questions (first sentence; longest sentence, the length prior that sum pooling carries).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from gear_core import GeARModel
from gear_core.data import validation_paragraphs
from gear_core.data.sources import SQUAD_DEV, SQUAD_SPLIT, data_path
from gear_core.evaluation.metrics import ranking_from_scores, retrieval_metrics
from gear_core.evaluation.ranking import all_scorings, scoring_ablation
from gear_core.evaluation.tasks import question_examples
from gear_core.scoring import SentenceScoring

METRICS = ("R@1", "MAP@1", "R@3", "MAP@3")


def _row(name: str, metrics: dict[str, float]) -> str:
    return f"| {name} | " + " | ".join(f"{metrics[m]:.3f}" for m in METRICS) + " |"


def _header(first: str) -> list[str]:
    return [f"| {first} | " + " | ".join(METRICS) + " |", "| --- |" + " ---: |" * len(METRICS)]


def _name(s: SentenceScoring) -> str:
    return f"layer {s.layer + 1}, heads {s.head_pooling}, query {s.query_pooling}, sentence {s.sentence_pooling}"


def report_model(name: str, model: GeARModel, examples, batch_size: int) -> list[str]:
    tick = time.perf_counter()
    results = scoring_ablation(model, examples, all_scorings(model), batch_size=batch_size, show_progress=True)
    seconds = time.perf_counter() - tick
    configured = model.config.sentence_scoring
    layers = model.config.cross_attention_layer_indices
    lines = [f"## {name}", "", f"{len(results)} scorings, {seconds:.0f} s for all of them.", ""]
    lines += ["Per-layer curve (R@1; layers numbered from 1, the paper's Figure 4):", ""]
    lines += ["| layer | configured poolings | best poolings at this layer | which |", "| --- | ---: | ---: | --- |"]
    for layer in layers:
        same = SentenceScoring(layer, configured.head_pooling, configured.query_pooling, configured.sentence_pooling)
        best = max((s for s in results if s.layer == layer), key=lambda s: results[s]["R@1"])
        mark = " (configured)" if layer == configured.layer else ""
        lines.append(
            f"| {layer + 1}{mark} | {results[same]['R@1']:.3f} | {results[best]['R@1']:.3f} | "
            f"heads {best.head_pooling}, query {best.query_pooling}, sentence {best.sentence_pooling} |"
        )
    lines += ["", f"Poolings at the configured layer ({configured.layer + 1}):", ""]
    lines += _header("heads / query tokens / sentence")
    for s in sorted((s for s in results if s.layer == configured.layer), key=lambda s: -results[s]["R@1"]):
        label = f"{s.head_pooling} / {s.query_pooling} / {s.sentence_pooling}"
        lines.append(_row(label + (" (configured)" if s == configured else ""), results[s]))
    lines += ["", "Ten best scorings overall:", ""]
    lines += _header("scoring")
    for s in sorted(results, key=lambda s: (-results[s]["R@1"], -results[s]["MAP@3"]))[:10]:
        lines.append(_row(_name(s), results[s]))
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], help="NAME=PATH of a saved GeAR")
    parser.add_argument(
        "--untrained", action="append", default=[], help="NAME=ENCODER: a fresh GeAR (minilm-cpu shape) from ENCODER"
    )
    parser.add_argument("--squad", default=str(data_path(SQUAD_DEV)))
    parser.add_argument("--split", default=str(data_path(SQUAD_SPLIT)))
    parser.add_argument("--validation-articles", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", default="benchmarks/results/sentence_ranking_ablation.md")
    args = parser.parse_args()

    paragraphs = validation_paragraphs(args.squad, args.split, args.validation_articles, args.seed)
    examples = question_examples(paragraphs)
    golds = [e.gold_sentences for e in examples]
    titles = ", ".join(sorted({p.title for p in paragraphs}))
    lines = [
        "# Sentence ranking ablation (validation slice)",
        "",
        f"{len(examples)} questions, {len(paragraphs)} paragraphs of the held-out `train` articles {titles}; "
        "gold = sentences holding an answer start. Produced by `python benchmarks/sentence_ranking_ablation.py "
        + " ".join([f"--model {m}" for m in args.model] + [f"--untrained {u}" for u in args.untrained])
        + "`.",
        "",
        "Text-free references on the same questions:",
        "",
        *_header("reference"),
        _row("first sentence", retrieval_metrics([list(range(len(e.sentences))) for e in examples], golds)),
        _row(
            "longest sentence (characters)",
            retrieval_metrics([ranking_from_scores([len(s.text) for s in e.sentences]) for e in examples], golds),
        ),
        "",
    ]
    models = [
        (name, lambda p=path: GeARModel.from_pretrained(p)) for name, path in (m.split("=", 1) for m in args.model)
    ]
    models += [
        (
            name,
            lambda e=encoder: GeARModel.from_encoder(
                e,
                shared_encoder=True,
                share_decoder_embeddings=True,
                decoder_num_layers=2,
                decoder_init="encoder",
                max_query_length=32,
                max_document_length=192,
            ),
        )
        for name, encoder in (u.split("=", 1) for u in args.untrained)
    ]
    for name, load in models:
        lines += report_model(name, load().eval(), examples, args.batch_size)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
