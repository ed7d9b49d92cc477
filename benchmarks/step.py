"""Run ONE step in this process: ``python -m benchmarks.step NAME DIR SIZE``.

Prints ``RESULT {json}``: the step's dict, plus this process's peak RSS (``peak_mb``)
and the files ``zstore`` and ``benchmarks`` were imported from (``zstore_file``,
``benchmarks_file``), so that the orchestrator can check that a run with another zstore
checkout on ``PYTHONPATH`` imported that checkout's zstore and this repository's steps.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from .run import SIZES
from .steps import STEPS


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM), in MB.

    Not ``resource.getrusage().ru_maxrss``: after fork+exec it would start at the parent's
    RSS, so a small step would report the orchestrator's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(name: str, d: Path, size: str) -> dict[str, Any]:
    """Step ``name`` on the scratch folder ``d`` at ``size``, with its peak RSS and imports."""
    n_rois, n_frames, n_trials = SIZES[size]
    result = STEPS[name](d, n_rois, n_frames, n_trials)
    result["peak_mb"] = peak_mb()
    for module in ("zstore", "benchmarks"):
        if module in sys.modules:
            result[f"{module}_file"] = sys.modules[module].__file__
    return result


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in STEPS or args[2] not in SIZES:
        sys.exit(
            "usage: python -m benchmarks.step NAME DIR SIZE\n"
            f"  NAME: one of {', '.join(STEPS)}\n  SIZE: one of {', '.join(SIZES)}"
        )
    name, d, size = args
    print("RESULT " + json.dumps(run(name, Path(d), size)), flush=True)


if __name__ == "__main__":
    main()
