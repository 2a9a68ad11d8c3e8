"""scripts/gpu_train.sh, the GPU run, on the CPU with a tiny budget: prepare into a temporary .gpu, train `-c gpu`
for a few steps, and rebuild the int8 export from what the run leaves in OUT (what comes back from a GPU machine)."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = ROOT / "runs" / "data" / "wiki_extract.jsonl"
SCRIPT = ROOT / "scripts" / "gpu_train.sh"
MIB = 2**20
# One training step between two validations (the one before training and the one at the step), all tiny; in
# bf16-mixed as on the GPU (Lightning refuses to clip a fused optimizer's gradients under mixed precision).
TRAIN_ARGS = [
    *("--minutes", "3", "--accelerator", "cpu"),
    *("--trainer.precision", "bf16-mixed", "--trainer.max_steps", "1", "--trainer.val_check_interval", "1"),
    *("--trainer.log_every_n_steps", "1", "--data.batch_size", "4", "--data.num_workers", "0"),
    *("--data.max_train_triples", "32", "--data.validation_articles", "1", "--data.validation_max_questions", "4"),
    *("--data.long_document_questions", "2", "--data.validation_fraction", "0.02"),
]


# What the GPU image lacks and the run must not need (a sitecustomize makes importing them fail), as found there:
# faiss once broke `gear train` (the CLI's error check imported the index module), bm25s and PyStemmer are carried.
GPU_IMAGE_LACKS = ("faiss", "llama_index", "datasets")
BLOCKER = f"""import sys
class _NotOnTheGPUImage:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {GPU_IMAGE_LACKS!r}:
            raise ImportError(name + " is not on the GPU image")
