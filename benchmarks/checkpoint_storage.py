"""What int8 storage of a GeAR checkpoint costs: size, load time, embedding drift and validation quality.

    python benchmarks/checkpoint_storage.py --reference-rev 69a3b6f            # fp16 shipped model at that commit
    python benchmarks/checkpoint_storage.py --reference FOLDER --candidate FOLDER [--questions 300]

Compares two folders of the same model in the same run: the reference (by default the shipped
``gear_core/checkpoints/gear-minilm`` as a git revision stored it, extracted with ``git show`` into a temporary
folder) and the candidate (by default the shipped folder as it is now). For each it reports the size on disk,
the median ``from_pretrained`` time of ``--loads`` interleaved loads, and on the SQuAD validation slice
(``gear_core.data.squad.validation_paragraphs``, the held-out ``train`` articles ``gear validate`` uses):

- local R@1: ``rank_sentences_batch`` (cross-attention sentence ranking) against the gold sentences of
  ``triples_from_squad``, as ``GeARLightningModule.validation_step`` scores it;
- global R@5: ``encode_queries`` against ``encode_documents`` of every paragraph of the slice;
- max |difference| and min cosine of the candidate's query and document embeddings against the reference's,
  and how often both pick the same top sentence.

``--questions`` caps the questions (a fixed random sample, seed 0) to keep it to a few minutes on a CPU. Writes
``benchmarks/results/checkpoint_storage.md``.
"""

from __future__ import annotations

import argparse
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import gear_core
from gear_core import GeARModel
from gear_core.data.sources import SQUAD_DEV, SQUAD_SPLIT, data_path
from gear_core.data.squad import validation_paragraphs
from gear_core.data.triples import triples_from_squad
from gear_core.evaluation.metrics import mean, recall_at_k

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = Path(gear_core.DEFAULT_MODEL)
OUT = ROOT / "benchmarks" / "results" / "checkpoint_storage.md"


