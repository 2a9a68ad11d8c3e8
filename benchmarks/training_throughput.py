"""Training throughput: the GeAR step against a plain bi-encoder contrastive step, same encoder, batch and lengths.

    python benchmarks/training_throughput.py [--batch-size 16] [--steps 4] [--repeats 3] [--device cpu]

Both steps run interleaved in one process on the same batches: the bi-encoder step is the query and document
encoders with the in-batch contrastive loss (what any embedding fine-tune does); the GeAR step adds the
momentum encoder and queue, the fusion encoder and the decoder's LM loss. Writes
benchmarks/results/training_throughput.md; on a GPU it also reports utilisation (nvidia-smi).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

import torch

from gear_core import GeARModel
from gear_core.data import load_split, read_squad, triples_from_squad
from gear_core.losses import contrastive_loss
from gear_core.modeling import embed
from gear_core.momentum import MomentumEncoder
from gear_core.training import TripleCollator

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "squad"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gpu_utilisation() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder", default="all-MiniLM-L6-v2")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--document-length", type=int, default=192)
    parser.add_argument("--steps", type=int, default=4, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "training_throughput.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    model = GeARModel.from_encoder(args.encoder, max_document_length=args.document_length).to(device).train()
    momentum = MomentumEncoder(model, queue_size=4096).to(device)
    collate = TripleCollator(model.tokenizer, 32, args.document_length, 32)
    split = load_split(DATA / "split.json")
    triples = triples_from_squad(read_squad(DATA / "dev-v1.1.json.gz", split["train"]))
    # Long paragraphs first, so every batch is padded to the full document length: a like-for-like worst case.
    triples.sort(key=lambda t: -len(t.document))
    batches = [
        {k: v.to(device) for k, v in collate(triples[i * args.batch_size : (i + 1) * args.batch_size]).items()}
        for i in range(args.steps)
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)  # as GeARLightningModule
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def bi_encoder_step(batch):
        with autocast:
            q = embed(model.query_encoder, batch["query_input_ids"], batch["query_attention_mask"])
            d = embed(model.document_encoder_module, batch["document_input_ids"], batch["document_attention_mask"])
            loss = contrastive_loss(q, d, batch["document_ids"], model.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def gear_step(batch):
        momentum.update(model)
        with autocast:
            out = model(**batch, momentum=momentum, soft_label_weight=0.4)
        momentum.queue.enqueue(out.momentum_query_embeds, out.momentum_document_embeds, batch["document_ids"])
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()

    steps = {"bi-encoder contrastive step": bi_encoder_step, "GeAR step (CL + momentum/queue + fusion + LM)": gear_step}
    for step in steps.values():  # warm-up
        step(batches[0])
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    utilisation = ""
    for _ in range(args.repeats):
        for name, step in steps.items():  # interleaved
            synchronize(device)
            start = time.perf_counter()
            for batch in batches:
                step(batch)
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
            if device.type == "cuda":
                utilisation = gpu_utilisation()
    examples = args.steps * args.batch_size
    base = statistics.median(seconds["bi-encoder contrastive step"])
    lines = [
        "# Training throughput: GeAR step vs bi-encoder step",
        "",
        f"Command: `python benchmarks/training_throughput.py --batch-size {args.batch_size} --steps {args.steps} "
        f"--repeats {args.repeats} --device {args.device}`",
        f"Encoder {args.encoder}, batch {args.batch_size}, query/target 32 and document {args.document_length} tokens, "
        f"device {args.device}" + (f" ({args.threads} threads)" if device.type == "cpu" else " (bf16 autocast)") + ".",
        "",
        "| step | median s per step | examples/s | cost vs bi-encoder |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, values in seconds.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {median / args.steps:.3f} | {examples / median:.1f} | {median / base:.2f}x |")
    if utilisation:
        lines += ["", f"GPU utilisation / memory at the end of the last timed block: {utilisation}"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
