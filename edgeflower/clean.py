"""`edgeflower data clean`: flag photos a person should review, and write an exclusion list training can use.

Findings:
- byte-identical duplicates and near-duplicates (dHash + thumbnail correlation), photos filed under two classes;
- likely mislabeled photos: out-of-fold predictions of a classifier on ImageNet MobileNetV2 features (k folds,
  each photo predicted by a model that never saw it) that disagree with the folder's label with high confidence;
- likely off-topic photos: out-of-fold predictions with low confidence for every class.
The frozen test set is never excluded (it stays the study's); its photos are scored and reported only.
Nothing is deleted or moved: the output is a report, a contact sheet PNG and ``exclude.txt``.

Its own layer, above ``train``: it works on the dataset like ``data``, but it needs a model's features and
trains classifiers on them, which ``data`` (no TensorFlow, so that the device can import it) must not.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeflower.data.arrays import load_split
from edgeflower.data.check import check_dataset
from edgeflower.data.source import resolve_data_dir
from edgeflower.data.split import load_manifest
from edgeflower.util.deps import require
from edgeflower.util.files import atomic_path, atomic_write_text, write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CleanConfig:
    data: str | None = None
    out: str = "runs/clean"
    folds: int = 5
    mislabel_confidence: float = 0.9  # out-of-fold probability of another class
    offtopic_confidence: float = 0.4  # highest out-of-fold probability below this
    seed: int = 0
    limit_per_class: int | None = None
    weights: str | None = "imagenet"
    input_size: int = 224
    split: str | None = None  # split manifest (default: the frozen flower_photos split)
    features: str = "mobilenet_v2"  # or "pixels": 8x8 colour thumbnails (no backbone weights needed)


def out_of_fold_probs(feats: np.ndarray, y: np.ndarray, n_classes: int, folds: int, seed: int) -> np.ndarray:
    """Each row predicted by a softmax classifier trained on the other folds (stratified)."""
    keras = require("keras", "data clean")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=int)
    for c in range(n_classes):
        idx = rng.permutation(np.nonzero(y == c)[0])
        fold[idx] = np.arange(len(idx)) % folds
    probs = np.zeros((len(y), n_classes), np.float32)
    mu, sd = feats.mean(0), feats.std(0) + 1e-6
    z = (feats - mu) / sd
    for k in range(folds):
        tr, te = fold != k, fold == k
        keras.utils.set_random_seed(seed + k)
        m = keras.Sequential([keras.Input((z.shape[1],)), keras.layers.Dropout(0.3),
                              keras.layers.Dense(n_classes, activation="softmax",
                                                 kernel_regularizer=keras.regularizers.l2(1e-3))])
        m.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
        m.fit(z[tr], y[tr], epochs=15, batch_size=64, verbose=0)
        probs[te] = np.asarray(m(z[te]))
    return probs


def pixel_features(x: np.ndarray, grid: int = 8, batch: int = 256) -> np.ndarray:
    """Mean colour of each cell of a grid x grid partition: a crude but weight-free image descriptor."""
    n, h, w, _ = x.shape
    hh, ww = h // grid * grid, w // grid * grid
    out = np.zeros((n, grid * grid * 3), np.float32)
    for s in range(0, n, batch):  # a batch at a time: x may be an on-disk store
        xb = np.asarray(x[s:s + batch])[:, :hh, :ww]
        cells = xb.reshape(len(xb), grid, hh // grid, grid, ww // grid, 3).mean(axis=(2, 4))
        out[s:s + len(xb)] = cells.reshape(len(xb), -1) / 255.0
    return out


def clean(cfg: CleanConfig) -> dict:
    tf = require("tensorflow", "data clean")
    from edgeflower.training.loop import extract_features
    from edgeflower.training.models import get_spec

    root = resolve_data_dir(cfg.data)
    manifest = load_manifest(cfg.split)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    report_check = check_dataset(root).to_dict()
    parts = {s: load_split(root, manifest, s, cfg.input_size, limit_per_class=cfg.limit_per_class)
             for s in ("train", "val", "test")}
    if cfg.features == "pixels":
        feats = {s: pixel_features(a.x) for s, a in parts.items()}
    else:
        built = get_spec(cfg.features).build(len(manifest.classes), input_size=cfg.input_size,
                                             weights=None if cfg.weights in (None, "none") else cfg.weights)
        feats = {s: extract_features(tf, built.features, a.x, 64, desc=f"{s} features") for s, a in parts.items()}
    # out-of-fold over train+val (the photos training may use); the test photos are scored by a model on all of them
    tv_x = np.concatenate([feats["train"], feats["val"]])
    tv_y = np.concatenate([parts["train"].y, parts["val"].y])
    tv_paths = parts["train"].paths + parts["val"].paths
    n = len(manifest.classes)
    oof = out_of_fold_probs(np.concatenate([tv_x, feats["test"]]),
                            np.concatenate([tv_y, parts["test"].y]), n, cfg.folds, cfg.seed)
    paths = tv_paths + parts["test"].paths
    y = np.concatenate([tv_y, parts["test"].y])
    in_test = np.array([False] * len(tv_paths) + [True] * len(parts["test"].paths))
    flags = []
    for i, p in enumerate(paths):
        pred = int(oof[i].argmax())
        conf = float(oof[i].max())
        reason = None
        if pred != y[i] and conf >= cfg.mislabel_confidence:
            reason = "likely mislabeled"
        elif conf < cfg.offtopic_confidence:
            reason = "likely off-topic or ambiguous"
        if reason:
            flags.append({"path": p, "label": manifest.classes[y[i]], "predicted": manifest.classes[pred],
                          "confidence": round(conf, 4), "label_prob": round(float(oof[i, y[i]]), 4),
                          "reason": reason, "split": "test" if in_test[i] else "train/val"})
    flags.sort(key=lambda f: f["label_prob"])
    dup_exclude = set()
    split_of = {p: s for s in ("train", "val", "test") for p, _ in manifest.splits[s]}
    for g in report_check["identical_duplicates"]:
        dup_exclude.update(p for p in g[1:] if split_of.get(p) in ("train", "val"))
    for nd in report_check["near_duplicates"]:
        if split_of.get(nd["b"]) in ("train", "val"):
            dup_exclude.add(nd["b"])
    exclude = sorted({f["path"] for f in flags if f["split"] == "train/val"} | dup_exclude)
    atomic_write_text(out / "exclude.txt", "# photos to leave out of training (edgeflower data clean); "
                      "review the contact sheet first\n" + "\n".join(exclude) + "\n")
    sheet = contact_sheet(root, flags[:60], out / "contact_sheet.png")
    result = {
        "data": str(root), "config": cfg.__dict__, "counts": report_check["counts"],
        "identical_duplicates": report_check["identical_duplicates"],
        "cross_class_duplicates": report_check["cross_class_duplicates"],
        "near_duplicates": report_check["near_duplicates"],
        "flagged": flags, "flagged_counts": {r: sum(f["reason"] == r for f in flags)
                                             for r in ("likely mislabeled", "likely off-topic or ambiguous")},
        "exclude": exclude, "contact_sheet": str(sheet) if sheet else None,
        "out_of_fold_accuracy": float((oof.argmax(1) == y).mean()),
    }
    write_json(out / "clean_report.json", result)
    return result


def contact_sheet(root: Path, flags: list[dict], path: Path) -> Path | None:
    """Thumbnails of flagged photos with folder label, predicted class and confidence, for a person to review."""
    if not flags:
        return None
    try:
        matplotlib = require("matplotlib", "the contact sheet")
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    from edgeflower.edge.preprocess import preprocess

    cols = 8
    rows = (len(flags) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.9, rows * 2.25), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, f in zip(axes.flat, flags):
        ax.imshow(preprocess(root / f["path"], 160, "bilinear"))  # for eyes: smooth
        ax.set_title(f"{f['label']} -> {f['predicted']}\n{f['confidence'] * 100:.0f}% {f['reason'].split()[1]}"
                     f"{' [test]' if f['split'] == 'test' else ''}", fontsize=6.5)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    plt.close(fig)
    return path
