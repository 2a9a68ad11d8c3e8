"""The paper's tables for one checkpoint, written beside this script: a thin wrapper over ``gear eval``.

    python benchmarks/paper_tables.py MODEL --name NAME [any other `gear eval` option]

writes ``benchmarks/results/paper_tables_NAME.md`` (the tables) and ``.json`` (every figure). Global retrieval
(SQuAD corpus and SQuAD + wiki-vital distractors), local retrieval, generation and cost, GeAR and baselines on
the SQuAD ``test`` articles in one run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gear_core.cli import main as gear

RESULTS = Path(__file__).parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--name", required=True, help="results file suffix, e.g. minilm-cpu")
    args, rest = parser.parse_known_args()
    out = RESULTS / f"paper_tables_{args.name}"
    return gear(["eval", args.model, "--out", f"{out}.md", "--json", f"{out}.json", *rest])


if __name__ == "__main__":
    sys.exit(main())
