"""The one way a benchmark writes its result: ``OUT.md`` (the report, with the command that made it) and
``OUT.json`` beside it (every figure, for ``run_all.py --render`` and for anyone comparing runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_result(out: str | Path, lines: list[str], data: dict[str, Any]) -> Path:
    """Write ``lines`` to ``out`` with suffix ``.md`` and ``data`` to ``.json`` (a suffix on ``out`` is replaced);
    print the report; return the markdown path."""
    markdown = Path(out).with_suffix(".md")
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")
    markdown.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return markdown
