"""The benchmarks' one entry point.

    python -m benchmarks list                              # suites, steps, run times, result files
    python -m benchmarks run SUITE [--run RUN] [--dry-run]  # training | export | device | unknown | all
    python -m benchmarks render [--check]                  # the tables of README.md and docs/ from the results

RUN is an exported run folder (default runs/main/train, the one `make main` writes). Each step is
`python -m benchmarks.<module> ...` in its own process; a step can also be run on its own with other arguments (see
its --help). A suite stops at the first step that fails and says which.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass

from benchmarks import ROOT


@dataclass(frozen=True)
class Step:
    name: str
    args: tuple[str, ...]  # module and arguments; {run} is the run folder
    minutes: str  # run time on the 2-core development machine
    writes: str  # the result file(s) under benchmarks/results/
    needs: str = ""  # what must exist first, beyond the run

    def argv(self, run: str) -> list[str]:
        return [sys.executable, "-m", *(a.format(run=run) for a in self.args)]


INT8 = "{run}/export/model_int8.tflite"
SUITES: dict[str, tuple[str, list[Step]]] = {
    "training": ("the study's models trained on the full dataset; training memory", [
        Step("study", ("benchmarks.study",), "60-240", "study.json"),
        Step("memory", ("benchmarks.memory",), "25", "memory.json"),
    ]),
    "export": ("export time and memory; the gate's error rates; other clients; backbones; the AI Camera", [
        Step("export", ("benchmarks.export_bench", "{run}"), "4", "export.json"),
        Step("gate", ("benchmarks.gate", "measure", "{run}"), "10", "gate.json"),
        Step("clients", ("benchmarks.clients", "{run}"), "5", "clients.json", "mediapipe (pip install mediapipe)"),
        Step("backbones", ("benchmarks.backbones", "--reference", "{run}", "{run}"), "15", "backbones.json"),
        Step("imx500", ("benchmarks.imx500", "{run}"), "15", "imx500.json",
             "the IMX500 side environment (made on first use) and Java 17"),
    ]),
    "device": ("the edge runtime: latency targets, sinks, long runs", [
        Step("edge", ("benchmarks.edge_bench", "{run}/export"), "4", "edge.json"),
        Step("sinks", ("benchmarks.sinks", INT8), "5", "sinks.json", "mosquitto (apt install mosquitto)"),
        Step("soak-loop", ("benchmarks.soak", "loop"), "5", "soak_loop.json"),
        Step("soak-classify", ("benchmarks.soak", "classify", INT8), "30", "soak_classify.json"),
        Step("soak-stills", ("benchmarks.soak", "stills"), "1", "soak_stills.json"),
    ]),
    "unknown": ("the `unknown` answer on photos of kinds the run never saw", [
        Step("outliers", ("benchmarks.outliers", INT8, "{run}/export/model_float.tflite",
                          "{run}/export/model_int8.onnx"), "2", "outliers.json",
             "the outlier set (../shared/data/outliers, $EDGEFLOWER_OUTLIERS or the cache)"),
    ]),
}


def _list() -> None:
    for suite, (what, steps) in SUITES.items():
        print(f"{suite}: {what}")
        for s in steps:
            needs = f"; needs {s.needs}" if s.needs else ""
            print(f"  {s.name:<14} {s.minutes:>6} min  -> {s.writes}{needs}")
            print(f"  {'':<14} python -m {' '.join(s.args)}")


def run_suite(names: list[str], run: str, dry_run: bool) -> int:
    steps = [(n, s) for n in names for s in SUITES[n][1]]
    uses_run = any("{run}" in a for _, s in steps for a in s.args)
    if uses_run and not dry_run and not (ROOT / run / "export" / "model_int8.tflite").is_file():
            print(f"benchmarks: {run} has no export/model_int8.tflite: run `make main` (or `edgeflower train` and "
                  f"`edgeflower export RUN --int8`) first, or pass --run", file=sys.stderr)
            return 2
    for i, (suite, s) in enumerate(steps, 1):
        argv = s.argv(run)
        print(f"[{i}/{len(steps)}] {suite}/{s.name} (about {s.minutes} min): python -m {' '.join(argv[2:])}",
              flush=True)
        if dry_run:
            continue
        t = time.monotonic()
        rc = subprocess.call(argv, cwd=ROOT)
        if rc != 0:
            print(f"benchmarks: {suite}/{s.name} failed (exit {rc}); the steps before it wrote their results",
                  file=sys.stderr)
            return rc
        print(f"[{i}/{len(steps)}] {suite}/{s.name} done in {(time.monotonic() - t) / 60:.1f} min", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the suites and their steps")
    r = sub.add_parser("run", help="run one suite, or all")
    r.add_argument("suite", choices=[*SUITES, "all"])
    r.add_argument("--run", default="runs/main/train", help="an exported run folder (default: make main's)")
    r.add_argument("--dry-run", action="store_true", help="print the steps without running them")
    sub.add_parser("render", help="write the result tables of README.md and docs/ (--check: only compare)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["render"]:  # its own options (--check, --results, --root)
        from benchmarks import render

        return render.main(argv[1:]) or 0
    args = ap.parse_args(argv)
    if args.cmd == "list":
        _list()
        return 0
    return run_suite(list(SUITES) if args.suite == "all" else [args.suite], args.run, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
