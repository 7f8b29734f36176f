"""Make the small model, artifacts and images that scripts/pi-emulated-check.sh compares across machines.

    python scripts/pi_fixture.py OUT_DIR [--data DIR]

Trains the study's CNN at 64x64 for two epochs on 10 photos per class of the frozen split (synthetic colour
images when the dataset is not available), exports float and int8 TFLite and ONNX without the accuracy gate
(the point is equality across machines, not accuracy), and copies a handful of real test photos.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--data", default=None)
    ap.add_argument("--images", type=int, default=12)
    args = ap.parse_args()
    os.environ.setdefault("EDGEFLOWER_NO_PROGRESS", "1")
    from edgeflower.data.source import resolve_data_dir
    from edgeflower.data.split import load_manifest, split_items
    from edgeflower.export.pipeline import ExportConfig, export
    from edgeflower.train.loop import TrainConfig, train

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    root = resolve_data_dir(args.data, download=False)
    r = train(TrainConfig(model="cnn", data=str(root), out=str(out / "run"), epochs=2, input_size=64,
                          limit_per_class=10, verbose=0))
    export(ExportConfig(target=str(r.run_dir), out=str(out / "export"), int8=True, onnx=True, calibration=20,
                        data=str(root), limit_per_class=4, max_drop=100.0, require_float_agreement=False))
    items = split_items(load_manifest(), "test")
    step = max(1, len(items) // args.images)
    for rel, _, _ in items[::step][: args.images]:
        shutil.copy(root / rel, out / "images" / rel.replace("/", "__"))
    print(out)


if __name__ == "__main__":
    main()