sys.meta_path.insert(0, _NotOnTheGPUImage())
"""


def _helper():
    spec = importlib.util.spec_from_file_location("gpu_prepare", ROOT / "scripts" / "gpu_prepare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _triple(title: str, k: int, query: str) -> dict:
    document = f"{title} is a place. It was founded in 19{k:02d}. Many people visit {title} every year."
    start = document.index("It was")
    end = document.index(".", start) + 1
    return {
        "query": query,
        "document": document,
        "target": document[start:end],
        "gold_spans": [[start, end]],
        "document_id": f"wx:{title}#0",
        "kind": "relevant",
    }


def _read_gzip_jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as handle:
        return [json.loads(line) for line in handle]


def _tiny_synthetic(path: Path) -> Path:
    triples = [_triple(f"Town {i}", i, q) for i in range(30) for q in (f"when was town {i} founded", f"town {i} year")]
    path.write_text("".join(json.dumps(t) + "\n" for t in triples))
    return path


def test_subsample_keeps_whole_documents_sorted_and_fits(tmp_path):
    helper = _helper()
    source = _tiny_synthetic(tmp_path / "triples.jsonl")
    with open(source, "a") as handle:  # a line still being written by another process is left out
        handle.write('{"query": "half a li')
    report = helper.subsample_synthetic(source, tmp_path / "out.jsonl.gz", max_bytes=None, max_triples=11, seed=1)
    lines = _read_gzip_jsonl(tmp_path / "out.jsonl.gz")
    ids = [t["document_id"] for t in lines]
    assert ids == sorted(ids) and len(lines) == report["triples"] == 10  # five whole documents of two triples
    assert all(ids.count(i) == 2 for i in ids)
    full = helper.subsample_synthetic(source, tmp_path / "all.jsonl.gz", None, None)
    budget = full["bytes"] // 2
    half = helper.subsample_synthetic(source, tmp_path / "half.jsonl.gz", max_bytes=budget, max_triples=None)
    assert 0 < half["bytes"] <= budget and 0 < half["triples"] < full["triples"] == 60


def test_out_limits(tmp_path):
    helper = _helper()
    for i in range(9):
        (tmp_path / f"f{i}").write_bytes(b"x")
    assert any("9 files" in p for p in helper.check_out(tmp_path))
    for i in range(2, 9):
        (tmp_path / f"f{i}").unlink()
    assert helper.check_out(tmp_path) == []


@pytest.mark.slow
def _small_data_root(root: Path) -> Path:
    """The data root's layout with a slice of each real file (a few articles, 300 NQ lines): the same script and
    readers as the GPU run, at a size the CI's CPU reads in seconds."""
    with gzip.open(SHARED_DATA / "squad" / "dev-v1.1.json.gz", "rt", encoding="utf-8") as handle:
        dev = json.load(handle)
    split = json.loads((SHARED_DATA / "squad" / "split.json").read_text())
    with gzip.open(SHARED_DATA / "squad" / "train-v1.1.json.gz", "rt", encoding="utf-8") as handle:
        train = json.load(handle)
    train_titles = {t.replace("_", " ") for t in split["train"][:2]}
    dev["data"] = [a for a in dev["data"] if a["title"].replace("_", " ") in train_titles]
    train["data"] = train["data"][:3]
    (root / "squad").mkdir(parents=True)
    (root / "nq-qed").mkdir()
    for name, content in (("dev-v1.1.json.gz", dev), ("train-v1.1.json.gz", train)):
        with gzip.open(root / "squad" / name, "wt", encoding="utf-8") as handle:
            json.dump(content, handle)
    (root / "squad" / "split.json").write_text(json.dumps({"train": split["train"][:2], "test": split["test"]}))
    with gzip.open(SHARED_DATA / "nq-qed" / "qed-train.jsonl.gz", "rt", encoding="utf-8") as source:
        lines = [next(source) for _ in range(300)]
    with gzip.open(root / "nq-qed" / "qed-train.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(lines)
    return root


def test_prepare_train_restore_on_cpu(tmp_path):
    if not (SHARED_DATA / "squad" / "train-v1.1.json.gz").is_file():
        pytest.skip(f"{SHARED_DATA} is absent: the GPU run's data (squad/, nq-qed/) come from there")
    if not (ROOT / "gear_core" / "training" / "configs" / "gpu.yaml").is_file():
        pytest.skip("no gpu.yaml config")
    synthetic = SYNTHETIC if SYNTHETIC.is_file() else _tiny_synthetic(tmp_path / "wiki_extract.jsonl")
    gpu_dir, run_dir, out = tmp_path / ".gpu", tmp_path / "run", tmp_path / "out"
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "GPU_DIR": str(gpu_dir),
        "RUN_DIR": str(run_dir),
        "GEAR_EXPORT_RESERVE_S": "20",
        "GEAR_VALIDATION_GUESS_S": "20",
        "OMP_NUM_THREADS": "2",
        "GEAR_DATA_ROOT": str(_small_data_root(tmp_path / "data")),
    }
    started = time.monotonic()
    prepare = subprocess.run(
        ["bash", str(SCRIPT), "prepare", "--synthetic", str(synthetic), "--max-triples", "40"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert prepare.returncode == 0, prepare.stdout + prepare.stderr
    assert "total:" in prepare.stdout and "cannot be carried" in prepare.stdout  # GPU_DIR is outside the repo
    wheels = sorted(p.name for p in (gpu_dir / "wheels").iterdir())
    assert len(wheels) == 9 and all(w.endswith("-none-any.whl") or "-cp312-" in w for w in wheels), wheels
    assert any(w.startswith("bm25s-") for w in wheels) and any(w.startswith("PyStemmer-") for w in wheels)
    assert (gpu_dir / "nltk_data" / "tokenizers" / "punkt_tab" / "english" / "ortho_context.tab").is_file()
    kept = _read_gzip_jsonl(gpu_dir / "data" / "synthetic" / "wiki_extract.jsonl.gz")
    assert 0 < len(kept) <= 40 and [t["document_id"] for t in kept] == sorted(t["document_id"] for t in kept)

    gpu_image = tmp_path / "gpu_image"
    gpu_image.mkdir()
    (gpu_image / "sitecustomize.py").write_text(BLOCKER)
    train = subprocess.run(
        ["bash", str(SCRIPT), "train", str(out), *TRAIN_ARGS],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(gpu_image)},
        capture_output=True,
        text=True,
        timeout=400,
    )
    log = train.stdout + train.stderr
    assert train.returncode == 0, log[-6000:]
    assert "examples/s:" in train.stdout

    files = sorted(p.name for p in out.iterdir())
    assert {"manifest.json", "train.log", "metrics.csv", "model.tar.part00"} <= set(files), files
    assert len(files) <= 8 and all((out / f).stat().st_size <= 16 * MIB for f in files)
    assert "examples/s" in (out / "train.log").read_text()
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert any(row.get("val/score") for row in rows)

    model_dir = tmp_path / "model"
    restore = subprocess.run(
        ["bash", str(SCRIPT), "restore", str(out), str(model_dir)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert restore.returncode == 0, restore.stdout + restore.stderr
    import torch
    from safetensors import safe_open

    from gear_core import GeARModel

    shards = sorted(model_dir.glob("*.safetensors"))
    with safe_open(str(shards[0]), "pt") as handle:
        dtypes = {handle.get_tensor(key).dtype for key in handle.keys()}  # noqa: SIM118 (not a dict)
    assert torch.int8 in dtypes and torch.float16 not in dtypes  # int8 matrices (+ float32 scales), as shipped
    model = GeARModel.from_pretrained(str(model_dir))
    assert model.encode_queries(["when was it founded"]).shape[0] == 1
    print(f"gpu_train.sh prepare + train + restore: {time.monotonic() - started:.0f} s")
