"""How well does the `unknown` answer work? Non-flower photos from installable packages against the flower test set.

    python -m benchmarks.unknown runs/bench/mobilenet_v2_aug_ls/export/model_int8.tflite [more artifacts...]
        [--wallpapers] [--edu] [--debs DIR] [--data DIR]
        [--opencv-sdist PATH]

Two non-flower sets, never used for training or for choosing a threshold:
- development (the method was chosen on it): every photo-like image that scikit-image and matplotlib ship inside
  their wheels (27), with the licence line from the package's own documentation;
- held-out (looked at only to report): 31 photos and pictures from OpenCV's samples/data, shipped in the
  opencv-python 4.10.0.84 source distribution on PyPI (downloaded once, sha256-checked, cached; or
  --opencv-sdist PATH for a local copy).
With --wallpapers, the photos of Debian's wallpaper packages join them (scripts/collect/negatives.py: lxqt-themes'
to the development set, lomiri-wallpapers' to the held-out set; mostly nature without flowers, the hard part), and
their flowers of other species form a "near" set that is reported apart. With --edu, the photos of two Debian
education packages join them too (scripts/collect/edu_photos.py: GCompris' photos, about 180 to development and 110
to held-out, two of them to "near"; Tux Paint's flower cut-outs as "near_cutout", and its two roses as
"cutout_control", the check that a cut-out on grey is not rejected for its background). Every photo has a category,
and the results give the share rejected per category. Needs `pip install "edgeflower[bench]"` (scikit-image's photos).
Each artifact is measured with the rule and thresholds stored in it at export (calibrated on the VALIDATION
split): share of non-flower photos answered `unknown`, and test accuracy counting an `unknown` flower as wrong.
The comparison of candidate scores that chose the exports' method (the --keras-run option of earlier versions) is a
settled study: docs/studies/, its code in git history at 236dd44.
For similarity artifacts the JSON also holds the trade-off over other validation budgets (budget_curve).
Writes benchmarks/results/unknown.json. A few minutes .
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import re
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from benchmarks import RESULTS
from edgeflower.data.arrays import load_split
from edgeflower.data.source import resolve_data_dir
from edgeflower.data.split import load_manifest
from edgeflower.edge import UNKNOWN, Classifier
from edgeflower.util.env import environment
from edgeflower.util.files import cache_dir, write_json

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
    from edgeflower.util.metrics import calibrate_scores, rejection_cost_pts

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
        from scripts.collect import negatives

        for name in ("development", "held_out", "near"):
            sets[name] = sets.get(name, []) + negatives.images(name, debs=debs)
    if edu:
        from scripts.collect import edu_photos

        for name in edu_photos.ROLES:
            sets[name] = sets.get(name, []) + edu_photos.images(name, debs=debs)
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", nargs="+")
    ap.add_argument("--data", default=None)
    ap.add_argument("--opencv-sdist", default=None, help=f"a local copy of {OPENCV_SDIST} (else downloaded)")
    ap.add_argument("--wallpapers", action="store_true",
                    help="add the photos of Debian's wallpaper packages (benchmarks/negatives.py) to the development "
                         "and held-out sets, and their flowers of other species as a 'near' set")
    ap.add_argument("--edu", action="store_true",
                    help="add the photos of GCompris and Tux Paint (benchmarks/edu_photos.py): about 290 more "
                         "non-flower photos, and flowers of other species")
    ap.add_argument("--debs", default=None, help="with --wallpapers or --edu: a folder with the .deb files "
                                                 "(else downloaded)")
    ap.add_argument("--results", default=str(RESULTS / "unknown.json"))
    args = ap.parse_args()
    sets = non_flower_sets(args.opencv_sdist, args.wallpapers, args.debs, args.edu)
    root = resolve_data_dir(args.data, download=False)
    res = {"command": "python -m benchmarks.unknown " + " ".join(sys.argv[1:]),
           "sets": {k: [{"name": o["name"], "package": o["package"], "licence": o["licence"],
                         "category": o.get("category") or CATEGORY.get(o["name"], "other"),
                         **({"what": o["what"]} if "what" in o else {})} for o in v] for k, v in sets.items()},
           "artifacts": []}
    for path in args.artifacts:
        clf = Classifier(path, threads=2)
        test, val = (load_split(root, load_manifest(), s, clf.input_size[0], resize=clf.resize)
                     for s in ("test", "val"))
        r = measure_artifact(clf, path, test, val, sets)
        res["artifacts"].append(r)
        print(f"{path}: rule {r['rule']}, non-flower rejected {r['non_flower_rejected'] * 100:.1f}% "
              f"(development {r['development']['rejected'] * 100:.1f}%, "
              f"held-out {r['held_out']['rejected'] * 100:.1f}%), "
              f"test {r['test_accuracy_without_rejection'] * 100:.2f}% -> "
              f"{r['test_accuracy_with_rejection'] * 100:.2f}% ({r['test_drop_pts']:.2f} pts); "
              + (f"other species {r['near']['rejected'] * 100:.1f}%; " if "near" in r else "")
              + f"target {'met' if r['target_met'] else 'missed'}", flush=True)
    res["environment"] = environment()
    res["date"] = time.strftime("%Y-%m-%d")
    write_json(args.results, res)


if __name__ == "__main__":
    main()
