"""Real photos without the five flowers, from Debian's wallpaper packages: for the `unknown` benchmark and for
outlier exposure (a `background` class of real non-flower photos).

    python -m scripts.collect.negatives [--debs DIR] [--out DIR]

Nature without flowers (grass, leaves, water, dunes, mountains, sky) is what gets through the `unknown` rule, and
the photographs in desktop wallpaper packages are mostly that. Each package is used for one role only, so that no
photo (or a crop of it) is in two roles:
- ``train``: plasma-workspace-wallpapers and mate-backgrounds' non-flower photos, each as the whole photo plus
  seeded crops, written as a folder for ``edgeflower train --background DIR`` (outlier exposure);
- ``development``: lxqt-themes' non-flower photos (added to the development set of benchmarks/unknown.py, on which
  methods and settings are chosen);
- ``held_out``: lomiri-wallpapers' non-flower photos (added to the held-out set, only reported);
- ``near``: flowers of other species found in these packages (a marigold, gerberas, apple blossom, a meadow, forget-me-
  nots), reported apart from the non-flower photos.
Abstract renders, logos, dark or duplicate variants and dandelion seed heads (a dandelion, so not a negative) are
left out. Every image's licence is read from its package's Debian copyright file (DEP-5).

The .deb files are fetched with ``apt-get download`` where apt exists, else from deb.debian.org's pool, and checked
against the sha256 below; ``--debs DIR`` takes local copies. Numpy and Pillow only; about 210 MB downloaded once.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import io
import json
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from edgeflower.util.files import atomic_write_text, cache_dir

POOL = "https://deb.debian.org/debian/"
# package: (version, pool path, sha256 of the .deb) -- Debian 12 bookworm
PACKAGES = {
    "plasma-workspace-wallpapers": (
        "4:5.27.5-2", "pool/main/p/plasma-workspace-wallpapers/plasma-workspace-wallpapers_5.27.5-2_all.deb",
        "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b"),
    "mate-backgrounds": (
        "1.26.0-1", "pool/main/m/mate-backgrounds/mate-backgrounds_1.26.0-1_all.deb",
        "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04"),
    "lxqt-themes": (
        "1.2.0-1", "pool/main/l/lxqt-themes/lxqt-themes_1.2.0-1_all.deb",
        "d518df36b515b09d36cb00b12645dd8ce170bb82bb0966297741905ce3edc8e1"),
    "lomiri-wallpapers-16.04": (
        "20.04.0-2", "pool/main/l/lomiri-wallpapers/lomiri-wallpapers-16.04_20.04.0-2_all.deb",
        "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab"),
    "lomiri-wallpapers-20.04": (
        "20.04.0-2", "pool/main/l/lomiri-wallpapers/lomiri-wallpapers-20.04_20.04.0-2_all.deb",
        "d44e89b8473aafe64a5b678f014862dc31335aaaf18665c544d985d854f1a709"),
}
PLASMA = "usr/share/wallpapers/{}/contents/images/{}"
MATE = "usr/share/backgrounds/mate/nature/{}"
LXQT = "usr/share/lxqt/wallpapers/{}"
LOMIRI = "usr/share/backgrounds/{}"
# (package, path inside the .deb, what it shows, category, role)
IMAGES = [
    ("plasma-workspace-wallpapers", PLASMA.format("BytheWater", "2560x1600.jpg"), "lake shore at dusk", "nature",
     "train"),
    ("plasma-workspace-wallpapers", PLASMA.format("ColdRipple", "2560x1600.jpg"), "pier in fog", "nature", "train"),
    ("plasma-workspace-wallpapers", PLASMA.format("ColorfulCups", "2560x1600.jpg"), "stacked cups", "object", "train"),
    ("plasma-workspace-wallpapers", PLASMA.format("DarkestHour", "2560x1600.jpg"), "lake at night", "nature", "train"),
    ("plasma-workspace-wallpapers", PLASMA.format("EveningGlow", "2560x1600.jpg"), "boats at a lake, sunset", "vehicle",
     "train"),
    ("plasma-workspace-wallpapers", PLASMA.format("FallenLeaf", "2560x1600.jpg"), "autumn leaf on the ground", "nature",
     "train"),
    ("plasma-workspace-wallpapers", PLASMA.format("Grey", "2560x1600.jpg"), "facade, black and white", "building",
     "train"),
    ("plasma-workspace-wallpapers", PLASMA.format("Kite", "2560x1600.jpg"), "kite in a cloudy sky", "nature", "train"),
    ("plasma-workspace-wallpapers", PLASMA.format("OneStandsOut", "2560x1600.jpg"), "green plants from above", "nature",
     "train"),
    ("plasma-workspace-wallpapers", PLASMA.format("Path", "2560x1600.jpg"), "forest path", "nature", "train"),
    ("plasma-workspace-wallpapers", PLASMA.format("summer_1am", "2560x1600.jpg"), "lake under a night sky", "nature",
     "train"),
    ("plasma-workspace-wallpapers", PLASMA.format("Volna", "5120x2880.jpg"), "beach and surf from above", "nature",
     "train"),
    ("mate-backgrounds", MATE.format("Aqua.jpg"), "water drop", "nature", "train"),
    ("mate-backgrounds", MATE.format("Blinds.jpg"), "leaf close-up", "nature", "train"),
    ("mate-backgrounds", MATE.format("Dune.jpg"), "dune grass by the sea", "nature", "train"),
    ("mate-backgrounds", MATE.format("GreenMeadow.jpg"), "grass close-up", "nature", "train"),
    ("mate-backgrounds", MATE.format("RainDrops.jpg"), "leaves with rain drops", "nature", "train"),
    ("mate-backgrounds", MATE.format("Storm.jpg"), "storm over the sea", "nature", "train"),
    ("mate-backgrounds", MATE.format("Wood.jpg"), "pale wood grain", "object", "train"),
    ("lxqt-themes", LXQT.format("beam.png"), "sun beams over dark hills", "nature", "development"),
    ("lxqt-themes", LXQT.format("Butterfly-Kenneth-Wimer.jpg"), "butterfly on a grass stalk", "animal", "development"),
    ("lxqt-themes", LXQT.format("Valendas.png"), "mountain ridge, overcast", "nature", "development"),
    ("lxqt-themes", LXQT.format("after-the-rain.jpg"), "sunset clouds over hills", "nature", "development"),
    ("lxqt-themes", LXQT.format("cloud.png"), "clouds", "nature", "development"),
    ("lxqt-themes", LXQT.format("drop.png"), "drop on a grass blade", "nature", "development"),
    ("lxqt-themes", LXQT.format("fog.jpg"), "fog over a field", "nature", "development"),
    ("lxqt-themes", LXQT.format("this-is-not-windows.jpg"), "green hills and sky", "nature", "development"),
    ("lomiri-wallpapers-16.04", LOMIRI.format("Bridge_by_Sander_Klootwijk.jpg"), "bridge cables and sky", "building",
     "held_out"),
    ("lomiri-wallpapers-16.04", LOMIRI.format("Dragonfly_by_Bolly.jpg"), "dragonfly in leaves", "nature", "held_out"),
    ("lomiri-wallpapers-16.04", LOMIRI.format("Picture_0B_by_freespace.jpg"), "fig in a red bowl", "food", "held_out"),
    ("lomiri-wallpapers-16.04", LOMIRI.format("Picture_1A_by_freespace.jpg"), "paint brushes", "object", "held_out"),
    ("lomiri-wallpapers-16.04", LOMIRI.format("Wine_by_Jakkub_Mede.jpg"), "living room with a wine bottle", "indoor",
     "held_out"),
    ("lomiri-wallpapers-16.04", LOMIRI.format("aitzgorri_by_Aitzol_Berasategi.jpg"), "mountain meadow", "nature",
     "held_out"),
    ("lomiri-wallpapers-16.04", LOMIRI.format("analogpattern_by_Peter_Nerlich.jpg"), "blurred coloured texture",
     "object", "held_out"),
    ("lomiri-wallpapers-16.04", LOMIRI.format("free_by_Peter_Nerlich.jpg"), "bird in flight under a lamp", "animal",
     "held_out"),
    ("lomiri-wallpapers-16.04", LOMIRI.format("friends_by_Aitzol_Berasategi.jpg"), "two dogs at a door", "animal",
     "held_out"),
    ("lomiri-wallpapers-16.04", LOMIRI.format("greentock_by_Peter_Nerlich.jpg"), "wall clock", "object", "held_out"),
    ("lomiri-wallpapers-16.04", LOMIRI.format("life_by_Aitzol_Berasategi.jpg"), "forest stream over rocks", "nature",
     "held_out"),
    ("lomiri-wallpapers-16.04", LOMIRI.format("picosdeeuropa_by_Aitzol_Berasategi.jpg"), "mountain path", "nature",
     "held_out"),
    ("lomiri-wallpapers-16.04", LOMIRI.format("sunset_by_Aitzol_Berasategi.jpg"), "sunset over a plain", "nature",
     "held_out"),
    ("lomiri-wallpapers-20.04", LOMIRI.format("Kleiber_by_Lukas_Baubkus.jpg"), "nuthatch on a tree trunk", "animal",
     "held_out"),
    ("lxqt-themes", LXQT.format("appleflower.png"), "apple blossom", "apple blossom", "near"),
    ("lxqt-themes", LXQT.format("flowers.png"), "meadow of mixed wild flowers", "wild flower meadow", "near"),
    ("lxqt-themes", LXQT.format("butterfly.png"), "butterfly on a purple flower", "knapweed-like flower", "near"),
    ("mate-backgrounds", MATE.format("FreshFlower.jpg"), "orange gerbera", "gerbera", "near"),
    ("mate-backgrounds", MATE.format("Garden.jpg"), "red marigold", "marigold", "near"),
    ("mate-backgrounds", MATE.format("YellowFlower.jpg"), "yellow gerbera", "gerbera", "near"),
    ("mate-backgrounds", MATE.format("LadyBird.jpg"), "ladybird among forget-me-nots", "forget-me-not", "near"),
]
ROLES = ("train", "development", "held_out", "near")
CROPS_PER_TRAIN_PHOTO = 11  # with the whole photo, 12 views of each training photo
EVAL_SIDE = 1024  # evaluation photos are stored at most this many pixels on their long side
TRAIN_SIDE = 512


def _ar_members(data: bytes):
    """The members of an ar archive (a .deb): (name, bytes)."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not a .deb (ar) archive")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58].decode().strip())
        yield name, data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)


