"""What keeping int8 layers in float buys for the `unknown` score (the similarity output), on a real model.

    python benchmarks/mixed_unknown.py runs/bench/efficientnet_lite0_make_main [--float-layers 0,2,4,8,16]

The int8 similarity differs from the float one by about 0.02 (standard deviation on the validation photos), as
wide as the gap between flowers and non-flower photos at the threshold. This ranks the layers of the int8 TFLite
model by how much quantizing each alone (all others float) moves the similarity on 64 validation photos, against
the Keras model, with the export's own calibration (300 training images, the same seed) and re-quantization
(`edgeflower.export.mixed.Calibrated`). Then, for each count K, the K worst layers stay float and the artifact is
measured through the device runtime:
- the similarity's error against float on the 736 validation photos (standard deviation and mean absolute);
- the threshold calibrated on validation as export does (0.5-point budget), the non-flower photos rejected
  (benchmarks/unknown.py's development and held-out sets, with the wallpaper photos) and the test points lost;
- one-thread p50 latency.
Writes benchmarks/results/mixed_unknown.json. About 15 minutes for EfficientNet-Lite0 on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from edgeflower._env import environment  # noqa: E402
from edgeflower._util import write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--float-layers", default="0,1,2,4,8,16")
    ap.add_argument("--rank-images", type=int, default=64)
    ap.add_argument("--data", default=None)
    ap.add_argument("--debs", default=None, help="a folder with the wallpaper .deb files (benchmarks/negatives.py)")
    ap.add_argument("--results", default=str(ROOT / "benchmarks/results/mixed_unknown.json"))
    args = ap.parse_args()
    import keras
    import negatives
    import unknown

    from edgeflower.data.arrays import load_split
    from edgeflower.data.source import resolve_data_dir
    from edgeflower.data.split import load_manifest
    from edgeflower.edge import Classifier
    from edgeflower.edge.preprocess import preprocess
    from edgeflower.export import ood
    from edgeflower.export.mixed import Calibrated, MixedPrecisionOptions, _p50_ms, layer_name
    from edgeflower.export.pipeline import ExportConfig, stratified_sample
    from edgeflower.metrics import calibrate_scores

    t0 = time.perf_counter()
    model = keras.models.load_model(args.run / "model.keras", compile=False)
    size = int(model.inputs[0].shape[1])
    root, man = resolve_data_dir(args.data, download=False), load_manifest()
    train, val, test = (load_split(root, man, s, size) for s in ("train", "val", "test"))
    cfg = ExportConfig(target=str(args.run))
    two = ood.with_similarity(model, ood.compute_bank(model, train.x), ood.DEFAULT_NEIGHBOURS)

    def keras_out(x):
        outs = [two.predict_on_batch(x[i:i + 32].astype("float32")) for i in range(0, len(x), 32)]
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])[:, 0]

    float_val = keras_out(val.x)
    ref_val = float_val[1]
    dev = unknown.dev_images() + negatives.images("development", debs=args.debs)
    negs = dev + unknown.heldout_images() + negatives.images("held_out", debs=args.debs)
    neg_x = np.stack([preprocess(o["path"], size) for o in negs])
    dev_n = len(dev)

    def figures(val_out, test_out, neg_sims) -> dict:
        """The unknown rule as export sets it (threshold from val), on the test flowers and the non-flower photos."""
        (pv, sv), (pt, st) = val_out, test_out
        cv, ct = pv.argmax(1) == val.y, pt.argmax(1) == test.y
        thr = calibrate_scores(cv, sv, cfg.unknown_budget_pts / 100)["threshold"]
        return {"val_accuracy": float(cv.mean()), "test_accuracy": float(ct.mean()), "threshold": thr,
                "non_flower_rejected": float((neg_sims < thr).mean()),
                "development_rejected": float((neg_sims[:dev_n] < thr).mean()),
                "held_out_rejected": float((neg_sims[dev_n:] < thr).mean()),
                "test_drop_pts": float((ct.mean() - (ct & (st >= thr)).mean()) * 100)}
    print(f"calibrating ({cfg.calibration} training images)", flush=True)
    cal = Calibrated(two, stratified_sample(train, cfg.calibration, cfg.calibration_seed), MixedPrecisionOptions())
    pick = np.unique(np.linspace(0, len(val.y) - 1, min(args.rank_images, len(val.y))).round().astype(int))
    res = {"command": "python benchmarks/mixed_unknown.py " + " ".join(sys.argv[1:]), "run": str(args.run),
           "layers": len(cal.nodes), "non_flower_photos": len(negs), "development_photos": dev_n}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.tflite"

        def sims_of(x):
            return Classifier(path, threshold=0.0).score_batch(x)

        ranking = []
        for i, node in enumerate(cal.nodes):
            path.write_bytes(cal.quantize([m for m in cal.nodes if m != node]))
            _, s = sims_of(val.x[pick])
            ranking.append({"layer": layer_name(node), "tensor": node,
                            "similarity_error": float(np.abs(s - ref_val[pick]).mean())})
            print(f"ranking {i + 1}/{len(cal.nodes)}: {ranking[-1]['layer']} {ranking[-1]['similarity_error']:.4f}",
                  flush=True)
        ranking.sort(key=lambda r: -r["similarity_error"])
        res["ranking_top16"] = ranking[:16]
        rows = []
        for k in (int(v) for v in args.float_layers.split(",")):
            path.write_bytes(cal.quantize([r["tensor"] for r in ranking[:k]]))
            val_out = sims_of(val.x)
            err = val_out[1] - ref_val
            row = {"float_layers": k, "layers": [r["layer"] for r in ranking[:k]],
                   "similarity_error_sd": float(err.std()), "similarity_error_mean_abs": float(np.abs(err).mean()),
                   **figures(val_out, sims_of(test.x), sims_of(neg_x)[1]),
                   "p50_ms_1_thread": _p50_ms(path, val.x[:1]), "size_bytes": path.stat().st_size}
            rows.append(row)
            print(f"{k} float layers: similarity error sd {row['similarity_error_sd']:.4f}, non-flower rejected "
                  f"{row['non_flower_rejected'] * 100:.1f}% for {row['test_drop_pts']:.2f} test pts, "
                  f"p50 {row['p50_ms_1_thread']:.2f} ms", flush=True)
    # the float model's own figures, for reference (Keras, same rule)
    res["float"] = figures(float_val, keras_out(test.x), keras_out(neg_x)[1])
    res["rows"] = rows
    res["seconds"] = time.perf_counter() - t0
    res["environment"] = environment()
    res["date"] = time.strftime("%Y-%m-%d")
    write_json(args.results, res)


if __name__ == "__main__":
    main()
