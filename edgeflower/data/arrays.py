"""Decoded, preprocessed splits as uint8 arrays, cached on disk so training never re-decodes JPEGs."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeflower.data.split import Manifest, split_items, verify_files
from edgeflower.data.store import ImageStore, write_npy
from edgeflower.edge.preprocess import RESIZE, preprocess, preprocessing
from edgeflower.util.files import atomic_path, cache_dir
from edgeflower.util.progress import progress

log = logging.getLogger(__name__)


@dataclass
class SplitArrays:
    x: np.ndarray | ImageStore  # uint8 (N, H, W, 3): in memory, or on disk and read a batch at a time
    y: np.ndarray  # int64 (N,)
    paths: list[str]
    classes: list[str]

    def __len__(self) -> int:
        return len(self.y)


def load_split(root: str | os.PathLike, manifest: Manifest, split: str, size: int,
               limit_per_class: int | None = None, use_cache: bool = True, verify: bool = True,
               exclude: set[str] | None = None, resize: str = RESIZE) -> SplitArrays:
    """Verify the split's files against the manifest, then decode them with ``resize`` (the run's) or read the cached
    array."""
    root = Path(root)
    items = split_items(manifest, split, limit_per_class)
    if exclude:
        items = [it for it in items if it[0] not in exclude]
    if verify:
        verify_files(root, items)
    paths = [rel for rel, _, _ in items]
    y = np.array([lab for _, lab, _ in items], dtype=np.int64)
    key = hashlib.sha256(json.dumps([manifest.sha256, split, size, [it[2] for it in items],
                                     preprocessing(resize)],
                                    sort_keys=True).encode()).hexdigest()[:20]
    cache = cache_dir() / "arrays" / f"{split}-{size}-{key}.npy"
    shape = (len(items), size, size, 3)
    if use_cache and cache.is_file():
        try:
            x = ImageStore(cache)
            if x.shape == shape and x.dtype == np.uint8:
                return SplitArrays(x, y, paths, list(manifest.classes))
        except (OSError, ValueError) as exc:
            log.warning("ignoring the unreadable image cache %s: %s", cache, exc)
    rows = (preprocess(root / rel, size, resize) for rel in progress(paths, total=len(paths), desc=f"decoding {split}"))
    if use_cache:
        try:
            # decoded straight into the file, a window at a time: memory does not grow with the dataset
            with atomic_path(cache, suffix=".npy") as tmp:
                write_npy(tmp, shape, np.uint8, rows)
            return SplitArrays(ImageStore(cache), y, paths, list(manifest.classes))
        except OSError as exc:  # a read-only cache must not stop training
            log.warning("could not write the image cache %s: %s; decoding into memory", cache, exc)
            rows = (preprocess(root / rel, size, resize) for rel in paths)
    x = np.empty(shape, dtype=np.uint8)
    for i, row in enumerate(rows):
        x[i] = row
    return SplitArrays(x, y, paths, list(manifest.classes))
