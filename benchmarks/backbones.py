"""Per-backbone comparison: accuracy (Keras, float TFLite, int8 TFLite), int8 latency at 1 and 2 threads, size and
train time of exported runs, with latency measured in one run against a reference.

    python -m benchmarks.backbones --reference runs/main/train runs/bench/efficientnet_lite0_aug_ls \
        runs/bench/efficientnet_lite0_ft_all_cos [more run dirs...] [--rounds 4] [--runs 300]

Every RUN must have been exported (`edgeflower export RUN --int8`). Latency: each round runs `edgeflower bench`'s
worker (a fresh process per artifact, --no-accuracy) over the reference and every run's `model_int8.tflite`, at
each thread count, in alternating order (ABC, CBA, ...) so slow drift of a shared machine spreads evenly; a run's
p50 is the median of its per-round p50s and its ratio the median of per-round ratios to the reference. Runs of the
same backbone at the same input size share one latency measurement (the graph is the same; only the weights
differ). Writes benchmarks/results/backbones.json. ``--add RUN`` appends another seed of a graph already timed, with
that row's latency, without timing anything.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from benchmarks import RESULTS
from benchmarks.study import command
from edgeflower.benchmarking import BenchConfig, run_isolated
from edgeflower.util import timing
from edgeflower.util.env import environment
from edgeflower.util.files import write_json


def describe(run: Path) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    rep = json.loads((run / "export" / "export_report.json").read_text())
    arts = {a["name"]: a for a in rep["artifacts"]}
    return {
        "run": str(run), "command": command(cfg), "model": cfg["model"], "input_size": cfg["input_size"],
        "seed": cfg["seed"],
        "fine_tuned": bool(cfg.get("fine_tune")), "fine_tune_layers": cfg.get("fine_tune", 0),
        "train_seconds": cfg["train_seconds"], "val_accuracy": metrics["val"]["accuracy"],
        "keras_test_accuracy": metrics["test"]["accuracy"], "params": metrics["params"]["total"],
        "float_tflite_accuracy": arts["model_float.tflite"]["accuracy"],
        "int8_tflite_accuracy": arts["model_int8.tflite"]["accuracy"],
        "int8_onnx_accuracy": arts.get("model_int8.onnx", {}).get("accuracy"),
        "int8_tflite_bytes": arts["model_int8.tflite"]["size_bytes"],
        "float_tflite_bytes": arts["model_float.tflite"]["size_bytes"],
        "export_passed": rep["passed"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--reference", help="the head-only MobileNetV2 run (make main's); not with --add")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs-per-round", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--results", default=str(RESULTS / "backbones.json"))
    ap.add_argument("--note", default=None, help="what else ran on the machine meanwhile (shown with the table)")
    ap.add_argument("--add", action="store_true",
                    help="append RUNS to the existing results without timing anything: each must share its backbone "
                         "and input size (so its graph and latency) with a row already measured, e.g. another seed")
    args = ap.parse_args()
    if args.add:
        return add_rows([Path(r) for r in args.runs], Path(args.results))
    if not args.reference:
        ap.error("--reference is required (except with --add)")
    runs = [Path(args.reference)] + [Path(r) for r in args.runs if Path(r) != Path(args.reference)]
    for r in runs:
        if not (r / "export" / "model_int8.tflite").is_file():
            sys.exit(f"{r}: no export/model_int8.tflite: run `edgeflower export {r} --int8` first")
    rows = [describe(r) for r in runs]
    # one artifact per (backbone, input size): the graph, hence the latency, is the same for every run of it
    timed: dict[tuple, Path] = {}
    for r, row in zip(runs, rows):
        timed.setdefault((row["model"], row["input_size"]), r / "export" / "model_int8.tflite")
    paths = list(timed.values())
    threads = [int(t) for t in args.threads.split(",")]
    cfg = BenchConfig(artifacts=tuple(map(str, paths)), threads=tuple(threads), runs=args.runs_per_round,
                      warmup=args.warmup, accuracy=False)
    def one(p: Path, t: int):
        def measure() -> float:
            res = run_isolated(str(p), t, cfg, with_accuracy=False, data_note=None)
            if "error" in res:
                sys.exit(f"{p}: {res['error']}")
            return res["latency_ms"]["p50"]
        return measure

    def say(k, v):
        print(f"round {k + 1}/{args.rounds}: " + ", ".join(
            f"{p.parent.parent.name} {v[(p, 1)][-1]:.2f} ms" for p in paths if (p, 1) in v), flush=True)

    # alternating rounds (ABC, CBA, ...), figures as medians and ratios as the median of per-round ratios
    p50 = timing.interleaved({(p, t): one(p, t) for p in paths for t in threads}, args.rounds, after_round=say)
    ref = paths[0]
    for row in rows:
        p = timed[(row["model"], row["input_size"])]
        row["latency_artifact"] = str(p)
        row["int8_p50_ms"] = {str(t): statistics.median(p50[(p, t)]) for t in threads}
        row["int8_p50_ratio_to_reference"] = {str(t): timing.median_ratio(p50[(p, t)], p50[(ref, t)]) for t in threads}
        print(f"{row['run']}: int8 TFLite {row['int8_tflite_accuracy'] * 100:.2f}%, p50 "
              + ", ".join(f"{t} thr {row['int8_p50_ms'][str(t)]:.2f} ms "
                          f"({row['int8_p50_ratio_to_reference'][str(t)]:.2f}x)" for t in threads))
    out = {"command": "python -m benchmarks.backbones " + " ".join(sys.argv[1:]), "reference": str(runs[0]),
           "rounds": args.rounds, "runs_per_round": args.runs_per_round, "rows": rows,
           "environment": environment(), "date": time.strftime("%Y-%m-%d")}
    if args.note:
        out["note"] = args.note
    write_json(args.results, out)


def add_rows(runs: list[Path], results: Path) -> None:
    """Rows for more runs of graphs already timed (another seed): accuracies from each run, latency from the row
    of the same backbone and input size. The command that added them is recorded with the results."""
    d = json.loads(results.read_text())
    by_graph = {(r["model"], r["input_size"]): r for r in d["rows"]}
    for run in runs:
        if not (run / "export" / "model_int8.tflite").is_file():
            sys.exit(f"{run}: no export/model_int8.tflite: run `edgeflower export {run} --int8` first")
        row = describe(run)
        same = by_graph.get((row["model"], row["input_size"]))
        if same is None:
            sys.exit(f"{run}: no row of {row['model']} at {row['input_size']} px was timed: measure it without --add")
        for k in ("latency_artifact", "int8_p50_ms", "int8_p50_ratio_to_reference"):
            row[k] = same[k]
        d["rows"] = [r for r in d["rows"] if r["run"] != row["run"]] + [row]
        print(f"{row['run']}: int8 TFLite {row['int8_tflite_accuracy'] * 100:.2f}% (latency of {same['run']})")
    d.setdefault("added", []).append("python -m benchmarks.backbones " + " ".join(sys.argv[1:]))
    write_json(results, d)


if __name__ == "__main__":
    main()
