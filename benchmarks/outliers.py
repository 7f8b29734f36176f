"""How well does `unknown` work on photos of kinds the model never saw? The outlier set's held-out part, by source.

    python -m benchmarks.outliers runs/main/train/export/model_int8.tflite [more artifacts...]
        [--outliers DIR] [--data DIR] [--results FILE]

The outlier set (edgeflower.data.outliers, ``../shared/data/outliers`` or the cache) is split by source before any
training: whole sources (the Fedora, Solus, Xubuntu and Ubuntu MATE wallpapers, the Azure sample photos), whole
Caltech-101 categories (every third of each kind) and whole species of other flowers (water lily and every second
species of one photo) are held out; ``train`` never reads them. The rest is the development part, whose validation
photos chose the thresholds. This step reports, per artifact, by the device's own rule (Classifier.decide: the
background class and the similarity):

- the share of held-out photos answered ``unknown``, per category (nature, animal, person, ...), and of
  other-species flowers of species never seen in training (and of seen species, apart);
- the same on the development part's validation photos (which took part in choices: not an unseen figure);
- the flower test photos: accuracy without rejection (the top of the classes alone, the background class's score
  ignored), accuracy counting ``unknown`` as wrong, and the cost between them;
- which held-out photos still get through, and as what.

Writes benchmarks/results/outliers.json. About a minute per artifact.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import RESULTS, command
from edgeflower.data import outliers as od
from edgeflower.data.arrays import load_split
from edgeflower.data.source import resolve_data_dir
from edgeflower.data.split import load_manifest
from edgeflower.edge import UNKNOWN, Classifier
from edgeflower.util.env import environment
from edgeflower.util.files import write_json

TARGETS = {"non_flower": 0.90, "nature": 0.85, "unseen_species": 0.50, "cost_pts": 1.0}


def decide_all(clf: Classifier, x: np.ndarray) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(probabilities, the device's answer, which rule answered unknown: "background", "similarity" or "")."""
    probs, sims = clf.score_batch(x)
    labels, why = [], []
    for i, p in enumerate(probs):
        s = None if sims is None else float(sims[i])
        label, _, top, _ = clf.decide(p, s)
        labels.append(label)
        why.append("" if label != UNKNOWN else
                   "background" if clf.labels[top] == clf.background else "similarity")
    return probs, labels, np.array(why)


def flowers(clf: Classifier, test) -> dict:
    """Flower test photos: without rejection (top of the classes alone), and counting `unknown` as wrong."""
    probs, labels, why = decide_all(clf, test.x)
    classes = [i for i, c in enumerate(clf.labels) if c != clf.background]
    plain = np.array(classes)[probs[:, classes].argmax(1)] == test.y
    right = np.array([lab == test.classes[y] for lab, y in zip(labels, test.y)])
    unknown = np.array([lab == UNKNOWN for lab in labels])
    return {"images": len(test), "accuracy_without_rejection": float(plain.mean()),
            "accuracy_with_unknown": float(right.mean()),
            "cost_pts": float(plain.mean() - right.mean()) * 100,
            "answered_unknown": float(unknown.mean()),
            "answered_unknown_by_background": float((why == "background").mean()),
            "answered_unknown_by_similarity": float((why == "similarity").mean()),
            "unknown_photos": [test.paths[i] for i in np.nonzero(unknown)[0]]}


def outlier_rows(clf: Classifier, folder: Path, rows: list[od.Outlier]) -> list[dict]:
    size = clf.input_size
    x = np.stack([clf.preprocess(folder / r.file) for r in rows]) if rows else np.zeros((0, *size, 3), np.uint8)
    _, labels, why = decide_all(clf, x)
    return [{"file": r.file, "kind": r.kind, "category": r.category, "source": r.repo, "answer": lab,
             "unknown": lab == UNKNOWN, "by": w} for r, lab, w in zip(rows, labels, why)]


