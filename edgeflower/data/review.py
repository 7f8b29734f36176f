"""Close the loop from the device to the next training: review the frames `classify --save` kept, then add the ones a
person has sorted into class folders to the dataset.

    edgeflower data review SAVED            # SAVED/review.html and SAVED/review.png, grouped by answer
    (move the JPEGs you recognise into SAVED/<class>/)
    edgeflower data add SAVED --into DATASET
"""

from __future__ import annotations

import html
import json
import os
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from edgeflower.data.split import class_folders
from edgeflower.edge.preprocess import IMAGE_SUFFIXES, open_image
from edgeflower.errors import DataError, ImageError
from edgeflower.util.files import atomic_path, atomic_write_text, sha256_file

THUMB = 112


def saved_frames(folder: str | os.PathLike) -> list[dict]:
    """The frames in ``folder`` with their sidecars (newest last)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder of saved frames (classify --save DIR)")
    out = []
    for side in sorted(folder.glob("*.json")):
        img = side.with_suffix(".jpg")
        if not img.is_file():
            continue
        try:
            meta = json.loads(side.read_text())
        except (OSError, ValueError):
            continue
        out.append({**meta, "image": img.name})
    return sorted(out, key=lambda m: m.get("time") or "")


def review(folder: str | os.PathLike) -> dict:
    """Write ``review.html`` and ``review.png`` in ``folder``: the saved frames grouped by answer."""
    folder = Path(folder)
    frames = saved_frames(folder)
    if not frames:
        raise DataError(f"{folder} holds no saved frames (a JPEG with its JSON sidecar from classify --save)")
    groups: dict[str, list[dict]] = defaultdict(list)
    for f in frames:
        groups[str(f.get("label"))].append(f)
    order = sorted(groups, key=lambda g: (-len(groups[g]), g))
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>edgeflower: frames to review</title>",
             "<style>body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:4px;width:"
             f"{THUMB + 8}px;font-size:11px;vertical-align:top}}img{{width:{THUMB}px}}</style></head><body>",
             f"<h1>{len(frames)} saved frames</h1><p>Move the JPEGs you recognise into "
             f"<code>{html.escape(str(folder))}/&lt;class&gt;/</code>, then run <code>edgeflower data add "
             f"{html.escape(str(folder))} --into DATASET</code>.</p>"]
    for g in order:
        parts.append(f"<h2>{html.escape(g)} ({len(groups[g])})</h2>")
        for f in groups[g]:
            sim = f" sim {f['similarity']:.3f}" if isinstance(f.get("similarity"), (int, float)) else ""
            top = (f.get("top_k") or [{}])[0]
            cap = (f"{html.escape(str(top.get('label', '')))} {100 * float(top.get('score') or 0):.0f}%{sim}<br>"
                   f"{html.escape(', '.join(f.get('reasons') or []))}<br>{html.escape(str(f.get('time', ''))[:19])}")
            parts.append(f"<figure><img src='{html.escape(f['image'])}' loading='lazy'><figcaption>{cap}"
                         "</figcaption></figure>")
    parts.append("</body></html>")
    atomic_write_text(folder / "review.html", "\n".join(parts))
    _sheet(folder, groups, order)
    return {"frames": len(frames), "groups": {g: len(groups[g]) for g in order},
            "html": str(folder / "review.html"), "png": str(folder / "review.png")}


def _sheet(folder: Path, groups: dict[str, list[dict]], order: list[str], per_row: int = 8) -> None:
    rows = []  # (header or None, [frames])
    for g in order:
        rows.append((f"{g} ({len(groups[g])})", []))
        fs = groups[g]
        for i in range(0, len(fs), per_row):
            rows.append((None, fs[i:i + per_row]))
    head_h, pad = 22, 4
    height = sum(head_h if h else THUMB + pad for h, _ in rows) + pad
    sheet = Image.new("RGB", (per_row * (THUMB + pad) + pad, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = pad
    for header, fs in rows:
        if header:
            draw.text((pad, y + 4), header, fill="black")
            y += head_h
            continue
        for i, f in enumerate(fs):
            try:
                with Image.open(folder / f["image"]) as im:
                    im = im.convert("RGB")
                    im.thumbnail((THUMB, THUMB))
                    sheet.paste(im, (pad + i * (THUMB + pad), y))
            except OSError:
                continue
        y += THUMB + pad
    with atomic_path(folder / "review.png", suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")


@dataclass
class AddReport:
    added: dict[str, int] = field(default_factory=dict)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (sorted frame, the dataset file it repeats)
    renamed: int = 0
    not_images: list[tuple[str, str]] = field(default_factory=list)  # (file, why it was not copied)
    stale: int = 0  # temporaries of an interrupted earlier run, removed


PARTIAL = ".partial"  # the suffix of a copy in progress: hidden, and no image suffix, so no reader takes it


def add(folder: str | os.PathLike, into: str | os.PathLike) -> AddReport:
    """Copy the frames sorted into ``folder/<class>/`` into ``into/<class>/``: never overwriting (a taken name gets
    a suffix), skipping and reporting photos the dataset already has (same bytes) and files that do not decode as
    images. Each copy is written under a hidden ``.partial`` name and renamed when complete; the temporaries that
    an interrupted run (kill -9, power loss) left behind are removed first."""
    folder, into = Path(folder), Path(into)
    if not into.is_dir():
        raise DataError(f"--into {into}: not a dataset folder (one subfolder per class)")
    classes = class_folders(into)
    # background/ holds the photos of none of the classes (train --background), not a class of the dataset
    sorted_dirs = [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")
                   and d.name != "background"] if folder.is_dir() else []
    if not sorted_dirs:
        raise DataError(f"nothing to add: move the frames you recognise into {folder}/<class>/ first "
                        f"(classes of {into}: {', '.join(classes)})")
    strangers = [d.name for d in sorted_dirs if d.name not in classes]
    if strangers:
        raise DataError(f"{', '.join(strangers)}: not a class of {into} ({', '.join(classes)}); rename the folder, "
                        "or create the class in the dataset first")
    rep = AddReport()
    for d in sorted_dirs:
        target = into / d.name
        for stale in target.glob(f".*{PARTIAL}"):
            stale.unlink(missing_ok=True)
            rep.stale += 1
        known = {sha256_file(p): p for p in target.iterdir() if p.is_file()}
        n = 0
        for src in sorted(d.iterdir()):
            if not src.is_file() or src.name.startswith("."):
                continue
            if src.suffix.lower() not in IMAGE_SUFFIXES:
                rep.not_images.append((str(src), f"not an image file name ({src.suffix or 'no suffix'})"))
                continue
            try:
                open_image(src)
            except ImageError as exc:
                rep.not_images.append((str(src), str(exc)))
                continue
            digest = sha256_file(src)
            if digest in known:
                rep.duplicates.append((str(src), str(known[digest])))
                continue
            dst, k = target / src.name, 1
            while dst.exists():
                dst, k = target / f"{src.stem}_{k}{src.suffix}", k + 1
            if k > 1:
                rep.renamed += 1
            with atomic_path(dst, suffix=PARTIAL) as tmp:
                shutil.copyfile(src, tmp)
            known[digest] = dst
            n += 1
        rep.added[d.name] = n
    return rep
