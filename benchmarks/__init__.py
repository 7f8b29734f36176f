"""edgeflower's benchmarks: suites that measure the product on full datasets (see benchmarks/README.md).

    python -m benchmarks list                 # the suites, their steps, run times and result files
    python -m benchmarks run export [--dry-run]
    python -m benchmarks.gate measure RUN     # one step on its own

Every step writes one JSON file under benchmarks/results/ with the command that made it; `python -m benchmarks render`
writes the tables of docs/ from those files.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def command(module: str, argv: list[str] | None = None) -> str:
    """The command line that reproduces this run of a step, as recorded in its result file."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join([f"python -m {module}", *args])