def extract_revision(revision: str, folder: Path) -> Path:
    """The shipped model folder as ``revision`` stored it, written to ``folder`` with ``git show``."""
    relative = SHIPPED.relative_to(ROOT).as_posix()
    names = subprocess.run(
        ["git", "ls-tree", "--name-only", revision, relative + "/"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    if not names:
        raise SystemExit(f"{revision} holds no {relative}")
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        blob = subprocess.run(["git", "show", f"{revision}:{name}"], cwd=ROOT, check=True, capture_output=True).stdout
        (folder / Path(name).name).write_bytes(blob)
    return folder


def folder_size(folder: Path) -> tuple[int, int]:
    """(bytes of weight files and their index, bytes of the whole folder)."""
    files = [p for p in folder.iterdir() if p.is_file()]
    weights = sum(p.stat().st_size for p in files if p.name.startswith("model") and "safetensors" in p.name)
    return weights, sum(p.stat().st_size for p in files)


def load_times(folders: dict[str, Path], loads: int) -> dict[str, float]:
    """Median wall time of ``from_pretrained`` per folder, loads interleaved (after one untimed warm-up each)."""
    times: dict[str, list[float]] = {name: [] for name in folders}
    for folder in folders.values():
        GeARModel.from_pretrained(folder)
    for _ in range(loads):
        for name, folder in folders.items():
            start = time.perf_counter()
            GeARModel.from_pretrained(folder)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def evaluate(model: GeARModel, triples, paragraphs) -> dict[str, object]:
    queries = [t.query for t in triples]
    ranked = model.rank_sentences_batch(queries, [t.document for t in triples], top_n=1)
    top = [(r[0].start_char, r[0].end_char) if r else None for r in ranked]
    local = mean(recall_at_k([span], t.gold_spans, 1) for span, t in zip(top, triples, strict=True))
    documents = model.encode_documents([p.context for p in paragraphs])
    query_vectors = model.encode_queries(queries)
    index = {p.id: i for i, p in enumerate(paragraphs)}
    top5 = np.argsort(-(query_vectors @ documents.T), axis=1)[:, :5]
    global_r5 = mean(recall_at_k(list(row), {index[t.document_id]}, 5) for row, t in zip(top5, triples, strict=True))
    return {"local": local, "global": global_r5, "top": top, "queries": query_vectors, "documents": documents}


def drift(candidate: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(max |difference| of any coordinate, min cosine of a row pair); rows are L2-normalised."""
    return float(np.abs(candidate - reference).max()), float((candidate * reference).sum(axis=1).min())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--reference", type=Path, help="reference model folder (e.g. the fp16 release)")
    source.add_argument("--reference-rev", help="git revision whose shipped gear-minilm is the reference")
    parser.add_argument("--candidate", type=Path, default=SHIPPED, help="folder to compare (default: shipped)")
    parser.add_argument("--questions", type=int, default=300, help="validation questions (sample, seed 0)")
    parser.add_argument("--loads", type=int, default=3, help="timed loads per folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as temporary:
        if args.reference_rev:
            reference = extract_revision(args.reference_rev, Path(temporary) / "reference")
            reference_label = f"shipped at `{args.reference_rev}`"
        else:
            reference, reference_label = args.reference, f"`{args.reference}`"
        folders = {"reference": reference, "candidate": args.candidate}
        paragraphs = validation_paragraphs(data_path(SQUAD_DEV), data_path(SQUAD_SPLIT))
        triples = [t for t in triples_from_squad(paragraphs) if t.gold_spans]
        if args.questions < len(triples):
            keep = sorted(random.Random(0).sample(range(len(triples)), args.questions))
            triples = [triples[i] for i in keep]
        print(f"{len(triples)} questions, {len(paragraphs)} paragraphs", file=sys.stderr)

        sizes = {name: folder_size(folder) for name, folder in folders.items()}
        loading = load_times(folders, args.loads)
        results, storage = {}, {}
        for name, folder in folders.items():
            started = time.perf_counter()
            model = GeARModel.from_pretrained(folder)
            storage[name] = _storage(folder)
            results[name] = evaluate(model, triples, paragraphs)
            print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)

    ref, cand = results["reference"], results["candidate"]
    query_drift = drift(cand["queries"], ref["queries"])
    document_drift = drift(cand["documents"], ref["documents"])
    agreement = mean(float(a == b) for a, b in zip(ref["top"], cand["top"], strict=True))

    command = "python " + " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix(), *(argv or sys.argv[1:])])
    labels = {"reference": reference_label, "candidate": f"`{_relative(args.candidate)}`"}
    rows = [
        "| | reference | candidate |",
        "| --- | ---: | ---: |",
        f"| folder | {labels['reference']} | {labels['candidate']} |",
        f"| weights stored as | {storage['reference']} | {storage['candidate']} |",
        "| weight files + index (MB) | " + " | ".join(f"{sizes[n][0] / 1e6:.1f}" for n in folders) + " |",
        "| whole folder (MB) | " + " | ".join(f"{sizes[n][1] / 1e6:.1f}" for n in folders) + " |",
        f"| `from_pretrained` (s, median of {args.loads}) | " + " | ".join(f"{loading[n]:.2f}" for n in folders) + " |",
        f"| local R@1 ({len(triples)} questions) | {ref['local']:.3f} | {cand['local']:.3f} |",
        f"| global R@5 ({len(triples)} questions, {len(paragraphs)} paragraphs) | {ref['global']:.3f} | "
        f"{cand['global']:.3f} |",
        f"| query embeddings vs reference ({len(triples)}): max abs diff / min cosine | | "
        f"{query_drift[0]:.4f} / {query_drift[1]:.5f} |",
        f"| document embeddings vs reference ({len(paragraphs)}): max abs diff / min cosine | | "
        f"{document_drift[0]:.4f} / {document_drift[1]:.5f} |",
        f"| same top sentence as the reference | | {agreement:.3f} |",
    ]
    text = "\n".join(
        [
            "# Checkpoint storage: fp16 vs int8",
            "",
            f"`{command}`",
            "",
            "Same process, same questions: a fixed sample (seed 0) of the SQuAD validation slice (the held-out",
            "`train` articles of `gear validate`); local R@1 is cross-attention sentence ranking, global R@5 the",
            "bi-encoder over every paragraph of the slice. Both models compute in float32 after loading.",
            f"{args.threads} CPU thread(s); the machine's 2 cores were shared with another training run at the",
            "time, so the load times are indicative only. The shipped model's later training stages saw these",
            "articles (see its model card): read the difference between the columns, not the level.",
            "",
            *rows,
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


def _storage(folder: Path) -> str:
    """``storage_dtype`` of the folder's config.json, else the dtype of its first stored tensor."""
    import json

    from safetensors import safe_open

    stored = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("storage_dtype")
    if stored:
        return f"{stored} + per-row float32 scales"
    first = sorted(folder.glob("*.safetensors"))[0]
    with safe_open(first, "pt") as f:
        return str(f.get_tensor(next(iter(f.keys()))).dtype).removeprefix("torch.")


def _relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


if __name__ == "__main__":
    raise SystemExit(main())