def deb_files(deb: bytes, wanted: set[str]) -> dict[str, bytes]:
    """The files ``wanted`` (paths without a leading ./) from a .deb's data archive."""
    for name, body in _ar_members(deb):
        if name.startswith("data.tar"):
            out = {}
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tf:
                for m in tf:
                    path = m.name.removeprefix("./")
                    if m.isfile() and (path in wanted or path.startswith("usr/share/doc/") and
                                       path.endswith("/copyright")):
                        out[path] = tf.extractfile(m).read()
            return out
    raise ValueError("the .deb has no data archive")


def dep5_licences(text: str) -> list[tuple[list[str], str]]:
    """(Files patterns, License name) for each stanza of a machine-readable Debian copyright file, in order."""
    out = []
    for stanza in text.split("\n\n"):
        files, licence, field = None, None, None
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") and field == "Files":  # a continuation line of the Files field
                files += line.split()
                continue
            field = line.split(":", 1)[0]
            if field == "Files":
                files = line[6:].split()
            elif field == "License" and licence is None:
                licence = line[8:].strip()
        if files and licence:
            out.append((files, licence))
    return out


def licence_of(path: str, stanzas: list[tuple[list[str], str]]) -> str:
    """The licence of ``path`` by DEP-5 rules (the last matching stanza wins). The patterns name paths in the source
    tree, not where the binary package installs them, so a pattern matches the path's tail or its file name."""
    found = "see the package's copyright file"
    name = path.rsplit("/", 1)[-1]
    for patterns, licence in stanzas:
        if any(p == "*" or fnmatch.fnmatch(path, "*/" + p)
               or "*" not in p.rsplit("/", 1)[-1] and name == p.rsplit("/", 1)[-1] for p in patterns):
            found = licence
    return found


