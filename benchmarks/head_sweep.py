"""Choose the transfer head's learning rate and label smoothing on the VALIDATION split (the test set is not used).

    python benchmarks/head_sweep.py [--data DIR] [--model mobilenet_v2] [--views 4]

Features of the training split (clean + augmented views) and of the validation split are computed once with the
frozen backbone, then each setting trains the head with early stopping on val loss. Writes
benchmarks/results/head_sweep_<model>.json. About 6 minutes for MobileNetV2 on the 2-core dev machine.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeflower._env import environment  # noqa: E402
from edgeflower._util import write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    import keras
    import tensorflow as tf

    from edgeflower.data.arrays import load_split
    from edgeflower.data.source import resolve_data_dir
    from edgeflower.data.split import load_manifest
    from edgeflower.train.loop import augmenter, extract_features
    from edgeflower.train.models import get_spec

    keras.utils.set_random_seed(args.seed)
    spec = get_spec(args.model)
    root, manifest = resolve_data_dir(args.data), load_manifest()
    tr = load_split(root, manifest, "train", spec.input_size)
    va = load_split(root, manifest, "val", spec.input_size)
    built = spec.build(len(manifest.classes))
    t0 = time.perf_counter()
    f_clean = extract_features(tf, built.features, tr.x, 64)
    aug = augmenter(keras, args.seed)
    f_aug = [extract_features(tf, built.features, tr.x, 64, aug=aug) for _ in range(args.views)]
    f_va = extract_features(tf, built.features, va.x, 64)
    feat_s = time.perf_counter() - t0
    n = len(manifest.classes)
    y_va = keras.utils.to_categorical(va.y, n)
    rows = []
    for lr, ls, use_aug in itertools.product((1e-3, 3e-4, 1e-4), (0.0, 0.1), (False, True)):
        keras.utils.set_random_seed(args.seed)
        head = keras.models.clone_model(built.head)  # fresh weights, same architecture
        fx = np.concatenate([f_clean] + (f_aug if use_aug else []))
        fy = np.concatenate([tr.y] * (1 + (len(f_aug) if use_aug else 0)))
        head.compile(optimizer=keras.optimizers.Adam(lr),
                     loss=keras.losses.CategoricalCrossentropy(label_smoothing=ls), metrics=["accuracy"])
        h = head.fit(fx, keras.utils.to_categorical(fy, n), batch_size=32, epochs=40, verbose=0,
                     validation_data=(f_va, y_va), shuffle=True,
                     callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=5,
                                                              restore_best_weights=True)])
        p = np.asarray(head(f_va))
        acc = float((p.argmax(1) == va.y).mean())
        rows.append({"lr": lr, "label_smoothing": ls, "augment": use_aug, "val_accuracy": acc,
                     "epochs": len(h.history["loss"])})
        print(rows[-1], flush=True)
    best = max(rows, key=lambda r: r["val_accuracy"])
    write_json(ROOT / f"benchmarks/results/head_sweep_{args.model}.json",
               {"model": args.model, "views": args.views, "features_seconds": feat_s, "rows": rows, "best": best,
                "selection": "highest validation accuracy; the test split is not touched",
                "environment": environment()})
    print("best", best)


if __name__ == "__main__":
    main()
