"""How well does the `unknown` answer work? Non-flower photos from installable packages against the flower test set.

    python benchmarks/unknown.py runs/bench/mobilenet_v2_aug_ls/export/model_int8.tflite [more artifacts...]
        [--keras-run runs/bench/mobilenet_v2_aug_ls] [--wallpapers] [--edu] [--debs DIR] [--data DIR]
        [--opencv-sdist PATH]

Two non-flower sets, never used for training or for choosing a threshold:
- development (the method was chosen on it): every photo-like image that scikit-image and matplotlib ship inside
  their wheels (27), with the licence line from the package's own documentation;
- held-out (looked at only to report): 31 photos and pictures from OpenCV's samples/data, shipped in the
  opencv-python 4.10.0.84 source distribution on PyPI (downloaded once, sha256-checked, cached; or
  --opencv-sdist PATH for a local copy).
With --wallpapers, the photos of Debian's wallpaper packages join them (benchmarks/negatives.py: lxqt-themes' to the
development set, lomiri-wallpapers' to the held-out set; mostly nature without flowers, the hard part), and their
flowers of other species form a "near" set that is reported apart. With --edu, the photos of two Debian education
packages join them too (benchmarks/edu_photos.py: GCompris' photos, about 180 to development and 110 to held-out, two
of them to "near"; Tux Paint's flower cut-outs as "near_cutout", and its two roses as "cutout_control", the check that
a cut-out on grey is not rejected for its background). Every photo has a category, and the results
give the share rejected per category. Needs `pip install "edgeflower[bench]"` (scikit-image's photos).
Each artifact is measured with the rule and thresholds stored in it at export (calibrated on the VALIDATION
split): share of non-flower photos answered `unknown`, and test accuracy counting an `unknown` flower as wrong.
With --keras-run (repeatable), the candidate methods are compared on each run's Keras model, each with a threshold
calibrated on the validation split with the exports' default budget (0.5 point): the evidence for the method the
exports use. The choice is made on development photos against validation flowers (auroc_val_vs_development);
held-out photos and the test set are only reported.
For similarity artifacts the JSON also holds the trade-off over other validation budgets (budget_curve).
Writes benchmarks/results/unknown.json. A few minutes (--keras-run: feature extraction of the 3670 photos).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeflower._env import environment  # noqa: E402
from edgeflower._util import cache_dir, write_json  # noqa: E402
from edgeflower.data.arrays import load_split  # noqa: E402
from edgeflower.data.source import resolve_data_dir  # noqa: E402
from edgeflower.data.split import load_manifest  # noqa: E402
from edgeflower.edge import UNKNOWN, Classifier  # noqa: E402
from edgeflower.edge.preprocess import preprocess  # noqa: E402

# images in these wheels that are photographs or renderings of something that is not a flower
SKIMAGE = ["astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "clock_motion.png", "coffee.png",
           "coins.png", "color.png", "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg", "ihc.png",
           "logo.png", "microaneurysms.png", "moon.png", "motorcycle_left.png", "page.png", "phantom.png",
           "retina.jpg", "rocket.jpg", "text.png", "chessboard_RGB.png"]
MATPLOTLIB = ["grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"]

OPENCV_SDIST = "opencv-python-4.10.0.84.tar.gz"
OPENCV_URL = ("https://files.pythonhosted.org/packages/4a/e7/b70a2d9ab205110d715906fc8ec83fbb00404aeb3a37a0654fdb"
              "68eb0c8c/" + OPENCV_SDIST)
OPENCV_SHA256 = "72d234e4582e9658ffea8e9cae5b63d488ad06994ef12d81dc303b17472f3526"
OPENCV_DIR = "opencv-python-4.10.0.84/opencv/samples/data/"
# every photo-like sample that is not a flower (portrait test images of people left out; chessboards, stereo and
# optical-flow pairs represented by one image each)
OPENCV = ["Blender_Suzanne1.jpg", "HappyFish.jpg", "aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg",
          "basketball1.png", "board.jpg", "box_in_scene.png", "building.jpg", "butterfly.jpg", "cards.png",
          "chicky_512.png", "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg", "left01.jpg", "leuvenA.jpg",
          "licenseplate_motion.jpg", "messi5.jpg", "notes.png", "orange.jpg", "pic1.png", "rubberwhale1.png",
          "smarties.png", "squirrel_cls.jpg", "starry_night.jpg", "stuff.jpg", "sudoku.png", "text_defocus.jpg"]
# what each photo shows, for the per-category report (the wallpaper photos carry their own: benchmarks/negatives.py)
CATEGORY = {
    "astronaut.png": "person", "camera.png": "person", "grace_hopper.jpg": "person", "basketball1.png": "person",
    "messi5.jpg": "person", "chelsea.png": "animal", "horse.png": "animal", "HappyFish.jpg": "animal",
    "baboon.jpg": "animal", "butterfly.jpg": "animal", "chicky_512.png": "animal", "squirrel_cls.jpg": "animal",
    "coffee.png": "food", "apple.jpg": "food", "fruits.jpg": "food", "orange.jpg": "food", "smarties.png": "food",
    "motorcycle_left.png": "vehicle", "rocket.jpg": "vehicle", "licenseplate_motion.jpg": "vehicle",
    "aero1.jpg": "vehicle", "building.jpg": "building", "leuvenA.jpg": "building", "graf1.png": "building",
    "ela_original.jpg": "building", "home.jpg": "indoor", "grass.png": "nature", "gravel.png": "nature",
    "aloeL.jpg": "nature", "brick.png": "texture", "moon.png": "space", "hubble_deep_field.jpg": "space",
    "cell.png": "microscopy", "ihc.png": "microscopy", "microaneurysms.png": "medical", "retina.jpg": "medical",
    "phantom.png": "medical", "page.png": "text", "text.png": "text", "notes.png": "text", "sudoku.png": "text",
    "text_defocus.jpg": "text", "starry_night.jpg": "painting", "Blender_Suzanne1.jpg": "render",
}

OPENCV_LICENCE = ("OpenCV sample data in the opencv-python 4.10.0.84 sdist (OpenCV is Apache-2.0; each sample's own "
                  "origin is OpenCV's record, not re-verified here)")


def dev_images() -> list[dict]:
    out = []
    try:
        import skimage
        import skimage.data as sd

        base = Path(skimage.__file__).parent / "data"
        docs = {name: inspect.getdoc(fn) or "" for name, fn in inspect.getmembers(sd, inspect.isfunction)}
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


def heldout_images(sdist: str | None = None) -> list[dict]:
    """The OpenCV samples, extracted once into the cache from the (downloaded or given) sdist."""
    dest = cache_dir() / "nonflower" / "opencv-4.10.0.84"
    if not all((dest / f).is_file() for f in OPENCV):
        with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
            archive = Path(sdist) if sdist else Path(tmp) / OPENCV_SDIST
            if not sdist:
                print(f"downloading {OPENCV_URL} (95 MB, once)", flush=True)
                with urllib.request.urlopen(OPENCV_URL, timeout=120) as r, open(archive, "wb") as fh:
                    shutil.copyfileobj(r, fh, 1 << 20)
            digest = hashlib.sha256(archive.read_bytes()).hexdigest()
            if digest != OPENCV_SHA256:
                sys.exit(f"{archive}: sha256 {digest} is not the expected {OPENCV_SHA256}")
            stage = Path(tmp) / "x"
            with tarfile.open(archive) as tf:
                for f in OPENCV:
                    member = tf.getmember(OPENCV_DIR + f)
                    (stage / f).parent.mkdir(parents=True, exist_ok=True)
                    (stage / f).write_bytes(tf.extractfile(member).read())
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            stage.rename(dest)
    return [{"path": str(dest / f), "package": "opencv-python 4.10.0.84 (sdist)", "name": f,
             "licence": OPENCV_LICENCE} for f in OPENCV]


BUDGETS = (0.0025, 0.005, 0.0075, 0.01)
ANY_CLASS = "cosine to 2nd-nearest training photo of any class (k=2)"  # the method's name in the results
# reported apart, not counted as non-flower photos: flowers of other species (photos, and Tux Paint's cut-outs on
# grey), and the cut-outs of roses that check whether the grey background alone is what gets rejected
NEAR_SETS = ("near", "near_cutout", "cutout_control")


def answers(clf: Classifier, split) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(right class, answered `unknown`, similarities or None) for each image of a split, by the device's own rule
    (Classifier.decide: the confidence and similarity rules, and a background class)."""
    probs, sims = clf.score_batch(split.x)
    unknown = np.array([clf.decide(p, None if s is None else float(s))[0] == UNKNOWN
                        for p, s in zip(probs, sims if sims is not None else [None] * len(probs))], bool)
    return probs.argmax(1) == split.y, unknown, sims


