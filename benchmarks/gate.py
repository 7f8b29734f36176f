"""The export gate's decision rule on real exports: how often it fails an artifact that is within its budget, and
how often it passes one that is clearly worse, on flower_photos and on a dataset of another domain.

    python -m benchmarks.gate dataset --git DIR [--per-class 420] [--out runs/datasets/scenes6]
    edgeflower train --data runs/datasets/scenes6 --out runs/scenes6 && edgeflower export runs/scenes6 --int8
    python -m benchmarks.gate measure RUN [RUN ...] [--rounds 2000]
    python -m benchmarks.render_readme                     # docs/export.md's table, with the others

``dataset`` builds the second dataset: six scene classes (buildings, forest, glacier, mountain, sea, street) of the
Intel image classification set, from the public repository afroozsheikh/Intel-Image-Classifier at the pinned commit
below (100 x 100 JPEGs; the repository states no licence, so it is used in this benchmark only, never in a product
default). ``--per-class`` photos of each class from its ``train/`` folder, the first by sha256, so the set is the
same on every machine; their sha256 are written beside them.

``measure`` runs each RUN's Keras model and its exported artifacts over the validation and test photos pooled,
then resamples validation-sized sets from that pool (with replacement, stratified) and applies the rule
(``edgeflower.exporting.gate``) to each:
- false fails: the real artifact, whose drop on the whole pool is within the budget, failed on a resampled set;
- false passes: the artifact made clearly worse (its answers turned wrong on a random share of the photos, so
  that its drop on the pool is the budget plus 1 and plus 2 points), passed on a resampled set.
The old rule (the test split's point estimate against --max-drop) is measured the same way, on test-sized sets.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks import RESULTS
from edgeflower.util.files import write_json

SCENES_REPO = "afroozsheikh/Intel-Image-Classifier"
SCENES_COMMIT = "268f8fc38fb3f7307c1861d619ee99ff4158a3f5"
SCENES_CLASSES = ("buildings", "forest", "glacier", "mountain", "sea", "street")


def build_dataset(git_dir: str, out: Path, per_class: int) -> dict:
    """The scenes dataset from a clone or mirror of SCENES_REPO (the pinned commit must be in it)."""
    def git(*args: str) -> bytes:
        return subprocess.run(["git", "-C", git_dir, *args], capture_output=True, check=True).stdout

    try:
        git("cat-file", "-e", f"{SCENES_COMMIT}^{{commit}}")
    except subprocess.CalledProcessError:
        sys.exit(f"{git_dir} does not hold {SCENES_REPO} at {SCENES_COMMIT}")
    names = git("ls-tree", "-r", "--name-only", SCENES_COMMIT, "train/").decode().split("\n")
    rows = []
    for c in SCENES_CLASSES:
        files = [n for n in names if n.startswith(f"train/{c}/") and n.lower().endswith(".jpg")]
        blobs = {n: git("show", f"{SCENES_COMMIT}:{n}") for n in files}
        digests = sorted((hashlib.sha256(b).hexdigest(), n) for n, b in blobs.items())
        (out / c).mkdir(parents=True, exist_ok=True)
        for digest, n in digests[:per_class]:
            (out / c / Path(n).name).write_bytes(blobs[n])
            rows.append({"path": f"{c}/{Path(n).name}", "sha256": digest,
                         "source": f"{SCENES_REPO}@{SCENES_COMMIT}:{n}"})
    (out / ".sources.json").write_text(__import__("json").dumps(rows, indent=0))
    return {"photos": len(rows), "classes": list(SCENES_CLASSES), "out": str(out)}


# ---------------------------------------------------------------- measure
def pooled_predictions(run: Path) -> dict:
    """Keras and every artifact's answers on the run's validation and test photos pooled (kept beside the run as
    gate_predictions.npz: a rerun with other settings does not predict again)."""
    cache = run / "gate_predictions.npz"
    if cache.is_file():
        z = np.load(cache)
        return {"y": z["y"], "split": z["split"], "keras": z["keras"], "dataset": str(z["dataset"]),
                "artifacts": {k[4:]: z[k] for k in z.files if k.startswith("art:")}}
    from edgeflower.data.arrays import load_split
    from edgeflower.data.source import resolve_data_dir
    from edgeflower.data.split import load_manifest
    from edgeflower.edge.classifier import Classifier
    from edgeflower.edge.preprocess import resize_of
    from edgeflower.keras_io import load_keras_model, predict_probs, resolve_run

    model_path, cfg = resolve_run(str(run))
    manifest = load_manifest(cfg.get("split"))
    root = resolve_data_dir(cfg.get("data_dir"))
    model = load_keras_model(model_path)
    size = int(model.inputs[0].shape[1])
    parts = [load_split(root, manifest, s, size, resize=resize_of(cfg)) for s in ("val", "test")]
    x = np.concatenate([p.x for p in parts])
    y = np.concatenate([p.y for p in parts])
    split = np.array(["val"] * len(parts[0]) + ["test"] * len(parts[1]))
    out = {"y": y, "split": split, "keras": predict_probs(model, x).argmax(1), "artifacts": {},
           "dataset": Path(root).name}
    for art in sorted((run / "export").glob("model*_int8.*")) + sorted((run / "export").glob("model_int8.*")):
        if art.suffix in (".tflite", ".onnx") and art.name not in out["artifacts"]:
            clf = Classifier(art, threshold=0.0)
            out["artifacts"][art.name] = clf.score_batch(x)[0].argmax(1)
    np.savez(cache, y=y, split=split, keras=out["keras"], dataset=out["dataset"],
             **{f"art:{k}": v for k, v in out["artifacts"].items()})
    return out


def degrade(pred: np.ndarray, y: np.ndarray, extra_pts: float, rng: np.random.Generator) -> np.ndarray:
    """The artifact's answers with a random share of its right answers turned wrong: ``extra_pts`` more drop."""
    pred = pred.copy()
    right = np.nonzero(pred == y)[0]
    k = int(round(extra_pts / 100 * len(y)))
    flip = rng.choice(right, size=min(k, len(right)), replace=False)
    pred[flip] = (y[flip] + 1) % (y.max() + 1)
    return pred


