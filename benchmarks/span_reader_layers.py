"""How many layers of its own the span reader needs: the same short training for each count, then EM / F1.

    python benchmarks/span_reader_layers.py [--layers 2 4] [--steps 120] [--questions 300]

Each count starts from the shipped model (``span_reader_layers: n``: the towers' first ``L - n`` layers shared, ``n``
of its own started as the encoder's top ``n``) and trains on the same batches in the same order (the span reader
stage's collator and loss, AdamW, warm-up then cosine decay). It is then read on the validation sets of the
training data module (held-out SQuAD train articles and NQ examples; never the SQuAD ``test`` articles), given
BM25's 3 best sentences of each gold document (the gold sentence put last when BM25 misses it), as
:func:`~gear_core.training.collator.reader_training_sentences` builds them. Training and reading time are
reported per example. Writes benchmarks/results/span_reader_layers.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

from gear_core.data.sources import data_path
from gear_core.evaluation.metrics import exact_match, mean, token_f1
from gear_core.loading import load_model
from gear_core.training.collator import reader_training_sentences
from gear_core.training.datamodule import GeARDataModule

ROOT = Path(__file__).resolve().parents[1]


def evaluate(model, triples) -> dict[str, float]:
    chosen = [reader_training_sentences(t, random.Random(0), 3, 0.0)[0] for t in triples]
    start = time.perf_counter()
    evidence = model.read_spans_batch([t.query for t in triples], [t.document for t in triples], chosen)
    seconds = time.perf_counter() - start
    return {
        "EM": 100 * mean(exact_match(e.text, [t.target]) for e, t in zip(evidence, triples, strict=True)),
        "F1": 100 * mean(token_f1(e.text, [t.target]) for e, t in zip(evidence, triples, strict=True)),
        "ms_per_question": 1000 * seconds / len(triples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--model", default="gear-minilm")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "span_reader_layers"))
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    data = GeARDataModule(
        squad_path=str(data_path("squad/dev-v1.1.json.gz")),
        split_path=str(data_path("squad/split.json")),
        squad_train_path=str(data_path("squad/train-v1.1.json.gz")),
        nq_path=str(data_path("nq-qed/qed-train.jsonl.gz")),
        validation_articles=8,
        validation_max_questions=args.questions,
        long_document_questions=0,
    )
    data.setup()
    rng = random.Random(0)
    train = rng.sample(data.train_triples, min(len(data.train_triples), 4 * args.steps * args.batch_size))
    validation = {v.name: v.triples for v in data.validation_sets}
    rows = []
    for layers in args.layers:
        torch.manual_seed(0)
        model = load_model(args.model, config_overrides={"span_reader_layers": layers})
        data.train_triples = train
        data.use_model(model, span_reader=True)
        batches = [
            data.train_triples[i : i + args.batch_size] for i in range(0, len(data.train_triples), args.batch_size)
        ]
        model.requires_grad_(False)
        model.span_reader.requires_grad_(True)
        optimizer = torch.optim.AdamW(model.span_reader.parameters(), lr=args.learning_rate, weight_decay=0.05)
        warmup = max(1, args.steps // 10)

        def factor(step: int, warmup: int = warmup) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (args.steps - warmup)))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        model.train()
        start, losses = time.perf_counter(), []
        for step in range(args.steps):
            loss, _ = model.span_reader_losses(**data.collator(batches[step]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.span_reader.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            losses.append(float(loss.detach()))
        train_seconds = time.perf_counter() - start
        model.eval()
        row = {
            "layers": layers,
            "parameters": sum(p.numel() for p in model.span_reader.parameters()),
            "train_examples_per_s": args.steps * args.batch_size / train_seconds,
            "final_loss": mean(losses[-20:]),
            **{f"{name}_{k}": v for name, triples in validation.items() for k, v in evaluate(model, triples).items()},
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1) + "\n")
    names = list(validation)
    lines = [
        "# Span reader: layers of its own",
        "",
        f"`python benchmarks/span_reader_layers.py --layers {' '.join(map(str, args.layers))} --steps {args.steps}"
        f" --questions {args.questions}`: {args.steps} steps of {args.batch_size} from the shipped model, lr"
        f" {args.learning_rate}, same batches for each count; read on the validation sets given BM25's 3 best sentences"
        " of the gold document (2 CPU threads, nothing else running).",
        "",
        "| own layers | parameters | train examples/s | loss (last 20) | "
        + " | ".join(f"{n} EM | {n} F1 | {n} ms/question" for n in names)
        + " |",
        "| ---: | ---: | ---: | ---: | " + " | ".join("---: | ---: | ---:" for _ in names) + " |",
    ]
    for r in rows:
        cells = " | ".join(f"{r[f'{n}_EM']:.1f} | {r[f'{n}_F1']:.1f} | {r[f'{n}_ms_per_question']:.1f}" for n in names)
        speed = f"{r['train_examples_per_s']:.1f}"
        lines.append(f"| {r['layers']} | {r['parameters']:,} | {speed} | {r['final_loss']:.3f} | {cells} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
