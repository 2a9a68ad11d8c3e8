"""Does the model rank and answer the same on every device? The training validation's sets, on the CPU and on CUDA.

    python benchmarks/device_parity.py [--model gear-minilm] [--questions 200] [--long-questions 30] [--out OUT]

Why: on the first lent H200 the span reader's in-training validation scored the frozen ranking's local R@1 on whole
articles (``long``, 30 questions) at 0.333, where the same weights score 0.667 on this CPU (squad 0.875 vs 0.870,
nq 0.685 vs 0.675). This script separates the device's arithmetic from the GPU image's library versions: on one
machine it ranks each validation set (validation_sources.py's; 200 and 30 questions are the span reader
training's validation) on the CPU, on CUDA
in float32, and on CUDA with TF32 matrix products, and reports local R@1, the top-1 sentence's agreement with the
CPU's, the largest score difference, and the evidence's agreement. Imports nothing the GPU image lacks (no faiss).
Writes ``OUT.md`` and ``OUT.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from gear_core import GeARModel
from gear_core.evaluation.metrics import recall_at_k

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validation_sources import validation_triples


def agreement(a: list, b: list) -> float:
    return round(float(np.mean([x == y for x, y in zip(a, b, strict=True)])), 4) if a else float("nan")


def run_on(model: GeARModel, triples: list, device: str, tf32: bool) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    model.to(device)
    queries, documents = [t.query for t in triples], [t.document for t in triples]
    started = time.perf_counter()
    with torch.inference_mode():
        sentences, (scores,) = model.sentence_scores_batch(queries, documents)
        evidence = model.generate_batch(queries, documents)
    seconds = time.perf_counter() - started
    top1 = [int(np.nanargmax(s)) if len(s) else -1 for s in scores]
    hits = [
        recall_at_k([(ss[i].start_char, ss[i].end_char)] if i >= 0 else [], t.gold_spans, 1)
        for ss, i, t in zip(sentences, top1, triples, strict=True)
        if t.gold_spans
    ]
    return {
        "top1": top1,
        "scores": [np.asarray(s, dtype=np.float64) for s in scores],
        "evidence": evidence,
        "local_r1": float(np.mean(hits)) if hits else float("nan"),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gear-minilm")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--long-questions", type=int, default=30)
    parser.add_argument("--out", default="benchmarks/results/device_parity")
    args = parser.parse_args()

    model = GeARModel.from_pretrained(args.model).eval()
    settings = [("cpu", False)]
    if torch.cuda.is_available():
        settings += [("cuda", False), ("cuda", True)]
    rows = []
    for name, triples in validation_triples(args.questions, args.long_questions, []).items():
        reference = None
        for device, tf32 in settings:
            result = run_on(model, triples, device, tf32)
            reference = reference or result
            differences = [
                float(np.nanmax(np.abs(a - b))) if len(a) else 0.0
                for a, b in zip(result["scores"], reference["scores"], strict=True)
            ]
            rows.append(
                {
                    "set": name,
                    "questions": len(triples),
                    "device": device + (" tf32" if tf32 else ""),
                    "local_r1": round(result["local_r1"], 4),
                    "top1_same_as_cpu": agreement(result["top1"], reference["top1"]),
                    "max_score_difference": max(differences, default=0.0),
                    "evidence_same_as_cpu": agreement(result["evidence"], reference["evidence"]),
                    "seconds": round(result["seconds"], 2),
                }
            )
            print(rows[-1], flush=True)
    versions = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    import transformers

    versions["transformers"] = transformers.__version__
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"versions": versions, "rows": rows}, indent=1), encoding="utf-8")
    lines = [
        "# Device parity: the same weights ranking and answering on each device",
        "",
        f"Command: `python benchmarks/device_parity.py --model {args.model} --questions {args.questions} "
        f"--long-questions {args.long_questions}`; {versions}.",
        "",
        "| set | questions | device | local R@1 | top-1 as on the CPU | largest score difference"
        " | evidence as on the CPU | seconds |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r['set']} | {r['questions']} | {r['device']} | {r['local_r1']:.3f} | {r['top1_same_as_cpu']:.3f} |"
        f" {r['max_score_difference']:.2e} | {r['evidence_same_as_cpu']:.3f} | {r['seconds']} |"
        for r in rows
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
