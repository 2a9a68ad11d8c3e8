"""Training throughput of each training stage against a plain bi-encoder step, same model, batch and lengths.

    python benchmarks/training_throughput.py [--batch-size 16] [--steps 4] [--repeats 3] [--device cpu]

Every step runs interleaved in one process on the same batches, with the shipped model's shape (minilm-cpu: one
shared encoder, 2-layer decoder):

- bi-encoder step: query and document towers with the in-batch contrastive loss (any embedding fine-tune);
- full GeAR step (``stage: full``, the paper's step plus the localization loss): the same plus the momentum
  encoder and queue, the fusion encoder, the decoder's LM loss and the localization loss;
- retrieval stage (``stage: full`` with ``lm_loss_weight: 0`` and no localization loss): bi-encoder + momentum;
- fusion stage (``stage: fusion``): towers frozen, document token states read from a
  :class:`~gear_core.training.document_states.DocumentStateCache`; localization + LM losses. Its one-time cost,
  caching the states, is measured too and reported per training example (SQuAD has ~4.6 questions a paragraph).

Writes benchmarks/results/training_throughput.md; on a GPU it also reports utilisation (nvidia-smi).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from gear_core import GeARModel
from gear_core.data import load_split, read_squad, triples_from_squad
from gear_core.data.sources import SQUAD_DEV, SQUAD_SPLIT, data_path
from gear_core.layers import embed
from gear_core.losses import contrastive_loss
from gear_core.momentum import MomentumEncoder
from gear_core.training import TripleCollator
from gear_core.training.collator import CachedStateCollator
from gear_core.training.document_states import DocumentStateCache

ROOT = Path(__file__).resolve().parents[1]


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

    model = GeARModel.from_encoder(
        args.encoder,
        shared_encoder=True,
        share_decoder_embeddings=True,
        decoder_num_layers=2,
        decoder_init="encoder",
        max_query_length=32,
        max_document_length=args.document_length,
        max_target_length=32,
    ).to(device)
    model.train()
    momentum = MomentumEncoder(model, queue_size=2048).to(device)
    collate = TripleCollator(model.tokenizer, 32, args.document_length, 32)
    split = load_split(data_path(SQUAD_SPLIT))
    triples = triples_from_squad(read_squad(data_path(SQUAD_DEV), split["train"]))
    # Long paragraphs first, so every batch is padded to the full document length: a like-for-like worst case.
    triples.sort(key=lambda t: -len(t.document))
    chunks = [triples[i * args.batch_size : (i + 1) * args.batch_size] for i in range(args.steps)]
    batches = [{k: v.to(device) for k, v in collate(chunk).items()} for chunk in chunks]
    documents = sorted({t.document for chunk in chunks for t in chunk})
    cache_folder = tempfile.mkdtemp(prefix="gear-throughput-")
    synchronize(device)
    started = time.perf_counter()
    cache = DocumentStateCache.build(model, documents, cache_folder, batch_size=32, show_progress=False)
    synchronize(device)
    caching_seconds_per_document = (time.perf_counter() - started) / len(documents)
    model.train()
    cached_collate = CachedStateCollator(model.tokenizer, cache, 32, 32)
    cached_batches = [{k: v.to(device) for k, v in cached_collate(chunk).items()} for chunk in chunks]
    encoders = [model.query_encoder, model.temperature]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)  # as GeARLightningModule
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def trainable(towers: bool) -> None:
        for part in encoders:
            part.requires_grad_(towers)

    def bi_encoder_step(batch):
        trainable(True)
        with autocast:
            q = embed(model.query_encoder, batch["query_input_ids"], batch["query_attention_mask"])
            d = embed(model.document_encoder_module, batch["document_input_ids"], batch["document_attention_mask"])
            loss = contrastive_loss(q, d, batch["document_ids"], model.temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def full_step(batch, lm_loss_weight=0.25, localization_loss_weight=1.0):
        trainable(True)
        momentum.update(model)
        with autocast:
            out = model(
                **batch,
                momentum=momentum,
                soft_label_weight=0.4,
                lm_loss_weight=lm_loss_weight,
                localization_loss_weight=localization_loss_weight,
            )
        momentum.queue.enqueue(out.momentum_query_embeds, out.momentum_document_embeds, batch["document_ids"])
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()

    def retrieval_step(batch):
        full_step(batch, lm_loss_weight=0.0, localization_loss_weight=0.0)

    def fusion_step(batch):
        trainable(False)
        with autocast:
            lm, localization = model.fusion_losses(**batch, lm_loss_weight=0.25, localization_loss_weight=1.0)
            loss = 0.25 * lm + localization
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    baseline = "bi-encoder contrastive step"
    steps = {
        baseline: (bi_encoder_step, batches),
        "full GeAR step (CL + momentum/queue + fusion + LM + localization)": (full_step, batches),
        "retrieval stage (full step, LM and localization off)": (retrieval_step, batches),
        "fusion stage (cached document states; localization + LM)": (fusion_step, cached_batches),
    }
    for step, step_batches in steps.values():  # warm-up
        step(step_batches[0])
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    utilisation = ""
    for _ in range(args.repeats):
        for name, (step, step_batches) in steps.items():  # interleaved
            synchronize(device)
            start = time.perf_counter()
            for batch in step_batches:
                step(batch)
            synchronize(device)
            seconds[name].append(time.perf_counter() - start)
            if device.type == "cuda":
                utilisation = gpu_utilisation()
    examples = args.steps * args.batch_size
    base = statistics.median(seconds[baseline])
    full = statistics.median(seconds["full GeAR step (CL + momentum/queue + fusion + LM + localization)"])
    lines = [
        "# Training throughput: each training stage vs the bi-encoder step",
        "",
        f"Command: `python benchmarks/training_throughput.py --batch-size {args.batch_size} --steps {args.steps} "
        f"--repeats {args.repeats} --device {args.device}`",
        f"Encoder {args.encoder}, batch {args.batch_size}, query/target 32 and document {args.document_length} tokens, "
        f"device {args.device}" + (f" ({args.threads} threads)" if device.type == "cpu" else " (bf16 autocast)") + ".",
        "",
        "Shape of the shipped model (one shared encoder, 2-layer decoder). Times are medians of interleaved blocks;",
        "anything else running on the machine slows every row alike, so read the ratios.",
        "",
        "| step | median s per step | examples/s | cost vs bi-encoder | speed vs full step |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, values in seconds.items():
        median = statistics.median(values)
        lines.append(
            f"| {name} | {median / args.steps:.3f} | {examples / median:.1f} | {median / base:.2f}x "
            f"| {full / median:.1f}x |"
        )
    fusion = statistics.median(seconds["fusion stage (cached document states; localization + LM)"])
    amortised = fusion / examples + caching_seconds_per_document / 4.6
    lines += [
        "",
        f"One-time cost of the fusion stage: caching document states at {1 / caching_seconds_per_document:.1f} "
        f"documents/s ({len(documents)} documents). Spread over SQuAD's ~4.6 questions a paragraph for one epoch, "
        f"the fusion stage costs {amortised * 1000:.0f} ms an example ({1 / amortised:.1f} examples/s, "
        f"{full / examples / amortised:.1f}x the full step); every further epoch runs at the table's rate.",
    ]
    if utilisation:
        lines += ["", f"GPU utilisation / memory at the end of the last timed block: {utilisation}"]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