def resample_rates(y, ref, art, n: int, rounds: int, judge, seed: int = 0) -> float:
    """Share of ``rounds`` stratified bootstrap sets of ``n`` photos on which ``judge`` fails the artifact."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    per = {c: max(1, round(n * (y == c).mean())) for c in classes}
    fails = 0
    for _ in range(rounds):
        idx = np.concatenate([rng.choice(np.nonzero(y == c)[0], size=per[c], replace=True) for c in classes])
        fails += not judge(y[idx], ref[idx], art[idx])
    return fails / rounds


def measure(runs: list[str], rounds: int, max_drop: float, zs: list[float]) -> dict:
    """False-fail and false-pass rates of the rule at each z in ``zs``, and of the old rule, per int8 artifact."""
    from edgeflower.exporting.gate import judge

    def old_rule(yy, rr, aa):
        return ((rr == yy).mean() - (aa == yy).mean()) * 100 <= max_drop + 1e-9

    out = []
    for run in runs:
        p = pooled_predictions(Path(run))
        y, ref = p["y"], p["keras"]
        n_val, n_test = int((p["split"] == "val").sum()), int((p["split"] == "test").sum())
        for name, art in p["artifacts"].items():
            rng = np.random.default_rng(1)
            pool_drop = ((ref == y).mean() - (art == y).mean()) * 100
            worse = {extra: degrade(art, y, max_drop + extra - pool_drop, rng) for extra in (1.0, 2.0)}
            row = {"run": run, "dataset": p["dataset"], "artifact": name, "pool_photos": len(y), "val_photos": n_val,
                   "test_photos": n_test,
                   "pool_drop_pts": round(float(pool_drop), 3),
                   "pool_agreement": round(float((art == ref).mean()), 4),
                   "old_rule_test": {"false_fail": resample_rates(y, ref, art, n_test, rounds, old_rule)
                                     if pool_drop <= max_drop else None,
                                     **{f"false_pass_plus{e:g}": 1 - resample_rates(y, ref, w, n_test, rounds,
                                                                                    old_rule)
                                        for e, w in worse.items()}},
                   "rule_val": {}}
            for z in zs:
                def rule(yy, rr, aa, z=z):
                    return judge(rr == yy, aa == yy, rr, aa, max_drop, z=z).passed

                row["rule_val"][f"{z:g}"] = {
                    "false_fail": resample_rates(y, ref, art, n_val, rounds, rule) if pool_drop <= max_drop else None,
                    **{f"false_pass_plus{e:g}": 1 - resample_rates(y, ref, w, n_val, rounds, rule)
                       for e, w in worse.items()}}
            out.append(row)
            print(name, run, row["old_rule_test"], row["rule_val"], flush=True)
    return {"suite": "gate", "command": " ".join(sys.argv), "max_drop_pts": max_drop, "rounds": rounds,
            "z_values": zs, "rows": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    d = sub.add_parser("dataset", help="the scenes dataset from a git copy of " + SCENES_REPO)
    d.add_argument("--git", required=True, help=f"a clone or mirror of {SCENES_REPO}")
    d.add_argument("--per-class", type=int, default=420)
    d.add_argument("--out", default="runs/datasets/scenes6")
    m = sub.add_parser("measure", help="false-fail and false-pass rates of the rule on real exports")
    m.add_argument("runs", nargs="+")
    m.add_argument("--rounds", type=int, default=2000)
    m.add_argument("--max-drop", type=float, default=1.0)
    m.add_argument("--z", default="1,1.28,1.645", help="the rule's margins to measure, in standard errors "
                   "(the shipped one is gate.Z)")
    m.add_argument("--results", default=str(RESULTS / "gate.json"))
    a = ap.parse_args()
    if a.what == "dataset":
        print(build_dataset(a.git, Path(a.out), a.per_class))
    else:
        write_json(a.results, measure(a.runs, a.rounds, a.max_drop, [float(z) for z in a.z.split(",")]))
        print(f"written {a.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
