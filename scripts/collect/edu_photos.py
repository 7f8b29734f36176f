"""More photos for the `unknown` benchmark, from two Debian education packages: 289 photos without the five flowers
(animals, people, objects, tools, buildings, underwater scenes, planets), 23 flowers of other species and, as a
control, two cut-out roses.

    python -m scripts.collect.edu_photos [--debs DIR] [--out DIR]

- gcompris-qt-data (GCompris 3.1, the children's activity suite): the photographs inside its Qt resource files
  (``.rcc``), read by this module. Each activity goes to one role only:
  - ``development`` (methods and settings are chosen on it): the categorization activity's photos (fish, monuments,
    household objects, dams, solar panels and windmills, tools), the erase activity's animals, the hands of
    leftright and the photos of louis-braille;
  - ``held_out`` (only reported): the explore activities (monuments of eight countries, world and farm animals,
    musicians of the world), the photo backgrounds of details (castles, monuments), clickgame's underwater scenes
    and the planets of solar_system;
  - ``near``: the two erase photos with flowers in them (a bee at quince blossom, a butterfly on a wild flower).
  A photo that two activities share (categorization and explore_monuments have three in common) is found by the
  correlation of 32 x 32 grey thumbnails and kept in the development role only. Other photos of the same monument
  (the Eiffel Tower, the Taj Mahal) stay in both roles: they are different photos of it.
  Paintings, drawings, cartoons and the cut-up photos of babyshapes are left out.
- tuxpaint-stamps-default (Tux Paint's stamps, 2022.06.04): the photographed flowers of its plants/flowers folder,
  cut out on a transparent background. Here they are put on mid grey, and they form ``near_cutout``: flowers of other
  species (anemone, iris, daffodil, marigold, gazania, petunias, hibiscus and more). The rose and the wild rose among
  them are one of the five classes, so they form ``cutout_control``: if those are answered `unknown` too, the grey
  background rather than the species is what the rule rejects. The seed head is left out.

Every image's licence is read from its package's Debian copyright file (DEP-5; GCompris records one per photo, and
the photos were converted from .jpg/.png to .webp when the package was built, so the copyright entry of the same
name with another extension applies). The .deb files come from ``apt-get download`` or Debian's pool, checked against
the sha256 below (scripts/collect/negatives.py); about 205 MB downloaded once. Numpy and Pillow only.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import struct
import sys
import zlib
from collections import Counter
from pathlib import Path

from edgeflower.util.files import cache_dir
from scripts.collect import negatives

# package: (version, pool path, sha256 of the .deb) -- Debian 12 bookworm
PACKAGES = {
    "gcompris-qt-data": ("3.1-2", "pool/main/g/gcompris-qt/gcompris-qt-data_3.1-2_all.deb",
                         "e9cf06ab2105529068df73085784e835d2ff03f870d2a8091f09125d40abac9f"),
    "tuxpaint-stamps-default": (
        "2022.06.04-1", "pool/main/t/tuxpaint-stamps/tuxpaint-stamps-default_2022.06.04-1_all.deb",
        "6db6c1bfc870a47f1499d6203b083522eacb57c5f9c87d468f2e92eb6d9d5f34"),
}
RCC = "usr/share/gcompris-qt/rcc/{}.rcc"
ACTIVITIES = "/gcompris/src/activities/"
# (activity, pattern under ACTIVITIES, category, role); a photo is taken by the first rule that matches it
GCOMPRIS = [
    ("erase", "erase/resource/bee.*", "flowering quince, with a bee", "near"),
    ("erase", "erase/resource/butterfly.*", "wild flower, with a butterfly", "near"),
    ("categorization", "categorization/resource/images/fishes/*", "animal", "development"),
    ("categorization", "categorization/resource/images/monuments/*", "building", "development"),
    ("categorization", "categorization/resource/images/renewable/*", "building", "development"),
    ("categorization", "categorization/resource/images/others/igloo.*", "building", "development"),
    ("categorization", "categorization/resource/images/others/*", "object", "development"),
    ("categorization", "categorization/resource/images/tools/*", "object", "development"),
    ("categorization", "categorization/resource/images/alphabets/*", "object", "development"),
    ("categorization", "categorization/resource/images/numbers/*", "object", "development"),
    ("erase", "erase/resource/*", "animal", "development"),
    ("leftright", "leftright/resource/*", "person", "development"),
    ("louis-braille", "louis-braille/resource/teach.*", "person", "development"),
    ("louis-braille", "louis-braille/resource/fireplace.*", "indoor", "development"),
    ("louis-braille", "louis-braille/resource/workshop.*", "indoor", "development"),
    ("louis-braille", "louis-braille/resource/rnib.*", "building", "development"),
    ("louis-braille", "louis-braille/resource/statue.*", "building", "development"),
    ("louis-braille", "louis-braille/resource/braille*", "object", "development"),
    ("explore_monuments", "explore_monuments/resource/*/*", "building", "held_out"),
    ("explore_world_animals", "explore_world_animals/resource/animals/*", "animal", "held_out"),
    ("explore_farm_animals", "explore_farm_animals/resource/animals/*", "animal", "held_out"),
    ("explore_world_music", "explore_world_music/resource/music/*", "person", "held_out"),
    *[("details", f"details/resource/image/{name}_background.*", "building", "held_out")
      for name in ("Chenonceau", "EgeskovSlotSpejling", "EilanDonanCastle", "FanoeWindmill", "GizahPyramids",
                   "Louvre_2007_02_24_c", "NDP", "Nagoya", "Neuschwanstein", "OperaSidney", "TajMahal", "TourEiffel",
                   "TowerBridgeLondon")],
    ("clickgame", "clickgame/resource/sea*", "nature", "held_out"),
    ("solar_system", "solar_system/resource/*", "space", "held_out"),
]
MIN_SIDE = 150  # smaller pictures in the resources are icons and thumbnails
TUXPAINT = "usr/share/tuxpaint/stamps/plants/flowers/{}.png"
# (stamp, what it shows, role): the species as far as the photo shows it
STAMPS = [
    ("adeenia", "adenium (desert rose)", "near_cutout"), ("anemone_red", "red anemone", "near_cutout"),
    ("anthoorium", "anthurium", "near_cutout"), ("bolsom", "white balsam", "near_cutout"),
    ("chemparathi", "pink hibiscus", "near_cutout"), ("daffodil", "daffodil", "near_cutout"),
    ("flower1", "purple azalea-like flower", "near_cutout"), ("flower10", "red hibiscus", "near_cutout"),
    ("flower2", "yellow five-petal flower", "near_cutout"),
    ("flower3", "yellow ray flower, dark centre (rudbeckia-like)", "near_cutout"),
    ("flower4", "violet potato-vine-like flowers", "near_cutout"), ("flower5", "yellow-green hibiscus-like flower",
                                                                      "near_cutout"),
    ("flower6", "pink star-shaped flower", "near_cutout"), ("flower7", "orange lantana-like cluster", "near_cutout"),
    ("flower9", "pink petunia with rain drops", "near_cutout"), ("iris", "bearded iris", "near_cutout"),
    ("marigold", "marigold", "near_cutout"), ("pigface", "pigface (ice plant)", "near_cutout"),
    ("red-gazania", "red gazania", "near_cutout"), ("whitestar-petunia", "purple and white petunia", "near_cutout"),
    ("yellow-flower", "yellow daisy-like flower (osteospermum-like)", "near_cutout"),
    ("rose", "red garden rose (one of the five)", "cutout_control"),
    ("flower8", "pink wild rose (one of the five)", "cutout_control"),
]
ROLES = ("development", "held_out", "near", "near_cutout", "cutout_control")
EVAL_SIDE = 1024
# thumbnails this correlated are copies of one photo (the shared ones correlate at 1.0; two planets on black, 0.91)
DUPLICATE_CORRELATION = 0.95


def read_rcc(buf: bytes) -> dict[str, bytes]:
    """The files of a Qt binary resource file (.rcc, format versions 1-3): {path: bytes}. Entries are stored raw,
    zlib-compressed (qCompress: a 4-byte size, then zlib) or zstd-compressed (needs the zstandard package)."""
    if buf[:4] != b"qres":
        raise ValueError("not a Qt resource file (no 'qres' magic)")
    version, tree, data, names = struct.unpack(">IIII", buf[4:20])
    entry = 14 if version == 1 else 22  # version 2 added an 8-byte modification time to every entry

    def name(offset: int) -> str:
        (n,) = struct.unpack(">H", buf[names + offset:names + offset + 2])
        return buf[names + offset + 6:names + offset + 6 + 2 * n].decode("utf-16-be")

    out: dict[str, bytes] = {}
    stack = [(0, "")]
    while stack:
        i, prefix = stack.pop()
        e = tree + i * entry
        name_offset, flags = struct.unpack(">IH", buf[e:e + 6])
        path = f"{prefix}/{name(name_offset)}" if i else ""
        if flags & 2:  # a directory: its children are consecutive entries
            count, first = struct.unpack(">II", buf[e + 6:e + 14])
            stack += [(c, path) for c in range(first, first + count)]
            continue
        (offset,) = struct.unpack(">I", buf[e + 10:e + 14])
        (size,) = struct.unpack(">I", buf[data + offset:data + offset + 4])
        raw = buf[data + offset + 4:data + offset + 4 + size]
        if flags & 1:
            raw = zlib.decompress(raw[4:])
        elif flags & 4:
            import zstandard

            raw = zstandard.ZstdDecompressor().decompress(raw)
        out[path] = raw
    return out


def licence(path: str, stanzas) -> str:
    """The DEP-5 licence of a GCompris resource: the entry for the same name with the extension it had in the source
    tree (the build converted .jpg and .png to .webp) when there is one, else the entry for the path itself."""
    stem = path.rsplit(".", 1)[0]
    default = negatives.licence_of(path, stanzas)
    for ext in (".jpg", ".jpeg", ".png", ".svg", ".webp"):
        found = negatives.licence_of(stem + ext, stanzas)
        if found != negatives.licence_of(stem + ".no-such-extension", stanzas):
            return found
    return default


def gcompris_photos(files: dict[str, bytes]) -> list[dict]:
    """The photos GCOMPRIS selects from the package's resource files, each {source, bytes, category, role, ...}."""
    from PIL import Image

    out = []
    for activity in dict.fromkeys(a for a, *_ in GCOMPRIS):
        resources = read_rcc(files[RCC.format(activity)])
        for path in sorted(resources):
            rel = path.removeprefix(ACTIVITIES)
            rule = next((r for r in GCOMPRIS if r[0] == activity and fnmatch.fnmatch(rel, r[1])), None)
            if rule is None or not rel.lower().endswith((".webp", ".jpg", ".jpeg", ".png")):
                continue
            with Image.open(io.BytesIO(resources[path])) as im:
                if min(im.size) < MIN_SIDE:
                    continue
            out.append({"source": f"{RCC.format(activity)}:{path}", "path": path.lstrip("/"), "bytes": resources[path],
                        "category": rule[2], "role": rule[3], "what": Path(rel).stem.replace("_", " ")})
    return out


