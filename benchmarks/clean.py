"""Data cleaning: what `edgeflower data clean` finds, and what excluding it from training does to test accuracy.

    python -m benchmarks.clean [--data DIR] [--report runs/clean/clean_report.json] [--train]

Without --report, runs `edgeflower data clean` (about 2.5 minutes). With --train, also trains the
mobilenet_v2_aug_ls recipe with `--exclude exclude.txt` (about 9 minutes) and compares with the same recipe's
entry in benchmarks/results/study.json; the frozen test set is never excluded. Writes benchmarks/results/clean.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks import RESULTS
from edgeflower._env import environment
from edgeflower._util import write_json


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--report", default=None)
    ap.add_argument("--out", default="runs/clean")
    ap.add_argument("--train", action="store_true")
    args = ap.parse_args()
    if args.report:
        rep = json.loads(Path(args.report).read_text())
    else:
        from edgeflower.clean import CleanConfig, clean

        rep = clean(CleanConfig(data=args.data, out=args.out))
    res = {
        "command": "edgeflower data clean --out " + args.out,
        "identical_duplicate_groups": len(rep["identical_duplicates"]),
        "near_duplicate_pairs": len(rep["near_duplicates"]),
        "cross_class": rep["cross_class_duplicates"],
        "flagged_counts": rep["flagged_counts"],
        "flagged_in_test": sum(f["split"] == "test" for f in rep["flagged"]),
        "excluded_from_training": len(rep["exclude"]),
        "out_of_fold_accuracy": rep["out_of_fold_accuracy"],
        "environment": environment(), "date": time.strftime("%Y-%m-%d"),
    }
    path = RESULTS / "clean.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    if "training" in old:
        res["training"] = old["training"]
    if args.train:
        from edgeflower.train.loop import TrainConfig, train

        exclude = Path(args.out) / "exclude.txt"
        r = train(TrainConfig(model="mobilenet_v2", augment=True, label_smoothing=0.1, epochs=40, data=args.data,
                              exclude=str(exclude), out="runs/bench/mobilenet_v2_aug_ls_clean", force=True))
        base = json.loads((RESULTS / "study.json").read_text())["runs"]["mobilenet_v2_aug_ls"]
        res["training"] = {
            "command": f"edgeflower train --model mobilenet_v2 --augment --label-smoothing 0.1 --epochs 40 "
                       f"--exclude {exclude}",
            "test_accuracy": r.metrics["test"]["accuracy"], "baseline_test_accuracy": base["test_accuracy"],
            "val_accuracy": r.metrics["val"]["accuracy"], "baseline_val_accuracy": base["val_accuracy"],
            "train_images": r.config["counts"]["train"],
        }
    write_json(path, res)
    print({k: v for k, v in res.items() if k != "environment"})


if __name__ == "__main__":
    main()
