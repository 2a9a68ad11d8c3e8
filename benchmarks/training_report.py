"""Summarise Lightning CSV logs of training runs as markdown: loss curves, validation metrics, time per step.

    python benchmarks/training_report.py --run NAME=DIR [--run NAME=DIR ...] [--title TITLE] [--note TEXT]
        --out benchmarks/results/FILE.md

DIR is a run's ``default_root_dir``; its ``*/version_*/metrics.csv`` are read (a run resumed from a checkpoint
logs each part to a new version folder; they are joined by step). Every row comes from those logs: train with
``--model.validate_before_training true`` to have the starting model validated (on the same questions as the later
rows) and logged at step 0, shown as ``0 (before training)``.

Note: the step-0 rows of ``training_minilm_cpu.md`` and ``training_gear_minilm.md`` were typed in by hand (an
option this script no longer has) from ``gear validate`` figures, not logged with the rows below them.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    """The run's logged rows, by step. A run resumed with ``--ckpt_path`` logs to a new ``version_*`` folder: the
    versions are read oldest first and each keeps the steps before the next one's first (a later version replaces
    the steps an earlier one logged past the checkpoint it resumed from)."""
    files = sorted(run_dir.glob("**/version_*/metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise FileNotFoundError(f"no metrics.csv under {run_dir}")
    rows: list[dict[str, str]] = []
    for path in files:
        with path.open(newline="") as handle:
            version = list(csv.DictReader(handle))
        if version:
            first = int(version[0]["step"])
            rows = [row for row in rows if int(row["step"]) < first] + version
    return rows


def series(rows: list[dict[str, str]], key: str) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]


def validation_columns(runs: dict[str, list[dict[str, str]]]) -> list[str]:
    """The logged validation metrics (``val/local_r1`` or ``val/<set>/local_r1`` ...), ``val/score`` last."""
    keys = {k for rows in runs.values() for row in rows for k, v in row.items() if k.startswith("val/") and v}
    return sorted(keys - {"val/score"}) + (["val/score"] if "val/score" in keys else [])


LOSS_TITLES = {
    "train/loss": "loss",
    "train/contrastive_loss": "contrastive",
    "train/lm_loss": "LM",
    "train/localization_loss": "localization",
    "train/span_loss": "span",
    "train/distillation_loss": "distillation",
}


def loss_columns(runs: dict[str, list[dict[str, str]]]) -> list[str]:
    """The logged training losses (the total first, then the known parts, then any other), e.g. the span reader
    stage's ``train/span_loss`` alone."""
    logged = {k for rows in runs.values() for row in rows for k, v in row.items() if k.startswith("train/") and v}
    known = [k for k in LOSS_TITLES if k in logged]
    return known + sorted(logged - set(known))


def column_title(key: str) -> str:
    names = {"local_r1": "local R@1", "global_r5": "global R@5", "score": "score"}
    parts = key.split("/")[1:]
    return " ".join([*parts[:-1], names.get(parts[-1], parts[-1])])


def validation_rows(rows: list[dict[str, str]], columns: list[str]) -> list[tuple[str, dict[str, float]]]:
    """One row per validation, in logged order; a validation logged before any training loss is the start."""
    out: list[tuple[str, str, dict[str, float]]] = []  # (logged step, label, values)
    trained = False
    for row in rows:
        values = {k: float(row[k]) for k in columns if row.get(k) not in (None, "")}
        step = row["step"]
        if values and out and out[-1][0] == step and not values.keys() & out[-1][2].keys():
            out[-1][2].update(values)  # another metric of the same validation, on its own CSV row
        elif values:
            start = not trained and not out and step == "0"
            out.append((step, "0 (before training)" if start else step, values))
        if row.get("train/loss") not in (None, ""):
            trained = True
    return [(label, values) for _, label, values in out]


def windowed(points: list[tuple[int, float]], every: int) -> list[tuple[int, float]]:
    """Mean of the logged values in each window of ``every`` steps (a readable loss curve)."""
    buckets: dict[int, list[float]] = {}
    for step, value in points:
        buckets.setdefault(step // every, []).append(value)
    return [((b + 1) * every, sum(v) / len(v)) for b, v in sorted(buckets.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="NAME=DIR")
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--title", default="Training runs")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    runs = {name: read_metrics(Path(path)) for name, path in (r.rsplit("=", 1) for r in args.run)}
    lines = [f"# {args.title}", ""]
    if args.note:
        lines += [args.note, ""]

    lines += ["## Validation logged during training (held-out data: see each column)", ""]
    columns = validation_columns(runs)
    lines += ["| run | step | " + " | ".join(column_title(c) for c in columns) + " |"]
    lines += ["| --- | ---: | " + " | ".join("---:" for _ in columns) + " |"]
    for name, rows in runs.items():
        for label, values in validation_rows(rows, columns):
            cells = " | ".join(f"{values.get(c, math.nan):.3f}" for c in columns)
            lines.append(f"| {name} | {label} | {cells} |")

    lines += ["", f"## Training loss (mean over each {args.every} steps)", ""]
    keys = loss_columns(runs)
    lines += [
        "| run | steps up to | " + " | ".join(LOSS_TITLES.get(k, k.split("/", 1)[1]) for k in keys) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in keys) + " |",
    ]
    for name, rows in runs.items():
        curves = {k: dict(windowed(series(rows, k), args.every)) for k in keys}
        for step in sorted({step for curve in curves.values() for step in curve}):
            values = [curves[k].get(step) for k in keys]
            cells = " | ".join("-" if v is None else f"{v:.3f}" for v in values)
            lines.append(f"| {name} | {step} | {cells} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
