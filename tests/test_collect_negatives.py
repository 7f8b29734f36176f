"""scripts/collect/negatives.py: the .deb reader, the licence lookup and the roles, on a synthetic package."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from scripts.collect import negatives

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2020, Somebody
License: GPL-2+

Files: 16.04/Lake.jpg
       16.04/Hill.jpg
Copyright: 2021, A Photographer
License: CC-BY-4.0

Files: debian/*
Copyright: 2022, A Packager
License: Expat
"""


def _jpeg(seed: int, size=(640, 480)) -> bytes:
    x = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(x).save(buf, "JPEG")
    return buf.getvalue()


def _deb(files: dict[str, bytes]) -> bytes:
    """A minimal .deb: an ar archive with debian-binary and an xz data tarball."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as tf:
        for name, body in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    out = io.BytesIO()
    out.write(b"!<arch>\n")
    for name, body in (("debian-binary", b"2.0\n"), ("data.tar.xz", data.getvalue())):
        out.write(f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode())
        out.write(body + (b"\n" if len(body) % 2 else b""))
    return out.getvalue()


def test_licence_follows_dep5_continuation_lines_and_the_last_match():
    stanzas = negatives.dep5_licences(COPYRIGHT)
    assert stanzas[1] == (["16.04/Lake.jpg", "16.04/Hill.jpg"], "CC-BY-4.0")
    # installed elsewhere than in the source tree: the file name still finds its stanza
    assert negatives.licence_of("usr/share/backgrounds/Hill.jpg", stanzas) == "CC-BY-4.0"
    assert negatives.licence_of("usr/share/backgrounds/Other.jpg", stanzas) == "GPL-2+"
    # debian/* names the packaging only, not every file with any name
    assert negatives.licence_of("usr/share/backgrounds/Lake.jpg", stanzas) == "CC-BY-4.0"


def test_reads_files_and_copyright_out_of_a_deb():
    deb = _deb({"usr/share/backgrounds/Lake.jpg": b"lake", "usr/share/backgrounds/Skip.jpg": b"skip",
                "usr/share/doc/pkg/copyright": COPYRIGHT.encode()})
    got = negatives.deb_files(deb, {"usr/share/backgrounds/Lake.jpg"})
    assert got["usr/share/backgrounds/Lake.jpg"] == b"lake"
    assert "usr/share/doc/pkg/copyright" in got and "usr/share/backgrounds/Skip.jpg" not in got
    with pytest.raises(ValueError, match="not a .deb"):
        negatives.deb_files(b"PK\x03\x04 a zip", set())


@pytest.fixture()
def fake_packages(tmp_path, monkeypatch):
    """Two packages in the module's tables: one with a training photo, one with an evaluation photo and a flower."""
    files_a = {"usr/share/backgrounds/Lake.jpg": _jpeg(1), "usr/share/doc/pkg-a/copyright": COPYRIGHT.encode()}
    files_b = {"usr/share/backgrounds/Hill.jpg": _jpeg(2), "usr/share/backgrounds/Rose.jpg": _jpeg(3),
               "usr/share/doc/pkg-b/copyright": COPYRIGHT.encode()}
    debs = tmp_path / "debs"
    debs.mkdir()
    packages = {}
    for name, files in (("pkg-a", files_a), ("pkg-b", files_b)):
        body = _deb(files)
        (debs / f"{name}_1.0_all.deb").write_bytes(body)
        packages[name] = ("1.0", f"pool/main/p/{name}/{name}_1.0_all.deb", hashlib.sha256(body).hexdigest())
    monkeypatch.setattr(negatives, "PACKAGES", packages)
    monkeypatch.setattr(negatives, "IMAGES", [
        ("pkg-a", "usr/share/backgrounds/Lake.jpg", "a lake", "nature", "train"),
        ("pkg-b", "usr/share/backgrounds/Hill.jpg", "a hill", "nature", "held_out"),
        ("pkg-b", "usr/share/backgrounds/Rose.jpg", "not one of ours", "other rose", "near")])
    return debs


def test_roles_crops_and_index(fake_packages, tmp_path):
    out = tmp_path / "neg"
    index = negatives.build(out, str(fake_packages))
    train = sorted((out / "train").iterdir())
    assert len(train) == 1 + negatives.CROPS_PER_TRAIN_PHOTO  # the whole photo and its crops
    assert max(Image.open(p).size[0] for p in train) <= negatives.TRAIN_SIDE
    assert [p.name for p in (out / "held_out").iterdir()] == ["pkg-b__Hill.jpg"]
    held = negatives.images("held_out", out, str(fake_packages))
    assert held[0]["licence"] == "CC-BY-4.0" and held[0]["category"] == "nature"
    assert [o["name"] for o in negatives.images("near", out, str(fake_packages))] == ["pkg-b__Rose.jpg"]
    # no photo in two roles
    roles = {}
    for r in index["rows"]:
        roles.setdefault(r["sha256"], set()).add(r["role"])
    assert all(len(v) == 1 for v in roles.values())
    assert json.loads((out / "index.json").read_text())["images"] == 3


def test_a_changed_deb_is_refused(fake_packages, tmp_path):
    deb = fake_packages / "pkg-a_1.0_all.deb"
    deb.write_bytes(deb.read_bytes() + b"x")
    with pytest.raises(SystemExit, match="sha256"):
        negatives.build(tmp_path / "neg", str(fake_packages))


def test_a_folder_it_did_not_write_is_left_alone(fake_packages, tmp_path):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(SystemExit, match="did not write"):
        negatives.build(mine, str(fake_packages))
    assert (mine / "holiday.jpg").read_bytes() == b"not ours"


def test_a_second_build_reuses_the_first_and_a_changed_table_rebuilds(fake_packages, tmp_path, monkeypatch):
    out = tmp_path / "neg"
    first = negatives.build(out, str(fake_packages))
    stamp = (out / "index.json").stat().st_mtime_ns
    assert negatives.build(out, str(fake_packages)) == first and (out / "index.json").stat().st_mtime_ns == stamp
    monkeypatch.setattr(negatives, "IMAGES", negatives.IMAGES[:2])  # a photo left out of the table
    again = negatives.build(out, str(fake_packages))
    assert len({r["source"] for r in again["rows"]}) == 2
    assert not list((out / "near").iterdir()) and not out.with_name("neg.partial").exists()
