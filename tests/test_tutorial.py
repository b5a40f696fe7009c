"""The tutorial notebook in docs/ runs from start to end on the built-in example."""

import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


def test_tutorial_notebook_runs(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    started = time.perf_counter()
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    elapsed = time.perf_counter() - started
    text = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.get("outputs", []))
    assert "latent vs true state" in text and "exported" in text and "epochs logged" in text
    assert (tmp_path / "vae" / "z.npy").is_file() and (tmp_path / "high_z.star").is_file()
    print(f"tutorial executed in {elapsed:.1f} s")