def measure_artifact(clf: Classifier, path: str, test, val, sets: dict[str, list[dict]]) -> dict:
    from edgeflower.metrics import calibrate_scores, rejection_cost_pts

    res = {"artifact": path, "rule": (clf.metadata.get("unknown") or {}).get("method", "confidence"),
           "similarity_threshold": clf.min_similarity, "confidence_threshold": clf.threshold}
    correct, unknown, sims = answers(clf, test)
    res["background_class"] = clf.background
    res["test_accuracy_without_rejection"] = float(correct.mean())
    res["test_accuracy_with_rejection"] = float((correct & ~unknown).mean())
    res["test_drop_pts"] = (res["test_accuracy_without_rejection"] - res["test_accuracy_with_rejection"]) * 100
    res["test_flowers_answered_unknown"] = float(unknown.mean())
    all_rej = []
    by_category: dict[str, list] = {}
    exact_sims: dict[str, list] = {}
    for name, images in sets.items():
        rows, exact = [], []
        for o in images:
            p = clf.classify(o["path"])
            exact.append(p.similarity)
            rows.append({"name": o["name"], "category": o.get("category") or CATEGORY.get(o["name"], "other"),
                         "label": p.label, "top": p.top_k[0][0], "confidence": round(p.score, 4),
                         "similarity": None if p.similarity is None else round(p.similarity, 4)})
        rej = [r["label"] == UNKNOWN for r in rows]
        if name not in NEAR_SETS:
            all_rej += rej
            for r, j in zip(rows, rej):
                by_category.setdefault(r["category"], []).append(j)
        res[name] = {"images": len(rows), "rejected": float(np.mean(rej)), "rows": rows}
        exact_sims[name] = exact
    res["non_flower_rejected"] = float(np.mean(all_rej))
    res["non_flower_images"] = len(all_rej)
    res["non_flower_rejected_by_category"] = {c: {"images": len(v), "rejected": float(np.mean(v))}
                                              for c, v in sorted(by_category.items())}
    res["target_met"] = res["non_flower_rejected"] >= 0.9 and res["test_drop_pts"] <= 1.0 + 1e-9
    res["test_flowers_answered_unknown_list"] = [
        {"path": test.paths[i], "correct_class": bool(correct[i])} for i in np.nonzero(unknown)[0]]
    if sims is not None:
        # the trade-off: the same artifact with the threshold calibrated on val for other accuracy budgets
        val_probs, val_sims = clf.score_batch(val.x)
        # unrounded: int8 similarities sit on a grid, and many equal the threshold exactly (kept)
        other = {name: np.array(exact_sims[name], np.float64) for name in sets}
        curve = []
        for b in BUDGETS:
            thr = calibrate_scores(val_probs.argmax(1) == val.y, val_sims, b)["threshold"]
            row = {"val_budget_pts": b * 100, "similarity_threshold": thr,
                   "test_drop_pts": rejection_cost_pts(correct, sims, thr)}
            for name, o in other.items():
                row[f"{name}_rejected"] = float((o < thr).mean())
            row["non_flower_rejected"] = float(np.mean(np.concatenate(
                [v for k, v in other.items() if k not in NEAR_SETS]) < thr))
            curve.append(row)
        res["budget_curve"] = curve
    return res