def fetch_deb(package: str, dest: Path, debs: str | None, table: dict | None = None) -> Path:
    """The .deb of ``package`` (``table``: package -> (version, pool path, sha256); this module's PACKAGES by default),
    from ``debs``, the cache, apt-get download or Debian's pool, checked against its sha256."""
    version, pool, digest = (PACKAGES if table is None else table)[package]
    target = dest / Path(pool).name
    if debs:
        target = Path(debs) / Path(pool).name
        if not target.is_file():
            found = sorted(Path(debs).glob(f"{package}_*.deb"))
            if not found:
                sys.exit(f"--debs {debs}: no {Path(pool).name}")
            target = found[0]
    elif not target.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest) as tmp:
            if shutil.which("apt-get"):
                print(f"apt-get download {package}={version}", flush=True)
                subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=tmp, check=False,
                               stdout=subprocess.DEVNULL)
            got = sorted(Path(tmp).glob("*.deb"))
            if not got:
                print(f"downloading {POOL}{pool}", flush=True)
                with urllib.request.urlopen(POOL + pool, timeout=120) as r, open(Path(tmp) / "x.deb", "wb") as fh:
                    shutil.copyfileobj(r, fh, 1 << 20)
                got = [Path(tmp) / "x.deb"]
            got[0].rename(target)
    actual = hashlib.sha256(target.read_bytes()).hexdigest()
    if actual != digest:
        sys.exit(f"{target}: sha256 {actual} is not the expected {digest} ({package} {version})")
    return target


