"""Outlier photos: real photographs of none of the classes, trained as the ``background`` class (outlier exposure).

A model trained on five kinds of flower has never been told what a lawn, a dog or a lotus looks like; the
similarity score alone lets through about a quarter of such photos. Trained in as one more class that the device
answers ``unknown``, a few thousand licensed outlier photos teach the backbone's features which regions are *not*
a flower. The set (2,175 photos, ``MANIFEST.tsv``: file, sha256, set, category or species, source repository at a
pinned commit, source path, original sha256, licence, attribution, crop) is found in this order:

1. ``train --outliers DIR`` (a folder with a ``MANIFEST.tsv``, or any folder of photos);
2. ``$EDGEFLOWER_OUTLIERS`` (a folder; ``none`` turns the default off, as ``--no-outliers`` does);
3. the user cache (``~/.cache/edgeflower/outliers``), filled on first use by :func:`download`, which fetches
   exactly the manifest's files: each original by source, path and commit, verified against its sha256, then
   cropped and resized as the manifest says.

**Held out by source.** A figure for photos "the model has not seen" must come from sources that played no part in
training. :func:`role` assigns every manifest row one of ``train``, ``val`` (the development part: training, early
stopping, thresholds and every choice of method) or ``heldout`` (never trained on or tuned on; reported by
``python -m benchmarks.outliers``):

- whole sources: the Fedora, Solus, Xubuntu and Ubuntu MATE wallpapers and the Azure sample photos;
- whole Caltech-101 categories: every third category of each kind (animals, vehicles, ...) in name order;
- whole species of other flowers: water lily and every second species of one photo (other-species flowers of
  species the model never saw).

Crops of one original stay together (``original_sha256``); the development part is split train / val by original.
A folder without a manifest is split train / val by file and has no held-out part. Numpy and Pillow only.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

from edgeflower.edge.preprocess import image_files
from edgeflower.errors import DataError, DownloadError
from edgeflower.util.files import atomic_write_bytes, cache_dir, sha256_file
from edgeflower.util.progress import progress

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.tsv"
ENV = "EDGEFLOWER_OUTLIERS"
OFF = ("none", "off", "0", "no")
# raw files of a public repository at a commit: {base}/{owner}/{repo}/{commit}/{path}
URL_ENV = "EDGEFLOWER_OUTLIERS_URL"
DEFAULT_URL = "https://raw.githubusercontent.com"
LONG_SIDE, JPEG_QUALITY = 256, 80  # how the set's files were made from their originals

HELD_OUT_SOURCES = ("fedoradesign/backgrounds", "getsolus/artwork", "Xubuntu/xubuntu-community-artwork",
                    "ubuntu-mate/ubuntu-mate-artwork", "Azure-Samples/cognitive-services-sample-data-files")
CALTECH = "MachineLearning2020/Homework2-Caltech101"
HELD_OUT_EVERY = 3  # every third Caltech category of each kind, from the second, in name order
VAL_EVERY = 5  # one original in five of the development part validates


@dataclass(frozen=True)
class Outlier:
    """One manifest row."""
    file: str  # relative to the set's folder
    sha256: str
    set: str  # no_flowers or other_flowers
    category: str  # nature, animal, ... or the flower species
    source: str  # owner/repo@commit (a github.com repository)
    source_path: str
    original_sha256: str
    licence: str
    attribution: str
    crop: str  # whole, or box=x0,y0,x1,y1 in the original's pixels

    @property
    def repo(self) -> str:
        return self.source.split("@")[0].removeprefix("github.com/")

    @property
    def commit(self) -> str:
        return self.source.split("@")[1] if "@" in self.source else ""

    @property
    def caltech_category(self) -> str | None:
        return self.source_path.split("/")[1] if self.repo == CALTECH else None

    @property
    def kind(self) -> str:
        """What the report groups by: the category (nature, animal, ...) or ``other_flowers``."""
        return "other_flowers" if self.set == "other_flowers" else self.category


def read_manifest(path: str | os.PathLike | io.TextIOBase) -> list[Outlier]:
    """The rows of a ``MANIFEST.tsv`` (a path or an open text file)."""
    with (open(path, newline="", encoding="utf-8") if not hasattr(path, "read")
          else contextlib.nullcontext(path)) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    want = {"file", "sha256", "set", "category_or_species", "source", "source_path", "original_sha256", "crop"}
    if not rows or not want <= set(rows[0]):
        raise DataError(f"{path}: not an outlier manifest (a TSV with the columns {', '.join(sorted(want))})")
    return [Outlier(file=r["file"], sha256=r["sha256"], set=r["set"], category=r["category_or_species"],
                    source=r["source"], source_path=r["source_path"], original_sha256=r["original_sha256"],
                    licence=r.get("licence", ""), attribution=r.get("attribution", ""), crop=r["crop"]) for r in rows]


def packaged_manifest() -> list[Outlier]:
    """The manifest of the default set, shipped with edgeflower (gzipped)."""
    with resources.files("edgeflower.data").joinpath("outliers_manifest.tsv.gz").open("rb") as raw, \
            gzip.open(raw, "rt", encoding="utf-8", newline="") as f:
        return read_manifest(f)


def _held_out_categories(rows: list[Outlier]) -> set[str]:
    by_kind: dict[str, set[str]] = {}
    for r in rows:
        if r.caltech_category and r.set == "no_flowers":
            by_kind.setdefault(r.category, set()).add(r.caltech_category)
    return {c for cats in by_kind.values() for i, c in enumerate(sorted(cats)) if i % HELD_OUT_EVERY == 1}


def _held_out_species(rows: list[Outlier]) -> set[str]:
    counts: dict[str, int] = {}
    for r in rows:
        if r.set == "other_flowers":
            counts[r.category] = counts.get(r.category, 0) + 1
    singles = sorted(s for s, n in counts.items() if n == 1)
    return {"water_lily"} | {s for i, s in enumerate(singles) if i % 2 == 1}


def roles(rows: list[Outlier]) -> dict[str, str]:
    """{file: train | val | heldout} (see the module docstring)."""
    cats, species = _held_out_categories(rows), _held_out_species(rows)
    out = {}
    for r in rows:
        if (r.repo in HELD_OUT_SOURCES or r.caltech_category in cats
                or (r.set == "other_flowers" and r.category in species)):
            out[r.file] = "heldout"
        else:
            out[r.file] = "val" if int(r.original_sha256[:8], 16) % VAL_EVERY == 0 else "train"
    # an original whose crops fell on both sides of a source rule (none in the default set) stays held out whole
    held = {r.original_sha256 for r in rows if out[r.file] == "heldout"}
    return {r.file: "heldout" if r.original_sha256 in held else out[r.file] for r in rows}


def seen_species(rows: list[Outlier]) -> set[str]:
    """Other-flower species with photos in the development part (the rest are unseen in training)."""
    role = roles(rows)
    return {r.category for r in rows if r.set == "other_flowers" and role[r.file] != "heldout"}


# ---------------------------------------------------------------- where the set is


def resolve(outliers: str | os.PathLike | None = None, use: bool = True, download_missing: bool = True,
            say: Callable[[str], None] | None = None) -> Path | None:
    """The outlier folder by the order in the module docstring; None when turned off or not to be had (a failed
    download is reported through ``say`` and the run goes on without outliers)."""
    say = say or log.warning
    if not use:
        return None
    if outliers:
        d = Path(outliers).expanduser()
        if not d.is_dir():
            raise DataError(f"--outliers {d}: not a folder (expected photos of none of the classes, or a set with "
                            f"a {MANIFEST}); --no-outliers trains without them")
        return d
    env = os.environ.get(ENV)
    if env:
        if env.strip().lower() in OFF:
            return None
        d = Path(env).expanduser()
        if not d.is_dir():
            raise DataError(f"{ENV}={d} is not a folder: fix or unset it ({ENV}=none turns the outliers off)")
        return d
    cached = cache_dir() / "outliers"
    if (cached / MANIFEST).is_file():
        return cached
    if not download_missing:
        return None
    try:
        return download(cached)
    except DownloadError as exc:
        say(f"training without outlier photos: {exc}")
        return None


# ---------------------------------------------------------------- the download


def _url(base: str, r: Outlier) -> str:
    return f"{base.rstrip('/')}/{r.repo}/{r.commit}/{urllib.request.quote(r.source_path)}"


def make_file(original: bytes, crop: str) -> bytes:
    """The set's file from its original: EXIF orientation, alpha on white, RGB, the crop box, the long side at most
    256 px (LANCZOS), JPEG quality 80 (as the set's build scripts made them)."""
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(Image.open(io.BytesIO(original)))
    if im.mode in ("RGBA", "LA", "P", "PA"):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        bg.alpha_composite(im)
        im = bg
    im = im.convert("RGB")
    if crop.startswith("box="):
        im = im.crop(tuple(int(v) for v in crop[4:].split(",")))
    w, h = im.size
    s = LONG_SIDE / max(w, h)
    if s < 1:
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue()


def download(dest: str | os.PathLike, rows: list[Outlier] | None = None, base_url: str | None = None,
             timeout: float = 60.0) -> Path:
    """Fetch exactly the manifest's files into ``dest``: each original once (by repository, commit and path),
    checked against its sha256, then cut and resized into the listed files. Everything goes to a temporary folder
    that is renamed onto ``dest`` only when every file is there, so an interrupted download leaves nothing that
    looks complete. A changed original raises :class:`DownloadError` naming it. The stored files are re-encoded
    here, so their bytes can differ from the manifest's sha256 with another JPEG library; the manifest written to
    ``dest`` records the bytes made here (the original's sha256 is what is verified)."""
    rows = rows if rows is not None else packaged_manifest()
    base = base_url or os.environ.get(URL_ENV) or DEFAULT_URL
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".outliers.", dir=dest.parent))
    try:
        by_original: dict[tuple[str, str, str], list[Outlier]] = {}
        for r in rows:
            by_original.setdefault((r.repo, r.commit, r.source_path), []).append(r)
        made = {}
        for key in progress(list(by_original), total=len(by_original), desc="outlier photos"):
            first = by_original[key][0]
            url = _url(base, first)
            data = _get(url, timeout)
            digest = hashlib.sha256(data).hexdigest()
            if digest != first.original_sha256:
                raise DownloadError(f"checksum mismatch for {url}: got sha256 {digest}, expected "
                                    f"{first.original_sha256}; the source changed or the download was corrupted: "
                                    "retry, or pass --outliers DIR with a copy of the set (--no-outliers trains "
                                    "without it)")
            for r in by_original[key]:
                out = tmp / r.file
                out.parent.mkdir(parents=True, exist_ok=True)
                body = make_file(data, r.crop)
                out.write_bytes(body)
                made[r.file] = hashlib.sha256(body).hexdigest()
        differ = sum(made[r.file] != r.sha256 for r in rows)
        if differ:
            log.info("%d of %d outlier files re-encoded to other bytes than the manifest's (another JPEG library)",
                     differ, len(rows))
        _write_manifest(tmp / MANIFEST, rows, made)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _get(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except OSError as exc:  # URLError, HTTPError, timeouts, connection resets
        raise DownloadError(f"cannot download {url}: {getattr(exc, 'reason', exc)}; check the network, or pass "
                            "--outliers DIR with a copy of the set") from exc


def _write_manifest(path: Path, rows: list[Outlier], made: dict[str, str]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(["file", "sha256", "set", "category_or_species", "source", "source_path", "original_sha256",
                "licence", "attribution", "crop"])
    for r in rows:
        w.writerow([r.file, made.get(r.file, r.sha256), r.set, r.category, r.source, r.source_path,
                    r.original_sha256, r.licence, r.attribution, r.crop])
    atomic_write_bytes(path, buf.getvalue().encode())


# ---------------------------------------------------------------- the split a run trains with


def split_outliers(folder: str | os.PathLike, seed: int = 1337) -> dict:
    """{"splits": {"train": [(file, sha256)], "val": [...], "test": []}, "heldout": n, "manifest": bool}: the
    development part of a manifest's set (see :func:`roles`), or a folder of photos split 80 / 20 by file. Every
    file is hashed now, so a photo that changes before export is an error there, not a silent difference."""
    root = Path(folder)
    if (root / MANIFEST).is_file():
        rows = read_manifest(root / MANIFEST)
        role = roles(rows)
        missing = [r.file for r in rows if role[r.file] != "heldout" and not (root / r.file).is_file()]
        if missing:
            raise DataError(f"{root}: {len(missing)} files of its {MANIFEST} are missing (first: {missing[0]}); "
                            "restore the set or pass --outliers with a complete copy")
        parts = {s: sorted(r.file for r in rows if role[r.file] == s) for s in ("train", "val")}
        held = sum(v == "heldout" for v in role.values())
    else:
        files = sorted(p.relative_to(root).as_posix() for p in image_files(root))
        if len(files) < 5:
            raise DataError(f"--outliers {root} has {len(files)} photos; it needs at least 5 (hundreds of photos "
                            "of many kinds work best)")
        ordered = sorted(files, key=lambda f: hashlib.sha256(f"{seed}:{f}".encode()).hexdigest())
        n_val = max(1, round(0.2 * len(files)))
        parts = {"val": sorted(ordered[:n_val]), "train": sorted(ordered[n_val:])}
        held = 0
    splits = {s: [(f, sha256_file(root / f)) for f in parts[s]] for s in ("train", "val")}
    splits["test"] = []
    return {"splits": splits, "heldout": held, "manifest": (root / MANIFEST).is_file()}
