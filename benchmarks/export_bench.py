"""Export benchmark: `edgeflower export --int8` (both formats, both precisions, with the gate) on full-dataset runs.

    python -m benchmarks.export_bench runs/bench/mobilenet_v2_aug runs/bench/cnn_aug [--data DIR]

Each export runs in its own process (`python -m edgeflower export RUN --int8`), timed with perf_counter and its
peak resident memory read from the child's rusage (and sampled every 0.2 s to give the peak of each step the
export reports). Writes benchmarks/results/export.json with every artifact's
accuracy, drop and agreement from the export report. About 2-4 minutes per model on the 2-core dev machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks import RESULTS
from edgeflower.util.env import environment
from edgeflower.util.files import write_json


def _peaks_by_step(phases: list[tuple[float, str]], rss: list[tuple[float, float]]) -> list[dict]:
    """The highest sampled RSS while each reported step ran (until the next step began)."""
    bounds = [(0.0, "start")] + phases
    out = []
    for i, (start, name) in enumerate(bounds):
        end = bounds[i + 1][0] if i + 1 < len(bounds) else float("inf")
        seen = [mb for ts, mb in rss if start <= ts < end]
        out.append({"step": name, "start_s": round(start, 1), "peak_rss_mb": round(max(seen), 1) if seen else None})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--data", default=None)
    ap.add_argument("--results", default=str(RESULTS / "export.json"))
    ap.add_argument("--extra", default="", help="extra export options, e.g. '--auto'")
    args = ap.parse_args()
    path = Path(args.results)
    results = json.loads(path.read_text()) if path.exists() else {"exports": {}}
    for run in args.runs:
        cmd = [sys.executable, "-m", "edgeflower", "export", run, "--int8", *args.extra.split()]
        if args.data:
            cmd += ["--data", args.data]
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        phases: list[tuple[float, str]] = []  # (seconds since start, "... step" line) as the export reports them
        err_lines: list[str] = []
        rss: list[tuple[float, float]] = []  # (seconds, MB) sampled every 0.2 s
        done = threading.Event()

        def read_stderr():  # drain the pipe as it fills (a full pipe would stall the export)
            for line in proc.stderr:
                err_lines.append(line)
                if line.startswith("... "):
                    phases.append((time.perf_counter() - t, line[4:].strip()))

        def sample_rss():
            while not done.wait(0.2):
                try:
                    kb = next(int(ln.split()[1]) for ln in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                              if ln.startswith("VmRSS:"))
                except (OSError, StopIteration, ValueError):
                    continue
                rss.append((time.perf_counter() - t, kb / 1024))

        threads = [threading.Thread(target=read_stderr, daemon=True), threading.Thread(target=sample_rss, daemon=True)]
        for th in threads:
            th.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        done.set()
        for th in threads:
            th.join(timeout=5)
        err = "".join(err_lines)
        code = os.waitstatus_to_exitcode(status)
        report = json.loads((Path(run) / "export" / "export_report.json").read_text())
        name = Path(run).name
        results["exports"][name] = {
            "command": "edgeflower export " + " ".join(cmd[4:]).replace(run, f"runs/bench/{name}"),
            "exit_code": code,
            "wall_seconds": round(wall, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "peak_rss_mb_by_step": _peaks_by_step(phases, rss),
            "keras_test_accuracy": report["keras_test_accuracy"],
            "artifacts": [{k: a[k] for k in ("name", "format", "size_bytes", "accuracy", "drop_pts",
                                              "argmax_agreement", "passed", "reason", "confidence_threshold",
                                              "per_class_delta_pts")} | {"changed": len(a["changed"])}
                          for a in report["artifacts"]],
        }
        results["environment"] = environment()
        results["date"] = time.strftime("%Y-%m-%d")
        write_json(path, results)
        print(f"{name}: exit {code} in {wall:.0f} s, peak {usage.ru_maxrss / 1024:.0f} MB", flush=True)
        if code != 0:
            print(err[-2000:], file=sys.stderr)


if __name__ == "__main__":
    main()