def build(out: Path, debs: str | None = None, seed: int = 0) -> dict:
    """Write OUT/{train,development,held_out,near}/*.jpg and OUT/index.json; skip work already done."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    index_path = out / "index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        wanted = {(i[0], i[1], i[4]) for i in IMAGES}
        if ({(r["package"].split()[0], r["source"], r["role"]) for r in index["rows"]} == wanted
                and all((out / r["file"]).is_file() for r in index["rows"])):
            return index
    if out.exists() and not index_path.is_file() and any(out.iterdir()):
        sys.exit(f"{out} holds files this script did not write: give an empty or new folder with --out")
    final, out = out, staging(out, ROLES)
    rows = []
    rng = random.Random(seed)
    for package in PACKAGES:
        mine = [i for i in IMAGES if i[0] == package]
        deb = fetch_deb(package, cache_dir() / "debs", debs)
        files = deb_files(deb.read_bytes(), {i[1] for i in mine})
        copyright_text = next((v.decode("utf-8", "replace") for k, v in files.items()
                               if k == f"usr/share/doc/{package}/copyright"), "")
        stanzas = dep5_licences(copyright_text)
        for _, path, what, category, role in mine:
            if path not in files:
                sys.exit(f"{deb.name} has no {path}")
            im = Image.open(io.BytesIO(files[path])).convert("RGB")
            # a Plasma wallpaper is a folder of sizes (Name/contents/images/WxH.jpg): name it by the folder
            stem = f"{package}__{Path(path).parents[2].name if '/contents/images/' in path else Path(path).stem}"
            base = {"package": f"{package} {PACKAGES[package][0]}", "source": path, "what": what,
                    "category": category, "role": role, "licence": licence_of(path, stanzas),
                    "sha256": hashlib.sha256(files[path]).hexdigest()}
            views = [("", im)]
            if role == "train":  # outlier exposure: the whole photo and seeded crops of 30-70% of its short side
                w, h = im.size
                for k in range(CROPS_PER_TRAIN_PHOTO):
                    s = int(min(w, h) * rng.uniform(0.3, 0.7))
                    x0, y0 = rng.randint(0, w - s), rng.randint(0, h - s)
                    views.append((f"_crop{k:02d}", im.crop((x0, y0, x0 + s, y0 + s))))
            side = TRAIN_SIDE if role == "train" else EVAL_SIDE
            for suffix, view in views:
                view = view.copy()
                view.thumbnail((side, side), Image.LANCZOS)
                rel = f"{role}/{stem}{suffix}.jpg"
                view.save(out / rel, quality=92)
                rows.append(dict(base, file=rel, view="whole" if not suffix else suffix[1:]))
    index = {"command": "python -m scripts.collect.negatives" + (f" --debs {debs}" if debs else ""),
             "images": len(IMAGES), "rows": rows}
    publish(out, final, index)
    return index


def staging(out: Path, roles) -> Path:
    """An empty OUT.partial with a folder per role: a build is written aside, then moved into place (publish)."""
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    for role in roles:
        (partial / role).mkdir(parents=True)
    return partial


def publish(partial: Path, final: Path, index: dict) -> None:
    """Write the index into the finished build and move it to ``final``, replacing an older build there (one that
    has an index.json: the caller checked that ``final`` is not a folder of someone else's files)."""
    atomic_write_text(partial / "index.json", json.dumps(index, indent=1))
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)


def default_dir() -> Path:
    return cache_dir() / "nonflower" / "wallpapers"


def images(role: str, out: Path | None = None, debs: str | None = None) -> list[dict]:
    """The whole photos of one role, in benchmarks/unknown.py's form ({path, package, name, licence, ...})."""
    out = out or default_dir()
    index = build(out, debs)
    return role_images(out, [r for r in index["rows"] if r["view"] == "whole"], role)


def role_images(out: Path, rows: list[dict], role: str) -> list[dict]:
    """The index ``rows`` of one role as benchmarks/unknown.py's photos (also for scripts/collect/edu_photos.py)."""
    return [{"path": str(out / r["file"]), "name": Path(r["file"]).name, "package": r["package"],
             "licence": r["licence"], "category": r["category"], "what": r["what"]}
            for r in rows if r["role"] == role]


def collector_args(doc: str, out: Path) -> argparse.Namespace:
    """The collectors' command line: where the .deb files are (else downloaded) and where the photos go."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--debs", help="folder with the .deb files (skips the download)")
    ap.add_argument("--out", type=Path, default=out)
    return ap.parse_args()


def main() -> None:
    args = collector_args(__doc__, default_dir())
    index = build(args.out, args.debs)
    for role in ROLES:
        n = sum(r["role"] == role for r in index["rows"])
        photos = sum(r["role"] == role and r["view"] == "whole" for r in index["rows"])
        print(f"{role}: {photos} photos, {n} images in {args.out / role}")


if __name__ == "__main__":
    main()
