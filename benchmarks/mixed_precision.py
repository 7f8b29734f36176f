"""What the accuracy-controlled int8 remedy does on a real model: which layers go back to float, what each buys on
validation and costs in one-thread latency, and the result on the test set.

    python benchmarks/mixed_precision.py runs/bench/efficientnet_lite0_make_main [--format onnx_int8]
        [--max-drop 0] [--data DIR]

Runs `edgeflower export RUN --formats FORMAT --mixed-precision --max-drop X` into runs/mixed/NAME (the
budget is tight on purpose when the default int8 model already passes the usual 1-point gate: the point is to see
the search work on a real graph). Appends the result to benchmarks/results/mixed_precision.json. Latencies are
measured inside the search, one thread, 30 runs each, while other jobs may share the cores: read them as ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeflower._env import environment  # noqa: E402
from edgeflower._util import write_json  # noqa: E402
from edgeflower.errors import AccuracyDropError  # noqa: E402
from edgeflower.export.pipeline import ExportConfig, export  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--format", default="tflite_int8", choices=["tflite_int8", "onnx_int8"])
    ap.add_argument("--max-drop", type=float, default=0.0)
    ap.add_argument("--calibration", type=int, default=300,
                    help="calibration images (few make a weaker int8 model: a real graph for the search to work on)")
    ap.add_argument("--dark-calibration", type=float, default=None, metavar="F",
                    help="calibrate on the calibration images scaled to F of their brightness (e.g. 0.15: night "
                         "frames taken as the representative set, a real mistake that breaks full int8)")
    ap.add_argument("--name", default=None, help="the row's name (default: the run's folder name)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--out-root", default="runs/mixed")
    ap.add_argument("--results", default=str(ROOT / "benchmarks/results/mixed_precision.json"))
    args = ap.parse_args()
    name = args.name or Path(args.run).name
    out = Path(args.out_root) / name
    t0 = time.perf_counter()
    cfg = ExportConfig(target=args.run, formats=(args.format,), mixed_precision=True, max_drop=args.max_drop,
                       calibration=args.calibration, data=args.data, out=str(out))
    if args.dark_calibration is not None:
        from edgeflower.export import pipeline

        real = pipeline.stratified_sample
        pipeline.stratified_sample = lambda a, n, seed: (real(a, n, seed) * args.dark_calibration).astype("uint8")
    try:
        rep = export(cfg, progress=lambda m: print("...", m, flush=True))
    except AccuracyDropError as exc:
        rep = exc.report
    a = rep["artifacts"][0]
    opts = a["options"]
    row = {
        "command": f"edgeflower export {args.run} --formats {args.format} --mixed-precision "
                   f"--max-drop {args.max_drop:g} "
                   f"--calibration {args.calibration}",
        "benchmark_command": "python benchmarks/mixed_precision.py " + " ".join(sys.argv[1:]),
        "format": args.format,
        "dark_calibration": args.dark_calibration,
        "keras_test_accuracy": rep["keras_test_accuracy"],
        "attempts": a["attempts"],
        "final": {"remedy": opts.get("remedy"), "test_accuracy": a["accuracy"], "drop_pts": a["drop_pts"],
                  "passed": a["passed"], "float_nodes": opts.get("float_nodes", []),
                  "unknown_test": (a.get("unknown") or {}).get("test")},
        "steps": opts.get("steps", []),
        "ranking_top10": opts.get("ranking", []),
        "seconds": time.perf_counter() - t0,
    }
    p = Path(args.results)
    results = json.loads(p.read_text()) if p.exists() else {"runs": {}}
    results["runs"][name] = row
    results["environment"] = environment()
    results["date"] = time.strftime("%Y-%m-%d")
    write_json(p, results)
    print(json.dumps({k: row[k] for k in ("final", "seconds")}, indent=1))


if __name__ == "__main__":
    main()
