"""Helpers of ``scripts/gpu_train.sh`` (the GPU run in two steps); standard library only, except the callback.

python3 scripts/gpu_prepare.py synthetic --input F --output F.gz [--max-bytes B] [--max-triples N] [--seed S]
python3 scripts/gpu_prepare.py travel-size [--extra DIR]       bytes that travel to the GPU machine
python3 scripts/gpu_prepare.py pack EXPORT_DIR OUT [--reference DIR] [--throughput F]
python3 scripts/gpu_prepare.py check-out OUT                   the limits on what comes back from $OUT
python3 scripts/gpu_prepare.py restore FILES_AT DEST           a loadable model folder from what came back
python3 scripts/gpu_prepare.py describe synthetic|travel|throughput JSON   one of the above's reports, for people

``gpu_prepare.WallClockBudget`` (a Lightning callback, added by ``gpu_train.sh train`` with
``--trainer.callbacks+=gpu_prepare.WallClockBudget``) stops training early enough that the validation Lightning
runs on a stop, and the export after it, end by ``$GEAR_DEADLINE``; it prints and saves examples/s.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

MIB = 2**20
# What comes back from $OUT (the device tool's limits): files, bytes per file, bytes in all.
OUT_MAX_FILES = 8
OUT_MAX_FILE_BYTES = 16 * MIB
OUT_MAX_TOTAL_BYTES = 64 * MIB
PART_BYTES = 16 * MIB - 64 * 1024  # one piece of the model's tar, a little under the per-file limit
MANIFEST = "manifest.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


# ---- synthetic triples: whole documents, sorted by document id, gzip ------------------------------------


def _documents(path: Path) -> dict[str, list[bytes]]:
    """The JSONL's lines grouped by ``document_id`` (each line kept byte for byte, file order within a group)."""
    groups: dict[str, list[bytes]] = {}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                document_id = str(json.loads(line)["document_id"])
            except (ValueError, KeyError) as error:
                if not line.endswith(b"\n"):  # the last line, still being written by the synthesizer
                    print(f"{path}:{number}: an unfinished last line, left out", file=sys.stderr)
                    break
                raise SystemExit(f"{path}:{number}: not a triple with a document_id ({error})") from error
            groups.setdefault(document_id, []).append(line if line.endswith(b"\n") else line + b"\n")
    return groups


def _write_sorted(groups: dict[str, list[bytes]], chosen: list[str], output: Path) -> int:
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as handle:
        for document_id in sorted(chosen):  # same documents side by side: gzip stores the repeats as back-references
            handle.writelines(groups[document_id])
    return output.stat().st_size


def subsample_synthetic(
    source: Path, output: Path, max_bytes: int | None, max_triples: int | None, seed: int = 0
) -> dict:
    """Whole documents in a seeded random order until the gzip would exceed ``max_bytes`` (or ``max_triples``),
    written sorted by document id. Sizes are estimated per document (raw deflate of its lines, an upper bound
    in practice), then the real file is measured and the budget tightened if it came out larger."""
    groups = _documents(source)
    order = sorted(groups)
    random.Random(seed).shuffle(order)
    estimate = {d: len(zlib.compress(b"".join(groups[d]), 9)) for d in order} if max_bytes is not None else {}
    budget = max_bytes
    for _ in range(8):
        chosen, size, triples = [], 0, 0
        for document_id in order:
            count = len(groups[document_id])
            if max_triples is not None and triples + count > max_triples:
                continue
            if budget is not None and size + estimate[document_id] > budget:
                continue
            chosen.append(document_id)
            size += estimate.get(document_id, 0)
            triples += count
        written = _write_sorted(groups, chosen, output)
        if max_bytes is None or written <= max_bytes:
            break
        budget = int(budget * max_bytes / written * 0.98)
    else:
        raise SystemExit(f"could not fit {source} into {max_bytes} bytes")
    total_triples = sum(len(lines) for lines in groups.values())
    return {
        "source": str(source),
        "output": str(output),
        "documents": len(chosen),
        "documents_in_source": len(groups),
        "triples": triples,
        "triples_in_source": total_triples,
        "bytes": written,
        "max_bytes": max_bytes,
        "seed": seed,
    }


# ---- what travels ---------------------------------------------------------------------------------------


def travel_files(repo: Path) -> dict[str, int]:
    """Tracked files and untracked files git does not ignore, as they are in the working tree now."""
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout.decode()
    sizes = {}
    for name in filter(None, listing.split("\0")):
        path = repo / name
        if path.is_symlink() or path.is_file():
            sizes[name] = path.lstat().st_size
    return sizes


