"""Writes requirements-constraints.txt: the exact version of every package `gear-llamaindex[dev]` installs, as
installed here. scripts/setup.sh (and so CI) installs under it, so a fresh venv gets what CI tested; run this after
an upgrade that passed the suite, and commit the file.

    python scripts/update_constraints.py
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
HEADER = """\
# Every package `pip install -e ".[dev]"` installs, pinned to the versions the suite last passed with
# (written by scripts/update_constraints.py; scripts/setup.sh and CI install under it). torch is the CPU build.
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(name: str, extras: set[str]) -> dict[str, str]:
    """Installed versions of ``name`` (with ``extras``) and everything it requires, recursively."""
    pinned: dict[str, str] = {}
    todo = [(name, frozenset(extras))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        package, wanted = todo.pop()
        if (canonical(package), wanted) in seen:
            continue
        seen.add((canonical(package), wanted))
        distribution = metadata.distribution(package)
        pinned[canonical(distribution.metadata["Name"])] = distribution.version
        for line in distribution.requires or []:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in wanted] or [{"extra": ""}]
            if requirement.marker and not any(requirement.marker.evaluate(e) for e in environments):
                continue
            todo.append((requirement.name, frozenset(requirement.extras)))
    return pinned


def main() -> None:
    pinned = closure("gear-llamaindex", {"dev", "train", "eval", "notebooks"})
    pinned.pop("gear-llamaindex")
    lines = [f"{name}=={version.split('+')[0]}" for name, version in sorted(pinned.items())]
    (ROOT / "requirements-constraints.txt").write_text(HEADER + "\n".join(lines) + "\n")
    print(f"pinned {len(lines)} packages")


if __name__ == "__main__":
    main()
