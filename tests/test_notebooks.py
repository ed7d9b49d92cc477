"""The front door: the tutorial notebook runs from top to bottom (so it never rots) and is
committed with its outputs (so it reads on a web page); the demo prints no warnings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REGENERATE = "run scripts/run_notebook to save the notebooks with fresh outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs
    )
    assert "Annotated Data of n_obs (# ROIs) × n_vars (# Frames)" in text
    assert "['layers/dFF', 'uns']" in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebook_has_its_outputs(path: Path) -> None:
    notebook = json.loads(path.read_text())
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code
    missing = [i for i, c in enumerate(code) if not c["outputs"] or not c["execution_count"]]
    assert not missing, f"code cells {missing} of {path.name} have no outputs: {REGENERATE}"
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), f"cells run out of order: {REGENERATE}"
    outputs = [o for c in code for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    # nothing that changes between runs or machines: timings, temporary paths, widgets
    assert not [c for c in code if "execution" in c["metadata"]]
    assert "widgets" not in notebook["metadata"]
    text = json.dumps(outputs)
    assert not re.search(r"/tmp/(tmp|pytest|zstore-notebook)", text), "a temporary path"
    assert "application/vnd.jupyter.widget-view+json" not in text
    assert "Warning" not in text, "a warning in the saved outputs"


def test_demo_prints_no_warnings(tmp_path: Path) -> None:
    # Small, as in scripts/demo but in seconds; its synthetic paq files carry extra
    # frame-clock edges on purpose, which the demo explains instead of warning.
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--dir", str(tmp_path),
         "--rois", "40", "--frames", "300", "--trials", "2"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert not [line for line in output.splitlines() if "Warning" in line], output
    assert "note: the synthetic paq files carry extra frame-clock edges on purpose" in output
    assert "t-000.paq has 308 edges for 300 frames" in output
    assert "demo finished" in output