def summarize(rows: list[dict], seen: set[str]) -> dict:
    def share(sel):
        sel = list(sel)
        return {"images": len(sel), "unknown": float(np.mean([r["unknown"] for r in sel])) if sel else None}

    non = [r for r in rows if r["kind"] != "other_flowers"]
    other = [r for r in rows if r["kind"] == "other_flowers"]
    return {
        "non_flower": share(non),
        "by_category": {k: share(r for r in non if r["kind"] == k) for k in sorted({r["kind"] for r in non})},
        "by_source": {s: share(r for r in rows if r["source"] == s) for s in sorted({r["source"] for r in rows})},
        "by_rule": {w: float(np.mean([r["by"] == w for r in non])) if non else None
                    for w in ("background", "similarity")},
        "other_flowers_unseen_species": share(r for r in other if r["category"] not in seen),
        "other_flowers_seen_species": share(r for r in other if r["category"] in seen),
        "other_flowers_by_species": {s: share(r for r in other if r["category"] == s)
                                     for s in sorted({r["category"] for r in other})},
        "got_through": [{"file": r["file"], "answer": r["answer"]} for r in rows if not r["unknown"]],
    }


def measure(path: str, folder: Path, root: Path) -> dict:
    clf = Classifier(path, threads=2)
    manifest = od.read_manifest(folder / od.MANIFEST)
    role = od.roles(manifest)
    seen = od.seen_species(manifest)
    test = load_split(root, load_manifest(), "test", clf.input_size[0], resize=clf.resize)
    res = {"artifact": path, "background_class": clf.background, "similarity_threshold": clf.min_similarity,
           "flowers": flowers(clf, test)}
    for part in ("heldout", "val"):
        res[part] = summarize(outlier_rows(clf, folder, [r for r in manifest if role[r.file] == part]), seen)
    h, f = res["heldout"], res["flowers"]
    res["targets"] = TARGETS
    res["target_met"] = {
        "non_flower": h["non_flower"]["unknown"] >= TARGETS["non_flower"],
        "nature": h["by_category"]["nature"]["unknown"] >= TARGETS["nature"],
        "unseen_species": h["other_flowers_unseen_species"]["unknown"] >= TARGETS["unseen_species"],
        "cost_pts": f["cost_pts"] <= TARGETS["cost_pts"] + 1e-9,
    }
    return res


def default_folder() -> Path:
    env = os.environ.get(od.ENV)
    if env and env.lower() not in od.OFF:
        return Path(env)
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "outliers"
    return shared if shared.is_dir() else od.resolve(download_missing=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("artifacts", nargs="+")
    ap.add_argument("--outliers", default=None, help="the outlier set (default: $EDGEFLOWER_OUTLIERS, "
                                                     "../shared/data/outliers, else the cache)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--results", default=str(RESULTS / "outliers.json"))
    args = ap.parse_args()
    folder = Path(args.outliers) if args.outliers else default_folder()
    if not (folder / od.MANIFEST).is_file():
        sys.exit(f"{folder}: no {od.MANIFEST}; pass --outliers with the outlier set")
    manifest = od.read_manifest(folder / od.MANIFEST)
    role = od.roles(manifest)
    root = resolve_data_dir(args.data, download=False)
    res = {"command": command("benchmarks.outliers"), "outliers": str(folder),
           "split": {"rule": "edgeflower.data.outliers.roles: whole sources, Caltech categories and species held out",
                     "held_out_sources": list(od.HELD_OUT_SOURCES),
                     "held_out_caltech_categories": sorted(od._held_out_categories(manifest)),
                     "held_out_species": sorted(od._held_out_species(manifest)),
                     "seen_species": sorted(od.seen_species(manifest)),
                     "counts": {p: sum(v == p for v in role.values()) for p in ("train", "val", "heldout")},
                     "heldout_files": sorted([r.file, r.sha256] for r in manifest if role[r.file] == "heldout")},
           "artifacts": []}
    for path in args.artifacts:
        r = measure(path, folder, root)
        res["artifacts"].append(r)
        h, f = r["heldout"], r["flowers"]
        print(f"{path}: held out by source: non-flower {h['non_flower']['unknown'] * 100:.1f}% of "
              f"{h['non_flower']['images']} (nature {h['by_category']['nature']['unknown'] * 100:.1f}%), unseen "
              f"species {h['other_flowers_unseen_species']['unknown'] * 100:.1f}% of "
              f"{h['other_flowers_unseen_species']['images']}; flowers {f['accuracy_without_rejection'] * 100:.2f}% "
              f"-> {f['accuracy_with_unknown'] * 100:.2f}% ({f['cost_pts']:.2f} pts)", flush=True)
    res["environment"] = environment()
    res["date"] = time.strftime("%Y-%m-%d")
    write_json(args.results, res)


if __name__ == "__main__":
    main()
