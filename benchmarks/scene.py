"""The background class from the user's own scene (`edgeflower train --background DIR`), measured on held-out frames.

    python -m benchmarks.scene frames [--out runs/bench/scene_frames]      # make the frames
    python -m benchmarks.scene measure RUN [--frames runs/bench/scene_frames]  # after train --background + export

A Pi camera watches one place. A "scene" here is one photo of a place without flowers (from Debian's wallpaper
packages, benchmarks/negatives.py, held-out role: a mountain meadow, a forest stream, a living room); a camera's
frames of it are made as seeded crops of 75-95% of the photo at a random position, with brightness and contrast
changes of up to 25% and sensor noise, at 320x240 (the runtime's default capture size). Two disjoint seeded sets:
- ``train/``: 40 frames per scene, the folder for ``edgeflower train --background`` (which keeps 20% each for its
  own val and test splits);
- ``held_out/``: 40 other frames per scene, never seen by training or export, only measured here.

The three scene photos are also in benchmarks/unknown.py's held-out set, so a model trained on these frames must
not be measured there (its held-out figure would count its own scenes).

``measure`` classifies the held-out frames with every artifact of RUN/export (the device's own rule: background
class, similarity and confidence) and the frozen 360-image flower test set, with and without the rule (an `unknown`
flower counted wrong). Writes benchmarks/results/scene.json. Numpy and Pillow for the frames; the runtime for the
measurement.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import RESULTS, ROOT
from edgeflower._env import environment
from edgeflower._util import write_json

SCENES = ["lomiri-wallpapers-16.04__aitzgorri_by_Aitzol_Berasategi.jpg",  # mountain meadow
          "lomiri-wallpapers-16.04__life_by_Aitzol_Berasategi.jpg",  # forest stream
          "lomiri-wallpapers-16.04__Wine_by_Jakkub_Mede.jpg"]  # living room
FRAMES = {"train": 40, "held_out": 40}
SEEDS = {"train": 1, "held_out": 2}
SIZE = (320, 240)


def frame(im, rng: random.Random, nrng: np.random.Generator):
    """One camera frame of the scene: a crop at a random place, a brightness/contrast change, sensor noise."""
    from PIL import Image

    w, h = im.size
    f = rng.uniform(0.75, 0.95)
    cw, ch = int(w * f), int(w * f * SIZE[1] / SIZE[0])
    if ch > h:
        ch, cw = h, int(h * SIZE[0] / SIZE[1])
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    x = np.asarray(im.crop((x0, y0, x0 + cw, y0 + ch)).resize(SIZE, Image.BILINEAR), np.float32)
    gain, contrast = rng.uniform(0.75, 1.25), rng.uniform(0.8, 1.2)
    x = (x - x.mean()) * contrast + x.mean() * gain + nrng.normal(0, 4, x.shape)
    return Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))


def make_frames(out: Path, debs: str | None = None) -> dict:
    from PIL import Image

    from benchmarks.collect import negatives

    photos = {Path(o["path"]).name: o for o in negatives.images("held_out", debs=debs)}
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    index = {"command": "python -m benchmarks.scene frames"
             + ("" if out == ROOT / "runs/bench/scene_frames" else f" --out {shown}"), "scenes": []}
    for split, n in FRAMES.items():
        rng, nrng = random.Random(SEEDS[split]), np.random.default_rng(SEEDS[split])
        for scene in SCENES:
            o = photos[scene]
            im = Image.open(o["path"]).convert("RGB")
            d = out / split / Path(scene).stem
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                frame(im, rng, nrng).save(d / f"{i:03d}.jpg", quality=90)
            if split == "train":
                index["scenes"].append({"file": scene, "what": o["what"], "licence": o["licence"],
                                        "package": o["package"]})
    write_json(out / "index.json", index)
    return index


def measure(run: Path, frames: Path) -> dict:
    from benchmarks.unknown import answers
    from edgeflower.edge import UNKNOWN, Classifier

    report = json.loads((run / "export" / "export_report.json").read_text())
    cfg = json.loads((run / "config.json").read_text())
    out = {"command": "python -m benchmarks.scene measure " + " ".join(sys.argv[2:]), "run": str(run),
           "background": cfg.get("background", {}).get("dir") if cfg.get("background") else None,
           "frames": json.loads((frames / "index.json").read_text()), "artifacts": []}
    from edgeflower.data.arrays import load_split
    from edgeflower.data.source import resolve_data_dir
    from edgeflower.data.split import load_manifest

    held = sorted((frames / "held_out").rglob("*.jpg"))
    test = None
    for art in report["artifacts"]:
        path = run / "export" / art["name"]
        clf = Classifier(path, threads=2)
        if test is None:  # the frozen flower test set alone (the export report's test set also holds background)
            test = load_split(resolve_data_dir(None, download=False), load_manifest(), "test", clf.input_size[0])
        correct, unknown, _ = answers(clf, test)
        labels = [clf.classify(p).label for p in held]
        per_scene: dict[str, list[bool]] = {}
        for p, lab in zip(held, labels):
            per_scene.setdefault(p.parent.name, []).append(lab == UNKNOWN)
        unk = art.get("unknown") or {}
        row = {"artifact": art["name"], "held_out_frames": len(held),
               "held_out_rejected": float(np.mean([lab == UNKNOWN for lab in labels])),
               "by_scene": {k: float(np.mean(v)) for k, v in per_scene.items()},
               "answers": {lab: labels.count(lab) for lab in sorted(set(labels))},
               "flower_test_accuracy_without_rejection": float(correct.mean()),
               "flower_test_accuracy_with_rejection": float((correct & ~unknown).mean()),
               "flower_test_answered_unknown": float(unknown.mean()),
               "export_report_test": unk.get("test")}
        row["flower_test_drop_pts"] = (row["flower_test_accuracy_without_rejection"]
                                       - row["flower_test_accuracy_with_rejection"]) * 100
        out["artifacts"].append(row)
        print(f"{art['name']}: held-out scene frames answered unknown {row['held_out_rejected'] * 100:.1f}% "
              f"({len(held)} frames; {row['by_scene']}); flower test "
              f"{row['flower_test_accuracy_without_rejection'] * 100:.2f}% -> "
              f"{row['flower_test_accuracy_with_rejection'] * 100:.2f}%", flush=True)
    out["environment"] = environment()
    out["date"] = time.strftime("%Y-%m-%d")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("frames")
    f.add_argument("--out", type=Path, default=ROOT / "runs/bench/scene_frames")
    f.add_argument("--debs", default=None)
    m = sub.add_parser("measure")
    m.add_argument("run", type=Path)
    m.add_argument("--frames", type=Path, default=ROOT / "runs/bench/scene_frames")
    m.add_argument("--results", default=str(RESULTS / "scene.json"))
    args = ap.parse_args()
    if args.cmd == "frames":
        index = make_frames(args.out, args.debs)
        print(f"{len(index['scenes'])} scenes: frames in {args.out}/train (for --background) and {args.out}/held_out")
    else:
        write_json(args.results, measure(args.run, args.frames))


if __name__ == "__main__":
    main()
