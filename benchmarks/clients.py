"""Exported .tflite artifacts in MediaPipe Tasks' ImageClassifier, against edgeflower's runtime, on the test set.

    python -m benchmarks.clients runs/main/train [more runs...]

For each run's exported ``model_float.tflite`` and ``model_int8.tflite``, on the frozen test photos:
- "same pixels": MediaPipe gets edgeflower's preprocessed pixels (already the model's size, so it resizes nothing):
  top-1 agreement and the largest score difference. This is the artifact's own contract and must be exact (within
  one output step for int8).
- "MediaPipe resizes": MediaPipe gets the decoded photo at its own size and resizes it itself, as an app would;
  how often its top-1 differs from `edgeflower classify` (Pillow's bilinear resize with antialiasing), and the test
  accuracy each way. A difference here is not a fault of the artifact, but a user should know its size.
Writes benchmarks/results/clients.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import RESULTS
from edgeflower.util.env import environment
from edgeflower.util.files import write_json
from edgeflower.util.progress import progress


def _mediapipe(path: Path):
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core import base_options

    return vision.ImageClassifier.create_from_options(vision.ImageClassifierOptions(
        base_options=base_options.BaseOptions(model_asset_path=str(path)), max_results=-1))


def _scores(result, labels: list[str]) -> np.ndarray:
    got = {c.category_name: c.score for c in result.classifications[0].categories}
    return np.array([got[lab] for lab in labels], np.float32)


def measure(artifact: Path, root: Path, paths: list[str], y: np.ndarray) -> dict:
    import mediapipe as mp

    from edgeflower.edge import Classifier
    from edgeflower.edge.preprocess import open_image

    clf = Classifier(artifact)
    labels = clf.labels
    ours, same, resized = [], [], []
    with _mediapipe(artifact) as mpc:
        for rel in progress(paths, total=len(paths), desc=artifact.name):
            img = open_image(root / rel)
            px = clf.preprocess(img)
            ours.append(clf.scores(px)[0][0])
            same.append(_scores(mpc.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=px)), labels))
            full = np.ascontiguousarray(np.asarray(img, np.uint8))
            resized.append(_scores(mpc.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=full)), labels))
    ours, same, resized = np.array(ours), np.array(same), np.array(resized)
    top, top_same, top_resized = ours.argmax(1), same.argmax(1), resized.argmax(1)
    out = clf.backend.output
    return {
        "images": len(paths),
        "output_step": out.scale if out.quantized else None,
        "same_pixels": {"top1_agreement": float((top == top_same).mean()),
                        "max_abs_score_difference": float(np.abs(ours - same).max())},
        "mediapipe_resizes": {"top1_changed": int((top != top_resized).sum()),
                              "top1_changed_share": float((top != top_resized).mean()),
                              "max_abs_score_difference": float(np.abs(ours - resized).max()),
                              "changed": [{"path": paths[i], "true": labels[y[i]], "edgeflower": labels[top[i]],
                                           "mediapipe": labels[top_resized[i]]}
                                          for i in np.nonzero(top != top_resized)[0]]},
        "edgeflower_accuracy": float((top == y).mean()),
        "mediapipe_resized_accuracy": float((top_resized == y).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--results", default=str(RESULTS / "clients.json"))
    args = ap.parse_args()
    from edgeflower.data.source import resolve_data_dir
    from edgeflower.data.split import load_manifest, split_items

    out = {"command": "python -m benchmarks.clients " + " ".join(sys.argv[1:]), "runs": {}}
    for run in map(Path, args.runs):
        cfg = json.loads((run / "config.json").read_text())
        root = resolve_data_dir(cfg["data_dir"])
        manifest = load_manifest(cfg.get("split"))
        items = split_items(manifest, "test")
        paths = [rel for rel, _, _ in items]
        y = np.array([label for _, label, _ in items])
        row = {"model": cfg.get("model")}
        for name in ("model_float.tflite", "model_int8.tflite"):
            row[name] = measure(run / "export" / name, root, paths, y)
            r = row[name]
            print(f"{run.name}/{name}: same pixels {r['same_pixels']['top1_agreement'] * 100:.1f}% top-1 agree "
                  f"(max diff {r['same_pixels']['max_abs_score_difference']:.6f}); MediaPipe's resize changes "
                  f"{r['mediapipe_resizes']['top1_changed']} of {r['images']} top-1 "
                  f"(accuracy {r['edgeflower_accuracy'] * 100:.2f}% edgeflower, "
                  f"{r['mediapipe_resized_accuracy'] * 100:.2f}% MediaPipe resizing)", flush=True)
        out["runs"][str(run)] = row
    out["date"] = time.strftime("%Y-%m-%d")
    out["environment"] = environment(("numpy", "pillow", "ai-edge-litert", "mediapipe", "edgeflower"))
    write_json(args.results, out)


if __name__ == "__main__":
    main()
