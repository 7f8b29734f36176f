"""How well does the `unknown` answer work? Non-flower photos from installed packages against the flower test set.

    python benchmarks/unknown.py runs/bench/mobilenet_v2_aug_ls/export/model_int8.tflite [--data DIR]

Non-flower set (development only, never used for training or for choosing the threshold): every photo-like
image that scikit-image and matplotlib ship inside their wheels, with the licence line from the package's own
documentation. The threshold is the one `edgeflower export` calibrated on the VALIDATION split and stored in the
artifact (largest confidence threshold that costs at most 1 point of validation accuracy).
Reports the share of non-flower photos answered `unknown` and the test accuracy counting `unknown` as wrong.
Writes benchmarks/results/unknown.json. Under a minute.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeflower._env import environment  # noqa: E402
from edgeflower._util import write_json  # noqa: E402
from edgeflower.data.source import resolve_data_dir  # noqa: E402
from edgeflower.data.split import load_manifest, split_items  # noqa: E402
from edgeflower.edge import UNKNOWN, Classifier  # noqa: E402

# images in these wheels that are photographs or renderings of something that is not a flower
SKIMAGE = ["astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png", "coffee.png",
           "coins.png", "color.png", "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg", "ihc.png",
           "logo.png", "microaneurysms.png", "moon.png", "motorcycle_left.png", "page.png", "phantom.png",
           "retina.jpg", "rocket.jpg", "text.png", "chessboard_RGB.png"]
MATPLOTLIB = ["grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"]


def non_flower_images() -> list[dict]:
    out = []
    try:
        import skimage
        import skimage.data as sd

        base = Path(skimage.__file__).parent / "data"
        docs = {}
        for name, fn in inspect.getmembers(sd, inspect.isfunction):
            docs[name] = inspect.getdoc(fn) or ""
        for f in SKIMAGE:
            p = base / f
            if not p.exists():
                continue
            stem = {"chelsea.png": "chelsea", "motorcycle_left.png": "stereo_motorcycle",
                    "hubble_deep_field.jpg": "hubble_deep_field", "ihc.png": "immunohistochemistry",
                    "chessboard_RGB.png": "checkerboard", "clock_motion.png": "clock"}.get(f, Path(f).stem)
            doc = docs.get(stem, "")
            lic = [s.strip() for s in re.split(r"\n\s*\n", doc) if re.search(r"licen|public domain|CC0|copyright|"
                                                                              r"permission", s, re.I)]
            out.append({"path": str(p), "package": f"scikit-image {skimage.__version__}", "name": f,
                        "licence": (lic[0][:300] if lic else "see scikit-image's data documentation")})
    except ImportError:
        pass
    try:
        import matplotlib

        base = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data"
        for f in MATPLOTLIB:
            if (base / f).exists():
                out.append({"path": str(base / f), "package": f"matplotlib {matplotlib.__version__}", "name": f,
                            "licence": "matplotlib sample data (see matplotlib's LICENSE and sample_data README)"})
    except ImportError:
        pass
    return out


def feature_similarity(run: str, root: Path, others: list[str]) -> dict:
    """Max cosine similarity of GAP features to the training class means; threshold chosen on val (1-pt budget)."""
    import keras

    from edgeflower.data.arrays import load_split
    from edgeflower.edge import preprocess

    m = keras.models.load_model(Path(run) / "model.keras", compile=False)
    feat = keras.Model(m.inputs, [m.get_layer("gap").output, m.output])
    man = load_manifest()

    def run_model(x):
        outs = [feat.predict_on_batch(x[i:i + 32].astype("float32")) for i in range(0, len(x), 32)]
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    def norm(a):
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    tr, va, te = (load_split(root, man, s, 224) for s in ("train", "val", "test"))
    ftr, _ = run_model(tr.x)
    mu = norm(np.stack([ftr[tr.y == c].mean(0) for c in range(len(man.classes))]))
    (fva, pva), (fte, pte) = run_model(va.x), run_model(te.x)
    fo, _ = run_model(np.stack([preprocess(p, 224) for p in others]))
    sv, st, so = ((norm(f) @ mu.T).max(1) for f in (fva, fte, fo))
    cv, ct = pva.argmax(1) == va.y, pte.argmax(1) == te.y
    thr = max((t for t in np.unique(sv) if cv.mean() - (cv & (sv >= t)).mean() <= 0.01 + 1e-12), default=0.0)
    return {"method": "max cosine similarity of pooled features to training class means (Keras float model)",
            "threshold": float(thr), "non_flower_rejected": float((so < thr).mean()),
            "val_accuracy": [float(cv.mean()), float((cv & (sv >= thr)).mean())],
            "test_accuracy_without_rejection": float(ct.mean()),
            "test_accuracy_with_rejection": float((ct & (st >= thr)).mean())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("artifact")
    ap.add_argument("--data", default=None)
    ap.add_argument("--results", default=str(ROOT / "benchmarks/results/unknown.json"))
    ap.add_argument("--keras-run", default=None,
                    help="also measure a feature-distance score (cosine similarity of the pooled backbone features "
                         "to the class means of the training split) with this run's Keras model (needs TensorFlow)")
    args = ap.parse_args()
    clf = Classifier(args.artifact, threads=2)
    thr = clf.threshold
    others = non_flower_images()
    if not others:
        sys.exit("no non-flower images found: pip install scikit-image matplotlib")
    rows = []
    for o in others:
        p = clf.classify(o["path"])
        rows.append({**{k: o[k] for k in ("name", "package", "licence")}, "label": p.label,
                     "top": p.top_k[0][0], "confidence": round(p.score, 4)})
    rejected = sum(r["label"] == UNKNOWN for r in rows)
    root = resolve_data_dir(args.data, download=False)
    items = split_items(load_manifest(), "test")
    correct_plain = correct_rej = unknown_flowers = 0
    confs = []
    for rel, y, _ in items:
        p = clf.classify(root / rel)
        top_ok = p.index == y
        correct_plain += top_ok
        correct_rej += top_ok and p.label != UNKNOWN
        unknown_flowers += p.label == UNKNOWN
        confs.append(p.score)
    n = len(items)
    # the whole trade-off curve, for the README/plot: share rejected vs test accuracy at each threshold
    other_conf = np.array([r["confidence"] for r in rows])
    curve = []
    for t in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        curve.append({"threshold": t, "non_flower_rejected": float((other_conf < t).mean())})
    res = {
        "command": "python benchmarks/unknown.py " + " ".join(sys.argv[1:]),
        "artifact": args.artifact, "threshold": thr, "threshold_source": "calibrated on the validation split at export",
        "non_flower_images": len(rows), "non_flower_rejected": rejected / len(rows),
        "test_accuracy_without_rejection": correct_plain / n, "test_accuracy_with_rejection": correct_rej / n,
        "test_flowers_answered_unknown": unknown_flowers / n,
        "target_met": rejected / len(rows) >= 0.9 and (correct_plain - correct_rej) / n <= 0.01,
        "curve_non_flower": curve, "images": rows,
        "environment": environment(), "date": time.strftime("%Y-%m-%d"),
    }
    if args.keras_run:
        res["feature_similarity"] = feature_similarity(args.keras_run, root, [o["path"] for o in others])
    write_json(args.results, res)
    print({k: v for k, v in res.items() if k not in ("images", "environment", "curve_non_flower")})
    for r in rows:
        print(f"  {r['name']:<32} {r['label']:<11} ({r['top']} {r['confidence']:.2f})")


if __name__ == "__main__":
    main()
