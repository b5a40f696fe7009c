"""The tutorial notebook in docs/ runs from start to end on the built-in example."""

import re
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
    assert re.search(r"explorer: 2\d\d particles at the top of z1, their mean map \(32, 32, 32\)", text)
    frames = [o for o in notebook.cells[-1].outputs if o.get("output_type") == "execute_result"]
    assert frames and "<iframe" in frames[0]["data"]["text/html"]
    assert (tmp_path / "vae" / "z.npy").is_file() and (tmp_path / "high_z.star").is_file()
    print(f"tutorial executed in {elapsed:.1f} s")