def _auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    return float((pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean())


def compare_methods(run: str, root: Path, sets: dict[str, list[dict]], budget: float = 0.005,
                    outliers: list[str] | None = None) -> dict:
    """Candidate scores on the Keras model's pooled features and probabilities; thresholds calibrated on val.
    ``outliers``: non-flower photos for outlier exposure (never in ``sets``): adds contrastive scores, the similarity
    to the flowers minus (a share of) the similarity to the nearest of these photos."""
    from edgeflower.export.ood import kth_largest, normalize

    k = keras_features(run, root, sets, outliers)
    f, p, y = k["f"], k["p"], k["y"]
    if outliers:
        outlier_bank = normalize(k["outliers"])
    n_cls = len(load_manifest().classes)
    mus = np.stack([f["train"][y["train"] == c].mean(0) for c in range(n_cls)])
    centred = f["train"] - mus[y["train"]]
    cov = centred.T @ centred / len(centred)
    cov = 0.99 * cov + 0.01 * np.trace(cov) / len(cov) * np.eye(len(cov))
    prec = np.linalg.inv(cov)
    bank = normalize(f["train"])
    mu_n = normalize(mus)

    def knn(s, k):
        return kth_largest(normalize(f[s]) @ bank.T, k)

    def maha(x):
        return -np.min(np.stack([np.einsum("ij,jk,ik->i", x - mu, prec, x - mu) for mu in mus], 1), 1)

    methods = {
        "max softmax probability": lambda s: p[s].max(1),
        "cosine to class means": lambda s: (normalize(f[s]) @ mu_n.T).max(1),
        "Mahalanobis to class means (tied covariance)": lambda s: maha(f[s]),
        "cosine to nearest training photo (k=1)": lambda s: knn(s, 1),
        ANY_CLASS: lambda s: knn(s, 2),
        "cosine to 3rd-nearest training photo (k=3)": lambda s: knn(s, 3),
        "cosine to 5th-nearest training photo (k=5)": lambda s: knn(s, 5),
    }
    if outliers:
        def outlier_sim(s):
            return (normalize(f[s]) @ outlier_bank.T).max(1)

        methods.update({
            "k=2 minus the cosine to the nearest outlier photo": lambda s: knn(s, 2) - outlier_sim(s),
            "k=2 minus half the cosine to the nearest outlier photo": lambda s: knn(s, 2) - 0.5 * outlier_sim(s),
        })
    out = {"run": run, "feature_layer": k["layer"], "budget": budget, "outlier_photos": len(outliers or []),
           "methods": score_methods(methods, p, y, sets, budget)}
    out["test_accuracy_without_rejection"] = float((p["test"].argmax(1) == y["test"]).mean())
    return out


def keras_features(run: str, root: Path, sets: dict[str, list[dict]], outliers: list[str] | None = None) -> dict:
    """A run's Keras model on the train/val/test splits and on ``sets``: pooled features ``f`` and class scores
    ``p`` by set name, labels ``y`` of the splits, the feature layer's name and the outlier photos' features."""
    import keras

    from edgeflower.export.ood import feature_layer

    m = keras.models.load_model(Path(run) / "model.keras", compile=False)
    layer = feature_layer(m)
    feat = keras.Model(m.inputs, [layer.output, m.output])
    size = int(m.inputs[0].shape[1])
    man = load_manifest()

    def run_model(x):
        outs = [feat.predict_on_batch(x[i:i + 16].astype("float32")) for i in range(0, len(x), 16)]
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    f, p, y = {}, {}, {}
    for s in ("train", "val", "test"):
        a = load_split(root, man, s, size)
        f[s], p[s] = run_model(a.x)
        y[s] = a.y
    for s, images in sets.items():
        f[s], p[s] = run_model(np.stack([preprocess(o["path"], size) for o in images]))
    out_f = run_model(np.stack([preprocess(o, size) for o in outliers]))[0] if outliers else None
    return {"f": f, "p": p, "y": y, "layer": layer.name, "outliers": out_f}


def score_methods(methods: dict, p: dict, y: dict, sets: dict[str, list[dict]], budget: float,
                  categories: dict[str, np.ndarray] | None = None) -> dict[str, dict]:
    """Each score (a function of the set name) with its threshold calibrated on the validation split at
    ``budget``: the test points it costs, the share of each set rejected (and of its nature photos, given the
    ``categories`` of each set's photos) and the AUROCs. The method is chosen on auroc_val_vs_development."""
    from edgeflower.metrics import calibrate_scores, rejection_cost_pts

    rows = {}
    c_val, c_test = p["val"].argmax(1) == y["val"], p["test"].argmax(1) == y["test"]
    for name, fn in methods.items():
        sv, st = fn("val"), fn("test")
        cal = calibrate_scores(c_val, sv, budget)
        thr = cal["threshold"]
        row = {"threshold": thr, "val_rejected": cal["rejected_share"],
               "test_accuracy_with_rejection": float((c_test & (st >= thr)).mean()),
               "test_drop_pts": rejection_cost_pts(c_test, st, thr)}
        others = []
        for s in sets:
            so = fn(s)
            row[f"{s}_rejected"] = float((so < thr).mean())
            nature = categories[s] == "nature" if categories else np.zeros(0, bool)
            if nature.any():
                row[f"{s}_nature_rejected"] = float((so[nature] < thr).mean())
            if s not in NEAR_SETS:
                others.append(so)
        o = np.concatenate(others)
        row["auroc_test_vs_non_flower"] = _auroc(st, o)
        # the method is chosen on these two: correctly classified val flowers against development photos
        row["auroc_val_vs_development"] = _auroc(sv[c_val], fn("development"))
        rows[name] = row
    return rows


def non_flower_sets(opencv_sdist: str | None = None, wallpapers: bool = False, debs: str | None = None,
                    edu: bool = False) -> dict:
    """The development and held-out sets; with ``wallpapers`` the Debian wallpaper photos join them and their
    flowers of other species form the "near" set; with ``edu`` the photos of GCompris and Tux Paint join them too
    (benchmarks/edu_photos.py), with the Tux Paint flowers as the near_cutout and cutout_control sets."""
    sets = {"development": dev_images(), "held_out": heldout_images(opencv_sdist)}
    if not any(o["package"].startswith("scikit-image") for o in sets["development"]):
        sys.exit("scikit-image's sample photos (most of the development set) are missing: "
                 "pip install \"edgeflower[bench]\"")
    if wallpapers:  # Debian's wallpaper photos (benchmarks/negatives.py): mostly nature without flowers
        import negatives

        for name in ("development", "held_out", "near"):
            sets[name] = sets.get(name, []) + negatives.images(name, debs=debs)
    if edu:
        import edu_photos

        for name in edu_photos.ROLES:
            sets[name] = sets.get(name, []) + edu_photos.images(name, debs=debs)
    return sets


def outlier_photos(debs: str | None = None) -> list[str]:
    """The outlier-exposure photos (whole and cropped) of the wallpaper packages' train role."""
    import negatives

    index = negatives.build(negatives.default_dir(), debs)
    return [str(negatives.default_dir() / r["file"]) for r in index["rows"] if r["role"] == "train"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", nargs="+")
    ap.add_argument("--data", default=None)
    ap.add_argument("--opencv-sdist", default=None, help=f"a local copy of {OPENCV_SDIST} (else downloaded)")
    ap.add_argument("--keras-run", action="append", default=[],
                    help="also compare the candidate methods on this run's Keras model (repeatable; the first one's "
                         "table goes into the README)")
    ap.add_argument("--keep-methods", action="store_true",
                    help="keep the method comparison of the existing results file (with the command that made it) "
                         "instead of recomputing it: for re-measuring artifacts alone")
    ap.add_argument("--wallpapers", action="store_true",
                    help="add the photos of Debian's wallpaper packages (benchmarks/negatives.py) to the development "
                         "and held-out sets, and their flowers of other species as a 'near' set")
    ap.add_argument("--edu", action="store_true",
                    help="add the photos of GCompris and Tux Paint (benchmarks/edu_photos.py): about 290 more "
                         "non-flower photos, and flowers of other species")
    ap.add_argument("--debs", default=None, help="with --wallpapers or --edu: a folder with the .deb files "
                                                 "(else downloaded)")
    ap.add_argument("--results", default=str(ROOT / "benchmarks/results/unknown.json"))
    args = ap.parse_args()
    kept = {}
    if args.keep_methods:
        if args.keras_run:
            sys.exit("--keep-methods and --keras-run exclude each other")
        old = json.loads(Path(args.results).read_text())
        kept = {k: old[k] for k in ("methods", "methods_by_run") if k in old}
        kept["methods_command"] = old.get("methods_command", old["command"])
    sets = non_flower_sets(args.opencv_sdist, args.wallpapers, args.debs, args.edu)
    root = resolve_data_dir(args.data, download=False)
    res = {"command": "python benchmarks/unknown.py " + " ".join(sys.argv[1:]),
           "sets": {k: [{"name": o["name"], "package": o["package"], "licence": o["licence"],
                         "category": o.get("category") or CATEGORY.get(o["name"], "other"),
                         **({"what": o["what"]} if "what" in o else {})} for o in v] for k, v in sets.items()},
           "artifacts": []}
    for path in args.artifacts:
        clf = Classifier(path, threads=2)
        test, val = (load_split(root, load_manifest(), s, clf.input_size[0]) for s in ("test", "val"))
        r = measure_artifact(clf, path, test, val, sets)
        res["artifacts"].append(r)
        print(f"{path}: rule {r['rule']}, non-flower rejected {r['non_flower_rejected'] * 100:.1f}% "
              f"(development {r['development']['rejected'] * 100:.1f}%, "
              f"held-out {r['held_out']['rejected'] * 100:.1f}%), "
              f"test {r['test_accuracy_without_rejection'] * 100:.2f}% -> "
              f"{r['test_accuracy_with_rejection'] * 100:.2f}% ({r['test_drop_pts']:.2f} pts); "
              + (f"other species {r['near']['rejected'] * 100:.1f}%; " if "near" in r else "")
              + f"target {'met' if r['target_met'] else 'missed'}", flush=True)
    res.update(kept)
    if args.keras_run:
        res["methods_command"] = res["command"]
    outliers = outlier_photos(args.debs) if args.wallpapers else None
    for i, run in enumerate(args.keras_run):
        m = compare_methods(run, root, sets, outliers=outliers)
        if i == 0:
            res["methods"] = m
        res.setdefault("methods_by_run", {})[run] = m
        print(run)
        for name, row in m["methods"].items():
            print(f"  {name:<52} dev {row['development_rejected'] * 100:5.1f}%  "
                  f"held-out {row['held_out_rejected'] * 100:5.1f}%  test drop {row['test_drop_pts']:.2f}  "
                  f"AUROC val/dev {row['auroc_val_vs_development']:.4f}  test/non-flower "
                  f"{row['auroc_test_vs_non_flower']:.4f}", flush=True)
    res["environment"] = environment()
    res["date"] = time.strftime("%Y-%m-%d")
    write_json(args.results, res)


if __name__ == "__main__":
    main()
