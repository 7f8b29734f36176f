"""scripts/collect/edu_photos.py: the Qt resource reader, the licence of a converted photo, duplicates across
roles and a whole build, on synthetic packages."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from test_collect_negatives import _deb, _jpeg

from scripts.collect import edu_photos, negatives

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2020, Somebody
License: GPL-3+

Files: src/activities/zoo/resource/lion.jpg
Copyright: 2021, A Photographer
License: CC-BY-SA-4.0
"""


def _rcc(files: dict[str, bytes], compress: set[str] = frozenset()) -> bytes:
    """A Qt binary resource file (format version 3) holding ``files`` ({'a/b/c.webp': bytes})."""
    tree: dict = {}
    for path, body in files.items():
        node = tree
        *dirs, leaf = path.split("/")
        for d in dirs:
            node = node.setdefault(d, {})
        node[leaf] = path
    names, data, entries = bytearray(), bytearray(), []

    def name_offset(n: str) -> int:
        off = len(names)
        names.extend(struct.pack(">HI", len(n), 0) + n.encode("utf-16-be"))
        return off

    # breadth first: the children of each directory are consecutive entries
    entries.append(None)
    queue = [(0, "", tree)]
    while queue:
        index, name, node = queue.pop(0)
        first = len(entries)
        children = sorted(node.items())
        entries.extend([None] * len(children))
        entries[index] = struct.pack(">IHII", name_offset(name) if index else 0, 2, len(children), first) + bytes(8)
        for i, (child, value) in enumerate(children):
            if isinstance(value, dict):
                queue.append((first + i, child, value))
                continue
            body, flags = files[value], 0
            if value in compress:
                body, flags = struct.pack(">I", len(body)) + zlib.compress(body), 1
            entries[first + i] = (struct.pack(">IHHHI", name_offset(child), flags, 0, 0, len(data)) + bytes(8))
            data.extend(struct.pack(">I", len(body)) + body)
    tree_bytes = b"".join(entries)
    header = 24
    return (b"qres" + struct.pack(">IIIII", 3, header, header + len(tree_bytes) + len(names), header + len(tree_bytes),
                                  0) + tree_bytes + bytes(names) + bytes(data))


def _webp(seed: int, size=(320, 240)) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(_jpeg(seed, size))).save(buf, "WEBP")
    return buf.getvalue()


def test_read_rcc_reads_every_file_raw_and_compressed():
    files = {"gcompris/src/activities/zoo/resource/lion.webp": b"\x01" * 50,
             "gcompris/src/activities/zoo/resource/sub/owl.webp": b"owl bytes",
             "gcompris/src/activities/zoo/zoo.svg": b"<svg/>"}
    got = edu_photos.read_rcc(_rcc(files, compress={"gcompris/src/activities/zoo/resource/lion.webp"}))
    assert got == {"/" + k: v for k, v in files.items()}
    with pytest.raises(ValueError, match="qres"):
        edu_photos.read_rcc(b"PK\x03\x04")


def test_a_converted_photo_keeps_its_own_licence():
    stanzas = negatives.dep5_licences(COPYRIGHT)
    # the copyright file names the .jpg of the source tree, the package ships it as .webp
    assert edu_photos.licence("gcompris/src/activities/zoo/resource/lion.webp", stanzas) == "CC-BY-SA-4.0"
    assert edu_photos.licence("gcompris/src/activities/zoo/resource/owl.webp", stanzas) == "GPL-3+"


def test_a_held_out_copy_of_a_development_photo_is_dropped():
    a, b = (Image.open(io.BytesIO(_jpeg(s))).convert("RGB") for s in (1, 2))
    photos = [{"source": "held/a", "role": "held_out"}, {"source": "dev/a", "role": "development"},
              {"source": "held/b", "role": "held_out"}]
    keep, dropped = edu_photos.drop_duplicates(photos, [a.resize((500, 400)), a, b])
    assert keep == [1, 2]  # the development copy stays, whatever the order
    assert dropped[0]["dropped"] == "held/a" and dropped[0]["kept"] == "dev/a"


