"""Which head trains the outlier photos in best? Variants of make main's head, chosen on the VALIDATION split only.

    python -m benchmarks.outlier_heads features [--out runs/bench/outlier_features.npz]   # once, about 6 minutes
    python -m benchmarks.outlier_heads compare [--features FILE] [--seeds 3]             # a minute per variant

make main's head (EfficientNet-Lite0, frozen, Dense 1024 + dropout 0.3, label smoothing 0.1, 4 augmented views)
is trained on cached features of the flower photos and the development part of the outlier set
(edgeflower.data.outliers: train and val; the held-out sources are never read here). Each variant is scored on
the validation split: the flower photos' accuracy without any unknown answer (the top of the five classes), the
share of flower photos the background class takes, and the share of the validation outlier photos it takes. The
held-out part and the test photos are not read: the chosen variant is reported by benchmarks/outliers.py.

Writes benchmarks/results/outlier_heads.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks import RESULTS, command
from edgeflower._env import environment
from edgeflower._util import write_json

FEATURES = Path("runs/bench/outlier_features.npz")


def features(out: Path) -> None:
    import keras

    from edgeflower._deps import require
    from edgeflower.train.loop import TrainConfig, _add_background, _settings, augmenter, extract_features, load_data

    tf = require("tensorflow", "training")
    cfg = TrainConfig(model="efficientnet_lite0", augment=True, label_smoothing=0.1)
    st = _settings(cfg)
    root, _, arrays, background = load_data(cfg, st.size, print)
    keras.utils.set_random_seed(cfg.seed)
    built = st.spec.build(len(arrays["train"].classes) + 1, input_size=st.size, weights="imagenet")
    arrays = _add_background(tf, built, arrays, background, root, st.size, print)
    tr, va = arrays["train"], arrays["val"]
    aug = augmenter(keras, cfg.seed)
    views = [extract_features(tf, built.features, tr.x, desc="train features")]
    for v in range(cfg.aug_views):
        views.append(extract_features(tf, built.features, tr.x, aug=aug, desc=f"augmented view {v + 1}"))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, train=np.stack(views), y_train=tr.y, val=extract_features(tf, built.features, va.x, desc="val"),
             y_val=va.y, classes=np.array(tr.classes))


def train_head(f: dict, variant: dict, seed: int) -> np.ndarray:
    """Train a head like make main's on the cached features; returns the validation probabilities."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    n_classes = len(f["classes"])
    bg = n_classes - 1
    x, y = f["train"].reshape(-1, f["train"].shape[-1]), np.tile(f["y_train"], f["train"].shape[0])
    if not variant.get("outliers", True):
        keep = y != bg
        x, y = x[keep], y[keep]
    w = np.where(y == bg, variant.get("bg_weight", 1.0), 1.0).astype(np.float32)
    inp = keras.Input((x.shape[1],))
    h = layers.Dense(variant.get("units", 1024), activation="relu")(inp)
    h = layers.Dropout(variant.get("dropout", 0.3))(h)
    model = keras.Model(inp, layers.Dense(n_classes, activation="softmax")(h))
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=variant.get("ls", 0.1)))
    vx, vy = f["val"], f["y_val"]
    vkeep = np.ones(len(vy), bool) if variant.get("outliers", True) else vy != bg
    model.fit(x, keras.utils.to_categorical(y, n_classes), sample_weight=w, batch_size=32, epochs=40,
              validation_data=(vx[vkeep], keras.utils.to_categorical(vy[vkeep], n_classes)), verbose=0, shuffle=True,
              callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True)])
    return model.predict(vx, verbose=0)


def scores(f: dict, probs: np.ndarray) -> dict:
    bg = len(f["classes"]) - 1
    y = f["y_val"]
    flowers = y != bg
    top5 = probs[:, :bg].argmax(1)
    return {"val_flower_accuracy": float((top5 == y)[flowers].mean()),
            "val_flowers_to_background": float((probs.argmax(1) == bg)[flowers].mean()),
            "val_outliers_to_background": float((probs.argmax(1) == bg)[~flowers].mean())}


VARIANTS = {
    "no_outliers": {"outliers": False},
    "background_class": {},
    "bg_weight_0.5": {"bg_weight": 0.5},
    "bg_weight_0.25": {"bg_weight": 0.25},
    "no_label_smoothing": {"ls": 0.0},
    "dropout_0.5": {"dropout": 0.5},
}


def compare(path: Path, seeds: int, names: list[str] | None) -> None:
    f = dict(np.load(path))
    res = {"command": command("benchmarks.outlier_heads"), "features": str(path), "variants": {}}
    for name in names or VARIANTS:
        runs = [scores(f, train_head(f, VARIANTS[name], 100 + s)) for s in range(seeds)]
        row = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
        row["seeds"] = runs
        res["variants"][name] = {"options": VARIANTS[name], **row}
        print(f"{name}: val flowers {row['val_flower_accuracy'] * 100:.2f}%, flowers to background "
              f"{row['val_flowers_to_background'] * 100:.2f}%, val outliers to background "
              f"{row['val_outliers_to_background'] * 100:.1f}%", flush=True)
    res["environment"] = environment()
    res["date"] = time.strftime("%Y-%m-%d")
    write_json(RESULTS / "outlier_heads.json", res)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("features")
    a.add_argument("--out", type=Path, default=FEATURES)
    b = sub.add_parser("compare")
    b.add_argument("--features", type=Path, default=FEATURES)
    b.add_argument("--seeds", type=int, default=3)
    b.add_argument("--variants", default=None, help="comma-separated names (default: all)")
    args = ap.parse_args()
    if args.cmd == "features":
        features(args.out)
    else:
        compare(args.features, args.seeds, args.variants.split(",") if args.variants else None)


if __name__ == "__main__":
    main()
