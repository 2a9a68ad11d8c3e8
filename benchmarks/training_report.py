"""Summarise Lightning CSV logs of training runs as markdown: loss curves, validation metrics, time per step.

    python benchmarks/training_report.py --run NAME=DIR [--run NAME=DIR ...] [--start NAME=LOCAL_R1,GLOBAL_R5]
        [--title TITLE] [--note TEXT] --out benchmarks/results/FILE.md

DIR is a run's ``default_root_dir``; its newest ``*/version_*/metrics.csv`` is read. ``--start`` adds the
validation figures of the untrained start (from ``gear validate``) as step 0.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    files = sorted(run_dir.glob("**/version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"no metrics.csv under {run_dir}")
    with files[-1].open(newline="") as handle:
        return list(csv.DictReader(handle))


def series(rows: list[dict[str, str]], key: str) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]


def windowed(points: list[tuple[int, float]], every: int) -> list[tuple[int, float]]:
    """Mean of the logged values in each window of ``every`` steps (a readable loss curve)."""
    buckets: dict[int, list[float]] = {}
    for step, value in points:
        buckets.setdefault(step // every, []).append(value)
    return [((b + 1) * every, sum(v) / len(v)) for b, v in sorted(buckets.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="NAME=DIR")
    parser.add_argument("--start", action="append", default=[], help="NAME=LOCAL_R1,GLOBAL_R5 of the untrained start")
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--title", default="Training runs")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    runs = {name: read_metrics(Path(path)) for name, path in (r.rsplit("=", 1) for r in args.run)}
    starts = {name: value.split(",") for name, value in (s.rsplit("=", 1) for s in args.start)}
    lines = [f"# {args.title}", ""]
    if args.note:
        lines += [args.note, ""]

    lines += ["## Validation logged during training (held-out SQuAD `train` articles)", ""]
    lines += ["| run | step | local R@1 | global R@5 |", "| --- | ---: | ---: | ---: |"]
    for name, rows in runs.items():
        if name in starts:
            local, global_ = starts[name]
            lines.append(f"| {name} | 0 (untrained) | {float(local):.3f} | {float(global_):.3f} |")
        local = dict(series(rows, "val/local_r1"))
        global_ = dict(series(rows, "val/global_r5"))
        for step in sorted(set(local) | set(global_)):
            lines.append(f"| {name} | {step} | {local.get(step, math.nan):.3f} | {global_.get(step, math.nan):.3f} |")

    lines += ["", f"## Training loss (mean over each {args.every} steps)", ""]
    keys = ["train/loss", "train/contrastive_loss", "train/lm_loss", "train/localization_loss"]
    lines += [
        "| run | steps up to | loss | contrastive | LM | localization |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, rows in runs.items():
        curves = {k: dict(windowed(series(rows, k), args.every)) for k in keys}
        for step in sorted(curves["train/loss"]):
            values = [curves[k].get(step) for k in keys]
            cells = " | ".join("-" if v is None else f"{v:.3f}" for v in values)
            lines.append(f"| {name} | {step} | {cells} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