def test_a_cut_out_is_put_on_grey():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    out = np.asarray(edu_photos.on_grey(Image.fromarray(rgba, "RGBA")))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[3, 3]) == (128, 128, 128)


def test_build_roles_licences_and_sizes(tmp_path, monkeypatch):
    zoo = {"gcompris/src/activities/zoo/resource/lion.webp": _webp(1),
           "gcompris/src/activities/zoo/resource/bee.webp": _webp(2),
           "gcompris/src/activities/zoo/resource/icon.webp": _webp(3, (64, 64)),
           "gcompris/src/activities/zoo/zoo.svg": b"<svg/>"}
    sea = {"gcompris/src/activities/sea/resource/lion_again.webp":
           zoo["gcompris/src/activities/zoo/resource/lion.webp"],
           "gcompris/src/activities/sea/resource/reef.webp": _webp(4)}
    stamp = io.BytesIO()
    Image.new("RGBA", (300, 300), (200, 0, 0, 0)).save(stamp, "PNG")
    gcompris = _deb({edu_photos.RCC.format("zoo"): _rcc(zoo), edu_photos.RCC.format("sea"): _rcc(sea),
                     "usr/share/doc/gcompris-qt-data/copyright": COPYRIGHT.encode()})
    tux = _deb({edu_photos.TUXPAINT.format("iris"): stamp.getvalue(),
                "usr/share/doc/tuxpaint-stamps-default/copyright": COPYRIGHT.encode()})
    debs = tmp_path / "debs"
    debs.mkdir()
    table = {}
    for name, body in (("gcompris-qt-data", gcompris), ("tuxpaint-stamps-default", tux)):
        (debs / f"{name}_1.0_all.deb").write_bytes(body)
        table[name] = ("1.0", f"pool/main/x/{name}_1.0_all.deb", hashlib.sha256(body).hexdigest())
    monkeypatch.setattr(edu_photos, "PACKAGES", table)
    monkeypatch.setattr(edu_photos, "GCOMPRIS", [("zoo", "zoo/resource/bee.*", "wild flower", "near"),
                                                 ("zoo", "zoo/resource/*", "animal", "development"),
                                                 ("sea", "sea/resource/*", "nature", "held_out")])
    monkeypatch.setattr(edu_photos, "STAMPS", [("iris", "bearded iris", "near_cutout")])
    out = tmp_path / "edu"
    index = edu_photos.build(out, str(debs))
    by_role = {r: sorted(o["name"] for o in edu_photos.images(r, out, str(debs))) for r in edu_photos.ROLES}
    assert by_role["development"] == ["gcompris-qt-data__zoo__resource__lion.jpg"]  # the icon is too small
    assert by_role["near"] == ["gcompris-qt-data__zoo__resource__bee.jpg"]  # the first matching rule wins
    assert by_role["held_out"] == ["gcompris-qt-data__sea__resource__reef.jpg"]  # its copy of the lion is dropped
    assert by_role["near_cutout"] == ["tuxpaint-stamps-default__iris.jpg"]
    assert [d["dropped"].rsplit("/", 1)[-1] for d in index["duplicates_dropped"]] == ["lion_again.webp"]
    lic = {r["file"].rsplit("__", 1)[-1]: r["licence"] for r in index["rows"]}
    assert lic["lion.jpg"] == "CC-BY-SA-4.0" and lic["reef.jpg"] == "GPL-3+"
    cut = np.asarray(Image.open(out / "near_cutout" / "tuxpaint-stamps-default__iris.jpg"))
    assert np.abs(cut.astype(int) - 128).max() <= 3  # fully transparent: grey
    # the index is reused while the selection is the same
    stamp_ns = (out / "index.json").stat().st_mtime_ns
    assert edu_photos.build(out, str(debs)) == index and (out / "index.json").stat().st_mtime_ns == stamp_ns
