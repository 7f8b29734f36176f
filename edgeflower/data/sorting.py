"""Sorting the frames `classify --save` kept: file each under a class, as background, or discard it; undo.

The folder itself is the state, so two browser tabs, a reload or a restarted server all see the same thing:
- ``SAVED/x.jpg`` (with ``x.json``) is a frame still to sort;
- ``SAVED/<class>/x.jpg`` is filed under a class (``edgeflower data add SAVED --into DATASET`` copies those);
- ``SAVED/background/x.jpg`` is a photo of none of the classes (``train --background SAVED/background``);
- ``SAVED/.discarded/x.jpg`` is discarded: hidden from every reader, kept until you delete it.

A move is a rename within the folder (atomic on one file system): the JPEG first, then its sidecar. The JPEG's place
is the truth: a sidecar left behind by a kill between the two renames is moved after its JPEG when the folder is
next read, so a frame is never lost or counted twice. Each move is appended to ``SAVED/.review/moves.jsonl`` (undo
reverses the last one still in place).
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

from edgeflower.errors import DataError

BACKGROUND = "background"
DISCARDED = ".discarded"
JOURNAL = Path(".review") / "moves.jsonl"
# a frame's name as the saver writes it (and nothing that could leave the folder)
FRAME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,150}\.jpg$")
CLASS_NAME = re.compile(r"^[^/\\.\x00-\x1f][^/\\\x00-\x1f]{0,99}$")


class SortError(DataError):
    """A request the sorter refuses (an unknown frame or class): the page shows it, the folder is unchanged."""


class Sorter:
    """The frames of ``saved`` and where each one is; ``classes`` are the targets besides background and discard."""

    def __init__(self, saved: str | os.PathLike, classes: list[str]):
        self.root = Path(saved)
        if not self.root.is_dir():
            raise DataError(f"{self.root} is not a folder of saved frames (classify --save DIR)")
        bad = [c for c in classes if not CLASS_NAME.match(c) or c in (BACKGROUND, DISCARDED)]
        if bad:
            raise DataError(f"class names {bad}: a class is a folder name (no '/', not starting with '.', not "
                            f"'{BACKGROUND}')")
        self.classes = list(classes)
        # where each target's frames go: the classes, background and discard
        self.places = {**{c: self.root / c for c in self.classes}, BACKGROUND: self.root / BACKGROUND,
                       "discard": self.root / DISCARDED}
        self._lock = threading.Lock()
        self.reconcile()

    # ---- where things are
    def _place(self, target: str) -> Path:
        if target not in self.places:
            raise SortError(f"{target!r} is not a class here ({', '.join(self.classes)}), '{BACKGROUND}' or "
                            "'discard'")
        return self.places[target]

    def reconcile(self) -> None:
        """Move every sidecar to where its JPEG is (what a kill between a move's two renames leaves)."""
        places = [self.root, *self.places.values()]
        jpeg_at = {}
        for p in places:
            for j in p.glob("*.jpg") if p.is_dir() else []:
                jpeg_at[j.stem] = p
        for p in places:
            for side in p.glob("*.json") if p.is_dir() else []:
                home = jpeg_at.get(side.stem)
                if home is not None and home != p:
                    os.replace(side, home / side.name)

    def state(self) -> dict:
        """The frames to sort (with their sidecars, oldest first), the counts filed per target, the undo depth."""
        with self._lock:
            self.reconcile()
            frames = []
            for img in sorted(self.root.glob("*.jpg")):
                if not FRAME_NAME.match(img.name):
                    continue
                try:
                    meta = json.loads(img.with_suffix(".json").read_text())
                except (OSError, ValueError):
                    meta = {}
                frames.append({"name": img.name, "label": str(meta.get("label", "?")),
                               "similarity": meta.get("similarity"), "top_k": (meta.get("top_k") or [])[:3],
                               "time": meta.get("time"), "reasons": meta.get("reasons") or []})
            frames.sort(key=lambda f: (f["time"] or "", f["name"]))
            filed = {t: len(list(p.glob("*.jpg"))) if p.is_dir() else 0 for t, p in self.places.items()}
            return {"frames": frames, "classes": self.classes, "filed": filed, "undo": len(self._journal())}

    def image(self, name: str) -> Path:
        """The JPEG of a frame still to sort or already filed (never a path outside the folder)."""
        if not FRAME_NAME.match(name):
            raise SortError(f"{name!r} is not a frame name")
        for p in (self.root, *self.places.values()):
            if (p / name).is_file():
                return p / name
        raise SortError(f"no frame {name!r}")

    # ---- moves
    def file(self, name: str, target: str) -> dict:
        """File the frame ``name`` (still to sort) under ``target``: a class, 'background' or 'discard'."""
        if not FRAME_NAME.match(name):
            raise SortError(f"{name!r} is not a frame name")
        dest = self._place(target)
        with self._lock:
            src = self.root / name
            if not src.is_file():
                raise SortError(f"{name} is not among the frames to sort (another tab may have filed it)")
            self._move(src, dest)
            self._append({"frame": name, "to": target})
        return self.state()

    def undo(self) -> dict:
        """Put the last filed frame back among the frames to sort."""
        with self._lock:
            moves = self._journal()
            while moves:
                last = moves.pop()
                place = self.places.get(last["to"])
                if place is not None and (place / last["frame"]).is_file():
                    self._move(place / last["frame"], self.root)
                    self._rewrite(moves)
                    break
                self._rewrite(moves)  # a move undone by hand: skip it
            else:
                raise SortError("nothing to undo")
        return self.state()

    def _move(self, jpg: Path, dest: Path) -> None:
        dest.mkdir(exist_ok=True)
        if (dest / jpg.name).exists():
            raise SortError(f"{dest.name}/{jpg.name} exists already")
        os.replace(jpg, dest / jpg.name)  # the JPEG first: its place is the truth (reconcile)
        side = jpg.with_suffix(".json")
        if side.is_file():
            os.replace(side, dest / side.name)

    def _journal(self) -> list[dict]:
        path = self.root / JOURNAL
        if not path.is_file():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a kill mid-write
        return out

    def _append(self, move: dict) -> None:
        path = self.root / JOURNAL
        path.parent.mkdir(exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(move) + "\n")

    def _rewrite(self, moves: list[dict]) -> None:
        from edgeflower.util.files import atomic_write_text

        atomic_write_text(self.root / JOURNAL, "".join(json.dumps(m) + "\n" for m in moves))


def frame_classes(saved: str | os.PathLike, into: str | os.PathLike | None = None) -> list[str]:
    """The classes to sort into: the dataset's (``into``), else every class the saved frames' answers name."""
    if into is not None:
        from edgeflower.data.split import class_folders

        return [c for c in class_folders(into) if c != BACKGROUND]
    names = {d.name for d in Path(saved).iterdir() if d.is_dir()}  # classes frames were filed under before
    for side in Path(saved).glob("*.json"):
        try:
            meta = json.loads(side.read_text())
        except (OSError, ValueError):
            continue
        names.update(str(k.get("label")) for k in meta.get("top_k") or [] if isinstance(k, dict))
        names.add(str(meta.get("label")))
    return sorted(n for n in names if n not in ("unknown", "None", BACKGROUND) and CLASS_NAME.match(n))
