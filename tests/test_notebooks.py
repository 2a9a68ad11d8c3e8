"""The tutorials in notebooks/ run top to bottom (executed with nbclient, as a reader's Jupyter would), and the
committed copies carry outputs and no errors. They need the shipped model, the offline Wikipedia summaries
(`scripts/setup.sh` installs both) and, for 02 and 03, the SQuAD data under the data root."""

from __future__ import annotations

from pathlib import Path

import pytest

from gear_core.data.sources import SQUAD_DEV, data_path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_three_tutorials():
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_train_your_own.ipynb", "03_inside_gear.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_committed_copy_shows_its_outputs(path):
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in cells), "run it before committing: outputs read well on GitHub"
    assert not [o for c in cells for o in c.outputs if o.output_type == "error"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebook_runs(path, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    if path.stem != "01_quickstart" and not data_path(SQUAD_DEV).is_file():
        pytest.skip(f"{path.name} reads the SQuAD data, not found under the data root")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing left behind in the user's cache
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, when one fails
