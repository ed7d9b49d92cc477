"""Execute the notebooks and save them with their outputs, so they read on a web page.

Run after an API change that alters what a notebook shows: `scripts/run_notebook`
(every notebook in notebooks/) or `scripts/run_notebook notebooks/tutorial.ipynb`.
tests/test_notebooks.py re-executes every notebook and checks that the committed ones
carry outputs for every code cell.

Each notebook runs in a new kernel in a temporary working directory. What would change
from run to run or machine to machine is left out of the saved file: execution
timestamps, the temporary directory's path (shown as <workdir>), widget state.
Progress bars are off (TQDM_DISABLE=1 in the kernel): their rates and timings differ
on every run.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parent.parent
WORKDIR = "<workdir>"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def run(path: Path, *, timeout: int = 600) -> nbformat.NotebookNode:
    """``path`` executed in a new kernel, its outputs scrubbed of volatile details."""
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="zstore-notebook-") as scratch:
        # The kernel's tempfile.mkdtemp() lands under `scratch`, so its paths can be found.
        scratch = os.path.realpath(scratch)
        env = {**os.environ, "TMPDIR": scratch, "TQDM_DISABLE": "1"}
        client = nbclient.NotebookClient(
            notebook,
            timeout=timeout,
            kernel_name="python3",
            record_timing=False,
            # the kernel's own notices (TCP without encryption) are not the notebook's
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
            resources={"metadata": {"path": scratch}},
        )
        client.execute(env=env)
        scrub(notebook, scratch)
    return notebook


def scrub(notebook: nbformat.NotebookNode, scratch: str) -> None:
    """Remove what differs between runs: temporary paths, timings, widget state."""
    # A mkdtemp() directory under scratch, or scratch itself (the working directory).
    tmp = re.compile(re.escape(scratch) + r"(/tmp[\w-]+)?")
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        outputs = []
        for output in cell.outputs:
            if output.output_type == "stream":
                output.text = _as_terminal_shows(tmp.sub(WORKDIR, output.text))
                if (
                    outputs
                    and outputs[-1].output_type == "stream"
                    and (outputs[-1].name == output.name)
                ):
                    outputs[-1].text += output.text
                    continue
            elif "data" in output:
                output.data.pop(WIDGET_MIME, None)
                for mime, value in output.data.items():
                    if mime.startswith("text/") or mime.endswith("json"):
                        output.data[mime] = _sub(tmp, value)
                if not output.data:
                    continue
            elif output.output_type == "error":
                output.traceback = [tmp.sub(WORKDIR, line) for line in output.traceback]
            outputs.append(output)
        cell.outputs = outputs


def _sub(pattern: re.Pattern[str], value: Any) -> Any:
    if isinstance(value, str):
        return pattern.sub(WORKDIR, value)
    if isinstance(value, list):
        return [_sub(pattern, v) for v in value]
    if isinstance(value, dict):
        return {k: _sub(pattern, v) for k, v in value.items()}
    return value


def _as_terminal_shows(text: str) -> str:
    # A carriage return redraws the line (progress bars): keep what is left on screen.
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.split("\n"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="notebooks to run (default: notebooks/*.ipynb)"
    )
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    for path in paths:
        notebook = run(path)  # a cell that raises stops here, and nothing is written
        nbformat.write(notebook, path)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