def tree_bytes(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def travel_size(repo: Path, extra: list[Path]) -> dict:
    """Bytes of the working tree that travels plus the carried folders (a carried folder's files are counted once
    even where git would also list them)."""
    sizes = travel_files(repo)
    counted = {str((repo / n).resolve()) for n in sizes}
    carried = {}
    for folder in extra:
        total = 0
        if folder.exists():
            for p in folder.rglob("*"):
                if (p.is_file() or p.is_symlink()) and str(p.resolve()) not in counted:
                    total += p.lstat().st_size
        carried[str(folder)] = total
    tree = sum(sizes.values())
    largest = sorted(sizes.items(), key=lambda item: -item[1])[:5]
    return {
        "tree": tree,
        "files": len(sizes),
        "carried": carried,
        "total": tree + sum(carried.values()),
        "largest": largest,
    }


# ---- what comes back: the export as a split tar, restored here -------------------------------------------


def pack(export_dir: Path, out: Path, reference: Path | None, throughput: Path | None) -> dict:
    """``export_dir`` as ``model.tar.partNN`` pieces under ``out`` plus ``manifest.json``.

    A safetensors shard holding the word embeddings (30522 x 384: 23.4 MB in fp16) can be larger than a file that
    comes back may be, whatever ``--max-shard-size`` says, and one folder of shards would be more files than may
    come back; so the folder travels as an uncompressed tar cut into pieces. Files identical to the file of the
    same name in ``reference`` (the shipped checkpoint: tokenizer.json) are left out and restored from the repo.
    """
    files = sorted(p for p in export_dir.iterdir() if p.is_file())
    if not files:
        raise SystemExit(f"nothing to pack in {export_dir}")
    from_repo, packed = {}, []
    for path in files:
        digest = sha256(path)
        twin = reference / path.name if reference is not None else None
        if twin is not None and path.stat().st_size > 64 * 1024 and twin.is_file() and sha256(twin) == digest:
            from_repo[path.name] = {"sha256": digest, "bytes": path.stat().st_size, "source": str(twin)}
        else:
            packed.append({"name": path.name, "bytes": path.stat().st_size, "sha256": digest})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in packed:
            info = tar.gettarinfo(str(export_dir / entry["name"]), arcname=f"model/{entry['name']}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(export_dir / entry["name"], "rb") as handle:
                tar.addfile(info, handle)
    data = buffer.getvalue()
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for index, start in enumerate(range(0, len(data), PART_BYTES)):
        name = f"model.tar.part{index:02d}"
        chunk = data[start : start + PART_BYTES]
        (out / name).write_bytes(chunk)
        parts.append({"name": name, "bytes": len(chunk), "sha256": hashlib.sha256(chunk).hexdigest()})
    manifest = {
        "format": "the export folder as model/ in a tar, cut into parts; restore: bash scripts/gpu_train.sh restore",
        "tar_sha256": hashlib.sha256(data).hexdigest(),
        "parts": parts,
        "files": packed,
        "from_repo": from_repo,
    }
    if throughput is not None and throughput.is_file():
        manifest["throughput"] = json.loads(throughput.read_text())
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def check_out(out: Path) -> list[str]:
    """Problems with ``out`` against the limits on what comes back (empty when it all comes back)."""
    problems = []
    files = [p for p in out.rglob("*") if not p.is_dir()]
    if len(files) > OUT_MAX_FILES:
        problems.append(f"{len(files)} files under {out}: at most {OUT_MAX_FILES} come back")
    for path in files:
        relative = path.relative_to(out)
        if path.is_symlink() or not path.is_file():
            problems.append(f"{relative}: not a plain file")
        elif path.stat().st_size > OUT_MAX_FILE_BYTES:
            problems.append(f"{relative}: {path.stat().st_size} bytes, over {OUT_MAX_FILE_BYTES}")
        if len(relative.parts) > 3:
            problems.append(f"{relative}: more than 2 folders down")
    total = sum(p.stat().st_size for p in files if p.is_file())
    if total > OUT_MAX_TOTAL_BYTES:
        problems.append(f"{total} bytes under {out}, over {OUT_MAX_TOTAL_BYTES}")
    return problems


def restore(files_at: Path, dest: Path, repo: Path) -> dict:
    """Check each part, join them, unpack ``model/`` into ``dest`` and copy back the files left out."""
    manifest = json.loads((files_at / MANIFEST).read_text())
    digest, chunks = hashlib.sha256(), []
    for part in manifest["parts"]:
        chunk = (files_at / part["name"]).read_bytes()
        if hashlib.sha256(chunk).hexdigest() != part["sha256"]:
            raise SystemExit(f"{part['name']}: checksum mismatch (incomplete transfer?)")
        digest.update(chunk)
        chunks.append(chunk)
    if digest.hexdigest() != manifest["tar_sha256"]:
        raise SystemExit("the joined tar does not match its checksum")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(b"".join(chunks)), mode="r") as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith("model/") or "/" in member.name[6:]:
                raise SystemExit(f"unexpected member {member.name!r} in the tar")
            (dest / member.name[6:]).write_bytes(tar.extractfile(member).read())
    for name, entry in manifest.get("from_repo", {}).items():
        source = Path(entry["source"])
        source = source if source.is_absolute() else repo / source
        if not source.is_file() or sha256(source) != entry["sha256"]:
            raise SystemExit(
                f"{name} was left out as identical to {entry['source']}, but that file is missing or has changed "
                "since: restore it from the commit the run was made from"
            )
        (dest / name).write_bytes(source.read_bytes())
    for entry in manifest["files"]:
        if sha256(dest / entry["name"]) != entry["sha256"]:
            raise SystemExit(f"{entry['name']}: checksum mismatch after unpacking")
    return manifest


# ---- the wall-clock budget of a training run -----------------------------------------------------------


def _callback_class():
    import lightning.pytorch as pl

    class WallClockBudget(pl.Callback):
        """Stops training when the time left before ``$GEAR_DEADLINE`` (Unix seconds) would no longer hold the
        validation Lightning runs on a stop (the longest one seen so far, else ``$GEAR_VALIDATION_GUESS_S``) and
        ``$GEAR_EXPORT_RESERVE_S``. Prints progress every ``$GEAR_PROGRESS_S`` seconds; at the end, examples/s
        of training (validation time excluded) to stdout and to ``$GEAR_THROUGHPUT_JSON``."""

        def __init__(self) -> None:
            self.deadline = float(os.environ.get("GEAR_DEADLINE", "inf"))
            self.export_reserve = float(os.environ.get("GEAR_EXPORT_RESERVE_S", "30"))
            self.validation_guess = float(os.environ.get("GEAR_VALIDATION_GUESS_S", "60"))
            self.progress_every = float(os.environ.get("GEAR_PROGRESS_S", "30"))
            self.output = os.environ.get("GEAR_THROUGHPUT_JSON")
            self.validation_times: list[float] = []
            self.examples = 0
            self.train_start = self.validation_start = self.last_progress = None
            self.stop_reason = None

        def _reserve(self) -> float:
            longest = max(self.validation_times, default=self.validation_guess)
            return 1.25 * longest + self.export_reserve

        def _check(self, trainer) -> None:
            left = self.deadline - time.time()
            if not trainer.should_stop and left < self._reserve():
                trainer.should_stop = True
                self.stop_reason = (
                    f"wall-clock budget: {left:.0f} s left, keeping {self._reserve():.0f} s for the last "
                    "validation and the export"
                )
                print(f"[gpu_train] stopping at step {trainer.global_step}: {self.stop_reason}", flush=True)

        def on_train_start(self, trainer, pl_module) -> None:
            self.train_start = self.last_progress = time.time()
            print(f"[gpu_train] training starts, {self.deadline - time.time():.0f} s before the deadline", flush=True)
            self._check(trainer)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.examples += _batch_size(batch)
            now = time.time()
            if now - self.last_progress >= self.progress_every:
                self.last_progress = now
                rate = self.examples / max(self._training_seconds(now), 1e-9)
                loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
                loss = f", loss {float(loss):.4f}" if loss is not None else ""
                print(
                    f"[gpu_train] step {trainer.global_step}, {self.examples} examples, {rate:.1f} examples/s{loss}, "
                    f"{self.deadline - now:.0f} s left",
                    flush=True,
                )
            self._check(trainer)

        def on_validation_start(self, trainer, pl_module) -> None:
            self.validation_start = time.time()

        def on_validation_end(self, trainer, pl_module) -> None:
            if self.validation_start is not None and not trainer.sanity_checking:
                self.validation_times.append(time.time() - self.validation_start)
                score = trainer.callback_metrics.get("val/score")
                score = f", val/score {float(score):.4f}" if score is not None else ""
                print(f"[gpu_train] validation took {self.validation_times[-1]:.1f} s{score}", flush=True)
            self.validation_start = None

        def _training_seconds(self, now: float) -> float:
            return now - self.train_start - sum(self.validation_times)

        def on_train_end(self, trainer, pl_module) -> None:
            if self.train_start is None:
                return
            seconds = self._training_seconds(time.time())
            stats = {
                "examples": self.examples,
                "steps": trainer.global_step,
                "training_seconds": round(seconds, 2),
                "examples_per_second": round(self.examples / seconds, 2) if seconds > 0 else None,
                "validations": [round(t, 2) for t in self.validation_times],
                "stop_reason": self.stop_reason,
            }
            print(f"[gpu_train] throughput {json.dumps(stats)}", flush=True)
            if self.output:
                Path(self.output).parent.mkdir(parents=True, exist_ok=True)
                Path(self.output).write_text(json.dumps(stats) + "\n")

    return WallClockBudget


def _batch_size(batch) -> int:
    import torch

    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0])
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, list | tuple) else []
    for value in values:
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
    return len(batch) if isinstance(batch, list) else 0