def thumbnail(im):
    """A 32 x 32 grey thumbnail, zero mean and unit norm: the dot product of two is their correlation."""
    import numpy as np

    g = np.asarray(im.convert("L").resize((32, 32)), np.float32).ravel()
    g -= g.mean()
    return g / max(float(np.linalg.norm(g)), 1e-6)


def drop_duplicates(photos: list[dict], images: list) -> tuple[list[int], list[dict]]:
    """Indices to keep, and the pairs dropped: a held-out photo that correlates above DUPLICATE_CORRELATION with a
    development photo (or an earlier photo of its own role) is dropped."""
    import numpy as np

    t = np.stack([thumbnail(im) for im in images])
    order = sorted(range(len(photos)), key=lambda i: (photos[i]["role"] != "development", i))
    keep, dropped = [], []
    for i in order:
        if keep:
            c = t[keep] @ t[i]
            j = int(np.argmax(c))
            if c[j] > DUPLICATE_CORRELATION:
                dropped.append({"dropped": photos[i]["source"], "kept": photos[keep[j]]["source"],
                                "correlation": round(float(c[j]), 3)})
                continue
        keep.append(i)
    return sorted(keep), dropped


def on_grey(im):
    from PIL import Image

    im = im.convert("RGBA")
    bg = Image.new("RGBA", im.size, (128, 128, 128, 255))
    return Image.alpha_composite(bg, im).convert("RGB")


