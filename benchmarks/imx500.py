"""The Raspberry Pi AI Camera (IMX500) export of a run: time, chip memory, simulated accuracy, and `unknown`.

    python -m benchmarks.imx500 RUN [--no-unknown] [--debs DIR]

1. `edgeflower export RUN --formats imx500 --out RUN/imx500` in its own process: wall time, peak memory, the
   gate's line, the converter's memory report, the simulated test accuracy against Keras and against the run's
   int8 TFLite (RUN/export must hold `export --int8`'s artifacts).
2. `unknown` on photos without the run's classes (benchmarks/unknown.py's sets, with the Debian wallpapers and the
   education packages): the share answered `unknown` by the AI Camera's rule (the similarity computed on the Pi from
   the simulated sensor's features, with the threshold in network.rpk.json) against the int8 TFLite's rule. The
   simulation re-quantizes the network with the export's calibration photos, so it is the same quantized network.

MCT's simulation runs on this machine; it is not bit-exact with the chip. Writes benchmarks/results/imx500.json.
About 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import RESULTS, command
from edgeflower.util.env import environment
from edgeflower.util.files import write_json


def export(run: Path, out: Path) -> dict:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgeflower", "export", str(run), "--formats", "imx500", "--out",
                           str(out)], capture_output=True, text=True)
    import resource

    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the export and its side process
    print(proc.stdout[-3000:] + proc.stderr[-3000:], flush=True)
    if proc.returncode != 0:
        sys.exit(f"export --formats imx500 failed (exit {proc.returncode})")
    report = json.loads((out / "export_report.json").read_text())
    art = report["artifacts"][0]
    return {"seconds": round(time.perf_counter() - t, 1), "peak_rss_mb_largest_process": round(peak_mb, 1),
            "keras_test_accuracy": report["keras_test_accuracy"], "simulated_test_accuracy": art["accuracy"],
            "test_drop_pts": art["drop_pts"], "gate": art["gate"], "passed": art["passed"],
            "memory": json.loads((out / "imx500" / "network.rpk.json").read_text())["imx500_memory"],
            "steps": {k: v for k, v in art["options"].items() if k.endswith("_s")}, "unknown": art["unknown"]}


def rejection(run: Path, out: Path, debs: str | None) -> dict:
    """Share of the non-flower photos answered unknown: the AI Camera's rule against the int8 TFLite's."""
    from benchmarks.unknown import NEAR_SETS, non_flower_sets
    from edgeflower.data.arrays import load_split
    from edgeflower.data.source import resolve_data_dir
    from edgeflower.data.split import load_manifest
    from edgeflower.edge.classifier import UNKNOWN, Classifier, select_similarity
    from edgeflower.edge.preprocess import preprocess, resize_of
    from edgeflower.exporting import imx500, ood
    from edgeflower.exporting.pipeline import stratified_sample
    from edgeflower.keras_io import load_keras_model

    meta = json.loads((out / "imx500" / "network.rpk.json").read_text())
    sets = {k: v for k, v in non_flower_sets(wallpapers=True, debs=debs, edu=True).items()}
    model = load_keras_model(run / "model.keras")
    size = int(model.inputs[0].shape[1])
    cfg = json.loads((run / "config.json").read_text())
    resize = resize_of(cfg)
    photos = {k: np.stack([preprocess(o["path"], size, resize) for o in v]) for k, v in sets.items()}
    train = load_split(resolve_data_dir(cfg.get("data_dir")), load_manifest(cfg.get("split")), "train", size,
                       resize=resize)
    calib = stratified_sample(train, meta["quantization_options"]["calibration_images"], 0)
    with tempfile.TemporaryDirectory() as tmp:
        res = imx500.run_worker(model, ood.feature_layer(model).name, calib, photos, Path(tmp), convert=False,
                                say=print)
    z = np.load(out / "imx500" / "bank.npz")
    labels = z["labels"] if len(z["labels"]) else None
    u = meta["unknown"]
    tfl = Classifier(run / "export" / "model_int8.tflite")
    rows = {}
    for name, x in photos.items():
        probs, feats = res.quantized[name]
        sims = select_similarity(probs, imx500.similarity(feats, z["bank"], labels, u["neighbours"]))
        cam = sims < u["similarity_threshold"]
        int8 = np.array([tfl.classify(p).label == UNKNOWN for p in x])
        rows[name] = {"photos": len(x), "imx500_unknown": float(cam.mean()), "int8_tflite_unknown": float(int8.mean()),
                      "near": name in NEAR_SETS}
        print(f"{name}: {len(x)} photos, unknown: AI Camera {cam.mean() * 100:.1f}%, int8 TFLite "
              f"{int8.mean() * 100:.1f}%", flush=True)
    pooled = [k for k in rows if not rows[k]["near"]]
    n = sum(rows[k]["photos"] for k in pooled)
    for key in ("imx500_unknown", "int8_tflite_unknown"):
        rows.setdefault("all_non_flower", {"photos": n, "near": False})[key] = sum(
            rows[k][key] * rows[k]["photos"] for k in pooled) / n
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--no-unknown", action="store_true", help="skip the rejection measurement")
    ap.add_argument("--debs", default=None, help="a folder with the Debian packages (else downloaded)")
    ap.add_argument("--results", default=str(RESULTS / "imx500.json"))
    args = ap.parse_args()
    int8 = json.loads((args.run / "export" / "export_report.json").read_text())
    tfl = next(a for a in int8["artifacts"] if a["name"] == "model_int8.tflite")
    out = args.run / "imx500"
    res = {"command": command("benchmarks.imx500"), "run": str(args.run), "export": export(args.run, out),
           "int8_tflite_test_accuracy": tfl["accuracy"]}
    if not args.no_unknown:
        res["unknown"] = rejection(args.run, out, args.debs)
    res["environment"] = environment()
    res["date"] = time.strftime("%Y-%m-%d")
    write_json(args.results, res)
    e = res["export"]
    print(f"imx500: {e['seconds']:.0f} s, {e['memory']['memory_used_mb']:.2f} of {e['memory']['chip_mb']:g} MB; "
          f"simulated test {e['simulated_test_accuracy'] * 100:.2f}% (Keras {e['keras_test_accuracy'] * 100:.2f}%, "
          f"int8 TFLite {res['int8_tflite_test_accuracy'] * 100:.2f}%)")


if __name__ == "__main__":
    main()
