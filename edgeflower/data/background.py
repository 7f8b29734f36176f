"""A background class from the user's own scene: photos of the place the camera watches, with no flower in them.

A Pi camera watches one place; a few dozen photos (or video frames) of that place without a flower are the
strongest negative there is. ``edgeflower train --background DIR`` adds them as one more class, ``background``,
split train / val / test by a seeded shuffle of the file names (recorded in the run's config, so export and eval
use the same photos); the exported artifacts name the class in their metadata and the device answers ``unknown``
for it. Numpy and Pillow only.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

from edgeflower.data.arrays import SplitArrays
from edgeflower.data.store import join_rows
from edgeflower.edge.preprocess import RESIZE, image_files, preprocess
from edgeflower.errors import DataError
from edgeflower.util.files import sha256_file
from edgeflower.util.progress import progress

BACKGROUND = "background"
MIN_PHOTOS = 5  # at least one for each of val and test, and three to train on
FRACTIONS = {"val": 0.2, "test": 0.2}


def split_background(folder: str | os.PathLike, seed: int = 1337) -> dict[str, list[tuple[str, str]]]:
    """{split: [(path relative to the folder, sha256)]}: about 60 / 20 / 20, every split non-empty."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"--background {root}: not a folder (expected photos of the camera's scene without flowers)")
    files = sorted(p.relative_to(root).as_posix() for p in image_files(root))
    if len(files) < MIN_PHOTOS:
        raise DataError(f"--background {root} has {len(files)} photos; it needs at least {MIN_PHOTOS} (a few dozen "
                        "photos or video frames of the scene without flowers work best)")
    random.Random(seed).shuffle(files)
    n = {k: max(1, round(f * len(files))) for k, f in FRACTIONS.items()}
    parts = {"test": files[:n["test"]], "val": files[n["test"]:n["test"] + n["val"]],
             "train": files[n["test"] + n["val"]:]}
    return {k: [(rel, sha256_file(root / rel)) for rel in sorted(v)] for k, v in parts.items()}


def load_background(folder: str | os.PathLike, items: list[tuple[str, str]] | list[list[str]], size: int,
                    label: int, classes: list[str], prefix: str = BACKGROUND, resize: str = RESIZE) -> SplitArrays:
    """Decode one split of the background photos as class ``label``; a changed or missing file is an error."""
    root = Path(folder)
    x = np.empty((len(items), size, size, 3), np.uint8)
    for i, (rel, digest) in enumerate(progress(items, total=len(items), desc=f"decoding {prefix} photos")
                                       if len(items) > 200 else items):
        p = root / rel
        if not p.is_file() or sha256_file(p) != digest:
            raise DataError(f"background photo {p} is missing or changed since training: restore it, or train again")
        x[i] = preprocess(p, size, resize)
    return SplitArrays(x, np.full(len(items), label, np.int64), [f"{prefix}:{rel}" for rel, _ in items], classes)


def concat(a: SplitArrays, b: SplitArrays) -> SplitArrays:
    return SplitArrays(join_rows([a.x, b.x]), np.concatenate([a.y, b.y]), a.paths + b.paths, b.classes)


def parts(background: dict) -> list[dict]:
    """The folders a run's background class is made of, each ``{"kind", "dir", "splits"}``: the camera's scene
    (``--background``) and the outlier photos (``--outliers``, edgeflower.data.outliers). A run written before the
    outliers has the scene's ``dir`` and ``splits`` at the top level."""
    if "parts" in background:
        return background["parts"]
    return [{"kind": "scene", "dir": background["dir"], "splits": background["splits"]}]


def part(background: dict | None, kind: str) -> dict | None:
    """The part of ``kind`` (scene or outliers), or None."""
    return next((p for p in parts(background) if p["kind"] == kind), None) if background else None


def with_background(arrays: dict[str, SplitArrays], background: dict, size: int,
                    resize: str = RESIZE) -> dict[str, SplitArrays]:
    """Append the background photos of each split (every part's, in order) as one more class, after the
    dataset's classes."""
    classes = list(next(iter(arrays.values())).classes)
    if BACKGROUND in classes:
        raise DataError(f"the dataset already has a class named {BACKGROUND!r}; --background adds that class itself")
    classes.append(BACKGROUND)
    out = {}
    for split, a in arrays.items():
        a = SplitArrays(a.x, a.y, a.paths, classes)
        for p in parts(background):
            items = p["splits"].get(split) or []
            if items:
                prefix = BACKGROUND if p["kind"] == "scene" else "outlier"
                a = concat(a, load_background(p["dir"], items, size, len(classes) - 1, classes, prefix,
                                                   resize))
        out[split] = a
    return out
