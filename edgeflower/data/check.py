"""`edgeflower data check`: decode every image, count classes, find unreadable files and duplicates.

Never crashes on a bad file: every problem becomes a line in the report.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from edgeflower.data.source import IMAGE_SUFFIXES, list_images
from edgeflower.util.files import sha256_file
from edgeflower.util.progress import progress

#: Two photos are near-duplicates when their 64-bit dHashes differ in at most NEAR_DUP_BITS bits (a cheap
#: candidate filter that alone has many false positives on flower close-ups) AND their normalised 32x32
#: grey thumbnails correlate at NEAR_DUP_CORR or more. On flower_photos true re-uploads score >= 0.99,
#: look-alike compositions of different flowers 0.6-0.8.
NEAR_DUP_BITS = 8
NEAR_DUP_CORR = 0.95


def dhash(img: Image.Image, size: int = 8) -> int:
    """64-bit difference hash of an RGB image: robust to rescaling and recompression, cheap to compare."""
    g = img.convert("L").resize((size + 1, size), Image.Resampling.BILINEAR)
    a = np.asarray(g, dtype=np.int16)
    bits = (a[:, 1:] > a[:, :-1]).flatten()
    return int(np.packbits(bits).view(">u8")[0])


def thumbnail(img: Image.Image) -> np.ndarray:
    """32x32 grey thumbnail normalised to zero mean and unit variance (for correlation)."""
    a = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.BILINEAR), dtype=np.float32)
    return (a - a.mean()) / (a.std() + 1e-6)


@dataclass
class FileInfo:
    path: str
    cls: str
    sha256: str
    dhash: int | None = None
    size: tuple[int, int] | None = None
    mode: str | None = None
    exif_rotated: bool = False
    error: str | None = None
    thumb: np.ndarray | None = field(default=None, repr=False)


@dataclass
class CheckReport:
    root: str
    counts: dict[str, int]
    files: list[FileInfo] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    not_images: list[str] = field(default_factory=list)
    converted: dict[str, int] = field(default_factory=dict)
    identical: list[list[str]] = field(default_factory=list)
    cross_class: list[list[str]] = field(default_factory=list)
    near_duplicates: list[tuple[str, str, float]] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "root": self.root,
            "counts": self.counts,
            "total": sum(self.counts.values()),
            "unreadable": [{"path": p, "error": e} for p, e in self.unreadable],
            "not_images": self.not_images,
            "converted_modes": self.converted,
            "identical_duplicates": self.identical,
            "cross_class_duplicates": self.cross_class,
            "near_duplicates": [{"a": a, "b": b, "similarity": d} for a, b, d in self.near_duplicates],
            "empty_classes": self.empty_classes,
        }


def inspect_file(root: Path, rel: str) -> FileInfo:
    cls = rel.split("/", 1)[0]
    path = root / rel
    try:
        digest = sha256_file(path)
    except OSError as exc:
        return FileInfo(rel, cls, "", error=f"cannot read: {exc}")
    info = FileInfo(rel, cls, digest)
    if os.path.getsize(path) == 0:
        info.error = "zero-byte file"
        return info
    try:
        with Image.open(path) as img:
            info.mode = img.mode
            img.draft("RGB", (64, 64)) if img.format == "JPEG" else None
            img.load()
            orientation = img.getexif().get(0x0112, 1)
            info.exif_rotated = orientation not in (0, 1)
            img2 = ImageOps.exif_transpose(img)
            info.size = img2.size
            rgb = img2.convert("RGB")
            info.dhash = dhash(rgb)
            info.thumb = thumbnail(rgb)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a finding, not a crash
        info.error = f"{type(exc).__name__}: {exc}"
    return info


def hamming_pairs(hashes: list[int], max_bits: int) -> list[tuple[int, int, int]]:
    """All index pairs whose 64-bit hashes differ in at most ``max_bits`` bits (vectorised, O(n^2/2))."""
    if len(hashes) < 2:
        return []
    h = np.array(hashes, dtype=np.uint64)
    out = []
    for i in range(len(h) - 1):
        x = np.bitwise_xor(h[i + 1:], h[i])
        d = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        for j in np.nonzero(d <= max_bits)[0]:
            out.append((i, i + 1 + int(j), int(d[j])))
    return out


def near_duplicate_pairs(infos: list[FileInfo], max_bits: int = NEAR_DUP_BITS,
                         min_corr: float = NEAR_DUP_CORR) -> list[tuple[int, int, float]]:
    """Index pairs of decoded files that are near-duplicates: (i, j, thumbnail correlation)."""
    out = []
    for i, j, _ in hamming_pairs([f.dhash or 0 for f in infos], max_bits):
        a, b = infos[i].thumb, infos[j].thumb
        if a is None or b is None:
            continue
        corr = float((a * b).mean())
        if corr >= min_corr:
            out.append((i, j, corr))
    return out


def scan(root: str | os.PathLike, show_progress: bool = True) -> list[FileInfo]:
    root = Path(root)
    listing = list_images(root)
    rels = [r for files in listing.values() for r in files]
    return [inspect_file(root, r) for r in progress(rels, total=len(rels), desc="checking images",
                                                     disable=None if show_progress else True)]


def check_dataset(root: str | os.PathLike, show_progress: bool = True) -> CheckReport:
    root = Path(root)
    listing = list_images(root)
    files = scan(root, show_progress)
    report = CheckReport(str(root), counts={})
    report.files = files
    by_class: dict[str, int] = defaultdict(int)
    for c in listing:
        by_class[c] += 0
    for f in files:
        if Path(f.path).suffix.lower() not in IMAGE_SUFFIXES and f.error:
            report.not_images.append(f.path)
            continue
        if f.error:
            report.unreadable.append((f.path, f.error))
            continue
        by_class[f.cls] += 1
        if f.mode and f.mode != "RGB":
            report.converted[f.mode] = report.converted.get(f.mode, 0) + 1
        if f.exif_rotated:
            report.converted["exif-rotated"] = report.converted.get("exif-rotated", 0) + 1
    report.counts = dict(sorted(by_class.items()))
    report.empty_classes = [c for c, n in report.counts.items() if n == 0]
    good = [f for f in files if not f.error]
    by_sha: dict[str, list[FileInfo]] = defaultdict(list)
    for f in good:
        by_sha[f.sha256].append(f)
    for group in by_sha.values():
        if len(group) > 1:
            paths = sorted(f.path for f in group)
            report.identical.append(paths)
            if len({f.cls for f in group}) > 1:
                report.cross_class.append(paths)
    # near-duplicates: distinct bytes, similar pixels
    reps = [g[0] for g in by_sha.values()]
    for i, j, corr in near_duplicate_pairs(reps):
        report.near_duplicates.append((reps[i].path, reps[j].path, round(corr, 4)))
    return report
