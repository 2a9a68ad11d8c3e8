"""The README's results table and docs/results.md are the committed JSON's figures (benchmarks/run_all.py renders
them), and every relative link in the README and docs/ leads to a file that exists."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import run_all  # noqa: E402


def test_the_readme_table_and_the_results_page_render_the_committed_json():
    manifest = json.loads(run_all.MANIFEST.read_text(encoding="utf-8"))
    readme = run_all.README.read_text(encoding="utf-8")
    assert run_all.readme_with_table(readme, run_all.results_table(manifest)) == readme, (
        "README.md's results table is not what the JSON says: python benchmarks/run_all.py --render"
    )
    assert run_all.RESULTS_PAGE.read_text(encoding="utf-8") == run_all.results_page(manifest)


def test_the_table_reads_the_figures_where_the_manifest_points(tmp_path, monkeypatch):
    source = json.loads((run_all.RESULTS / json.loads(run_all.MANIFEST.read_text())["local"]).read_text())
    source["local_retrieval"]["BM25 (sentences)"]["R@1"] = 0.123456
    (tmp_path / "changed.json").write_text(json.dumps(source))
    for name in set(json.loads(run_all.MANIFEST.read_text()).values()):
        if not (tmp_path / name).exists():
            (tmp_path / name).write_text((run_all.RESULTS / name).read_text())
    monkeypatch.setattr(run_all, "RESULTS", tmp_path)
    manifest = json.loads(run_all.MANIFEST.read_text()) | {"local": "changed.json"}
    bm25_row = next(line for line in run_all.results_table(manifest).splitlines() if line.startswith("| BM25 |"))
    assert bm25_row.split(" | ")[4] == "0.123"


@pytest.mark.parametrize(
    "page",
    [
        "README.md",
        "gear_core/checkpoints/gear-minilm/README.md",
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
    ],
)
def test_every_relative_link_leads_to_a_file(page):
    path = ROOT / page
    links = re.findall(r"\]\(([^)\s]+)\)", path.read_text(encoding="utf-8"))
    missing = [
        link
        for link in links
        if not link.startswith(("http://", "https://", "#", "mailto:"))
        and not (path.parent / link.split("#", 1)[0]).exists()
    ]
    assert not missing, f"{page} links to files that do not exist: {missing}"