_CLASSES: dict[str, type] = {}


def __getattr__(name: str):  # lightning is imported only when the callback is asked for
    if name == "WallClockBudget":
        if name not in _CLASSES:
            cls = _callback_class()
            cls.__module__, cls.__qualname__ = __name__, name
            _CLASSES[name] = cls
        return _CLASSES[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def describe(kind: str, report: dict, limit_mib: float = 64, margin_mib: float = 2) -> str:
    if kind == "synthetic":
        r = report
        return (
            f"   {r['triples']} of {r['triples_in_source']} triples, {r['documents']} of {r['documents_in_source']} "
            f"documents, {r['bytes'] / MIB:.2f} MiB"
        )
    if kind == "travel":
        r = report
        lines = [f"   working tree (tracked + untracked not ignored): {r['files']} files, {r['tree'] / MIB:.2f} MiB"]
        lines += [f"      {size / MIB:7.2f} MiB  {name}" for name, size in r["largest"]]
        lines += [f"   carried {name}: {size / MIB:.2f} MiB" for name, size in r["carried"].items()]
        lines.append(
            f"   total: {r['total'] / MIB:.2f} MiB of {limit_mib:g} MiB (refused above {limit_mib - margin_mib:g} MiB)"
        )
        return "\n".join(lines)
    if kind == "throughput":
        t = report
        return (
            f"examples/s: {t['examples_per_second']} ({t['examples']} examples, {t['steps']} steps in "
            f"{t['training_seconds']} s of training; validations took {t['validations']} s)"
        )
    raise SystemExit(f"describe: unknown report {kind!r}")


# ---- command line ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_prepare.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("synthetic", help="subsample triples by whole documents into a sorted JSONL.gz")
    s.add_argument("--input", required=True)
    s.add_argument("--output", required=True)
    s.add_argument("--max-bytes", type=int, default=None)
    s.add_argument("--max-triples", type=int, default=None)
    s.add_argument("--seed", type=int, default=0)
    t = commands.add_parser("travel-size", help="bytes of the working tree that travels, plus carried folders")
    t.add_argument("--repo", default=".")
    t.add_argument("--extra", action="append", default=[], help="a carried folder (repeatable)")
    p = commands.add_parser("pack", help="an export folder as tar parts + manifest.json under OUT")
    p.add_argument("export_dir")
    p.add_argument("out")
    p.add_argument("--reference", default=None, help="files identical to this folder's are left out")
    p.add_argument("--throughput", default=None)
    c = commands.add_parser("check-out", help="check OUT against the limits on what comes back")
    c.add_argument("out")
    r = commands.add_parser("restore", help="rebuild the model folder from what came back")
    r.add_argument("files_at")
    r.add_argument("dest")
    r.add_argument("--repo", default=".")
    d = commands.add_parser("describe", help="a report of synthetic, travel-size or the callback, for people")
    d.add_argument("kind", choices=("synthetic", "travel", "throughput"))
    d.add_argument("report", help="the JSON report")
    d.add_argument("--limit-mib", type=float, default=64)
    d.add_argument("--margin-mib", type=float, default=2)
    args = parser.parse_args(argv)

    if args.command == "synthetic":
        report = subsample_synthetic(Path(args.input), Path(args.output), args.max_bytes, args.max_triples, args.seed)
        print(json.dumps(report))
    elif args.command == "travel-size":
        print(json.dumps(travel_size(Path(args.repo), [Path(e) for e in args.extra])))
    elif args.command == "pack":
        reference = Path(args.reference) if args.reference else None
        throughput = Path(args.throughput) if args.throughput else None
        manifest = pack(Path(args.export_dir), Path(args.out), reference, throughput)
        left_out = ", ".join(manifest["from_repo"]) or "nothing"
        print(
            f"packed {len(manifest['files'])} files as {len(manifest['parts'])} parts "
            f"({sum(p['bytes'] for p in manifest['parts']) / MIB:.1f} MiB); left out (restored from the repo): "
            f"{left_out}"
        )
    elif args.command == "check-out":
        problems = check_out(Path(args.out))
        for problem in problems:
            print(f"gpu_train: {problem}", file=sys.stderr)
        return 1 if problems else 0
    elif args.command == "describe":
        print(describe(args.kind, json.loads(args.report), args.limit_mib, args.margin_mib))
    elif args.command == "restore":
        manifest = restore(Path(args.files_at), Path(args.dest), Path(args.repo))
        print(f"restored {len(manifest['files']) + len(manifest.get('from_repo', {}))} files into {args.dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
