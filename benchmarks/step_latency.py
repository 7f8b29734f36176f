"""One-thread int8 latency of each training step's artifact against the int8 MobileNetV2 transfer model.

    python benchmarks/step_latency.py --reference runs/bench/mobilenet_v2_aug_ls/export/model_int8.tflite \
        runs/bench/mobilenet_v2_ft/export/model_int8.tflite [more artifacts...] [--rounds 4] [--runs 300]

Each round runs `edgeflower bench`'s worker (a fresh process per artifact, 1 thread, --no-accuracy) over the
reference and every artifact, in alternating order (ABC, CBA, ...) so slow drift of a shared machine spreads
evenly; the result per artifact is the median of its per-round p50s, and the ratio to the reference is taken
round by round (then the median). Writes benchmarks/results/step_latency.json. About a minute per round.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeflower._env import environment  # noqa: E402
from edgeflower._util import write_json  # noqa: E402
from edgeflower.bench import BenchConfig, run_isolated  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", nargs="+")
    ap.add_argument("--reference", required=True, help="the int8 MobileNetV2 transfer model (head only)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--results", default=str(ROOT / "benchmarks/results/step_latency.json"))
    args = ap.parse_args()
    paths = [args.reference] + [a for a in args.artifacts if a != args.reference]
    for p in paths:
        if not Path(p).is_file():
            sys.exit(f"not found: {p}")
    cfg = BenchConfig(artifacts=tuple(paths), threads=(1,), runs=args.runs, warmup=args.warmup, accuracy=False)
    p50: dict[str, list[float]] = {p: [] for p in paths}
    meta: dict[str, dict] = {}
    for r in range(args.rounds):
        order = paths if r % 2 == 0 else paths[::-1]
        for p in order:
            res = run_isolated(p, 1, cfg, with_accuracy=False, data_note=None)
            if "error" in res:
                sys.exit(f"{p}: {res['error']}")
            p50[p].append(res["latency_ms"]["p50"])
            meta[p] = {"size_bytes": res["size_bytes"], "peak_rss_mb": res["peak_rss_mb"],
                       "backend": f"{res['backend']} {res['backend_version']}"}
        print(f"round {r + 1}: " + ", ".join(f"{Path(p).parent.parent.name} {p50[p][-1]:.2f} ms" for p in paths),
              flush=True)
    ref = p50[args.reference]
    out = {"command": "python benchmarks/step_latency.py " + " ".join(sys.argv[1:]), "reference": args.reference,
           "rounds": args.rounds, "runs": args.runs, "artifacts": {}}
    for p in paths:
        ratios = [a / b for a, b in zip(p50[p], ref)]
        out["artifacts"][p] = {**meta[p], "p50_ms_per_round": p50[p], "p50_ms": statistics.median(p50[p]),
                               "ratio_to_reference": statistics.median(ratios)}
        print(f"{p}: p50 {statistics.median(p50[p]):.2f} ms, {statistics.median(ratios):.2f}x the reference")
    out["environment"] = environment()
    out["date"] = time.strftime("%Y-%m-%d")
    write_json(args.results, out)


if __name__ == "__main__":
    main()