def build(out: Path, debs: str | None = None) -> dict:
    """Write OUT/<role>/*.jpg and OUT/index.json; skip the work when an index of the same selection is there."""
    from PIL import Image

    index_path = out / "index.json"
    selection = hashlib.sha256(json.dumps([GCOMPRIS, STAMPS, MIN_SIDE, DUPLICATE_CORRELATION]).encode()).hexdigest()
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if index.get("selection") == selection and all((out / r["file"]).is_file() for r in index["rows"]):
            return index
    if out.exists() and not index_path.is_file() and any(out.iterdir()):
        sys.exit(f"{out} holds files this script did not write: give an empty or new folder with --out")
    final, out = out, negatives.staging(out, ROLES)
    rows = []
    # GCompris
    package = "gcompris-qt-data"
    deb = negatives.fetch_deb(package, cache_dir() / "debs", debs, PACKAGES)
    wanted = {RCC.format(a) for a, *_ in GCOMPRIS}
    files = negatives.deb_files(deb.read_bytes(), wanted)
    stanzas = negatives.dep5_licences(files[f"usr/share/doc/{package}/copyright"].decode("utf-8", "replace"))
    photos = gcompris_photos(files)
    images = [Image.open(io.BytesIO(p["bytes"])).convert("RGB") for p in photos]
    keep, dropped = drop_duplicates(photos, images)
    for i in keep:
        p, im = photos[i], images[i]
        rel = f"{p['role']}/{package}__{p['path'].removeprefix('gcompris/src/activities/').replace('/', '__')}"
        rel = rel.rsplit(".", 1)[0] + ".jpg"
        im.thumbnail((EVAL_SIDE, EVAL_SIDE), Image.LANCZOS)
        im.save(out / rel, quality=92)
        rows.append({"file": rel, "package": f"{package} {PACKAGES[package][0]}", "source": p["source"],
                     "what": p["what"], "category": p["category"], "role": p["role"],
                     "licence": licence(p["path"], stanzas),
                     "sha256": hashlib.sha256(p["bytes"]).hexdigest()})
    # Tux Paint
    package = "tuxpaint-stamps-default"
    deb = negatives.fetch_deb(package, cache_dir() / "debs", debs, PACKAGES)
    files = negatives.deb_files(deb.read_bytes(), {TUXPAINT.format(s) for s, *_ in STAMPS})
    stanzas = negatives.dep5_licences(files[f"usr/share/doc/{package}/copyright"].decode("utf-8", "replace"))
    for stamp, what, role in STAMPS:
        path = TUXPAINT.format(stamp)
        im = on_grey(Image.open(io.BytesIO(files[path])))
        im.thumbnail((EVAL_SIDE, EVAL_SIDE), Image.LANCZOS)
        rel = f"{role}/{package}__{stamp}.jpg"
        im.save(out / rel, quality=92)
        rows.append({"file": rel, "package": f"{package} {PACKAGES[package][0]}", "source": path, "what": what,
                     "category": what, "role": role, "licence": negatives.licence_of(path, stanzas),
                     "sha256": hashlib.sha256(files[path]).hexdigest()})
    index = {"command": "python -m scripts.collect.edu_photos" + (f" --debs {debs}" if debs else ""),
             "selection": selection, "duplicates_dropped": dropped, "rows": rows}
    negatives.publish(out, final, index)
    return index


def default_dir() -> Path:
    return cache_dir() / "nonflower" / "edu"


def images(role: str, out: Path | None = None, debs: str | None = None) -> list[dict]:
    """The photos of one role, in benchmarks/unknown.py's form ({path, package, name, licence, category, what})."""
    out = out or default_dir()
    return negatives.role_images(out, build(out, debs)["rows"], role)


def main() -> None:
    args = negatives.collector_args(__doc__, default_dir())
    index = build(args.out, args.debs)
    for role in ROLES:
        rows = [r for r in index["rows"] if r["role"] == role]
        cats = dict(Counter(r["category"] for r in rows))
        print(f"{role}: {len(rows)} photos" + ("" if role.startswith(("near", "cutout")) else f" {cats}"))
    print(f"duplicates dropped: {len(index['duplicates_dropped'])}")
    for d in index["duplicates_dropped"]:
        print(f"  {d['dropped']} ~ {d['kept']} ({d['correlation']})")


if __name__ == "__main__":
    main()
