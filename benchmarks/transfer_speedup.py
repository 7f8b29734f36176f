"""How much faster is training the head on cached backbone features than `model.fit` on the whole frozen model?

    python benchmarks/transfer_speedup.py [--data DIR] [--images 320]

Times, on the same images in one process: one epoch of plain `model.fit` on the assembled MobileNetV2 model
(backbone frozen, so only the head learns: the same learning problem), the one-off feature extraction, and one
epoch of the head on the cached features. Extrapolates to 20 epochs on the full training split (2572 images).
Writes benchmarks/results/transfer_speedup.json. About 2 minutes on the 2-core dev machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeflower._env import environment  # noqa: E402
from edgeflower._util import write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--images", type=int, default=320)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    import keras
    import numpy as np
    import tensorflow as tf

    from edgeflower.data.arrays import load_split
    from edgeflower.data.source import resolve_data_dir
    from edgeflower.data.split import load_manifest
    from edgeflower.train.loop import extract_features
    from edgeflower.train.models import get_spec

    m = load_manifest()
    tr = load_split(resolve_data_dir(args.data), m, "train", 224)
    x, y = tr.x[: args.images], keras.utils.to_categorical(tr.y[: args.images], 5)
    built = get_spec("mobilenet_v2").build(5)
    built.model.compile(optimizer="adam", loss="categorical_crossentropy")
    built.model.fit(x[:64].astype("float32"), y[:64], batch_size=32, epochs=1, verbose=0)  # compile/warm-up
    plain = []
    for _ in range(2):
        t = time.perf_counter()
        built.model.fit(x.astype("float32"), y, batch_size=32, epochs=1, verbose=0)
        plain.append(time.perf_counter() - t)
    t = time.perf_counter()
    f = extract_features(tf, built.features, x, 64)
    feat = time.perf_counter() - t
    built.head.compile(optimizer="adam", loss="categorical_crossentropy")
    built.head.fit(f[:64], y[:64], batch_size=32, epochs=1, verbose=0)
    head = []
    for _ in range(5):
        t = time.perf_counter()
        built.head.fit(f, y, batch_size=32, epochs=1, verbose=0)
        head.append(time.perf_counter() - t)
    scale = len(tr.x) / args.images
    plain_ep, feat_all, head_ep = statistics.median(plain) * scale, feat * scale, statistics.median(head) * scale
    res = {
        "command": "python benchmarks/transfer_speedup.py",
        "images_timed": args.images, "train_images": len(tr.x),
        "plain_fit_epoch_s": plain_ep, "feature_extraction_s": feat_all, "head_epoch_s": head_ep,
        "plain_20_epochs_s": plain_ep * args.epochs, "cached_20_epochs_s": feat_all + head_ep * args.epochs,
        "speedup_20_epochs": plain_ep * args.epochs / (feat_all + head_ep * args.epochs),
        "note": "medians of repeated epochs on the first N training images, scaled to the full split",
        "environment": environment(), "date": time.strftime("%Y-%m-%d"),
    }
    write_json(ROOT / "benchmarks/results/transfer_speedup.json", res)
    print({k: v for k, v in res.items() if k != "environment"})
    assert np.isfinite(res["speedup_20_epochs"])


if __name__ == "__main__":
    main()
