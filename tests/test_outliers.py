"""Outlier photos (edgeflower.data.outliers, edgeflower.data.claim): the held-out split by source, where the set is
found, the verified download from a local file server, and the photos a user's classes claim."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeflower.data import outliers as od
from edgeflower.data.claim import claims
from edgeflower.errors import DataError, DownloadError

from conftest import COLOURS, make_image

COMMIT = "a" * 40


def row(file, set_="no_flowers", category="nature", repo="someone/photos", path=None, original=None,
        crop="whole", sha="0" * 64):
    return od.Outlier(file=file, sha256=sha, set=set_, category=category, source=f"github.com/{repo}@{COMMIT}",
                      source_path=path or file, original_sha256=original or hashlib.sha256(file.encode()).hexdigest(),
                      licence="CC0", attribution="someone", crop=crop)


def test_packaged_manifest_is_the_set_and_its_held_out_part_is_whole_sources():
    rows = od.packaged_manifest()
    assert len(rows) == 2175 and len({r.file for r in rows}) == 2175
    role = od.roles(rows)
    assert od.roles(rows) == role  # no randomness: the same split on every machine
    held = [r for r in rows if role[r.file] == "heldout"]
    dev = [r for r in rows if role[r.file] != "heldout"]
    # whole sources, Caltech categories and species: none of them has a photo in the development part
    for key in (lambda r: r.repo, lambda r: r.caltech_category, lambda r: r.category if r.set == "other_flowers"
                else None):
        held_keys = {key(r) for r in held} - {None}
        only_held = {k for k in held_keys if not any(key(d) == k for d in dev)}
        assert only_held, "each rule holds out something whole"
    for src in od.HELD_OUT_SOURCES:
        assert {role[r.file] for r in rows if r.repo == src} == {"heldout"}
    assert {role[r.file] for r in rows if r.category == "water_lily"} == {"heldout"}
    # crops of one original never straddle the split
    by_original = {}
    for r in rows:
        by_original.setdefault(r.original_sha256, set()).add(role[r.file])
    assert all(len(v) == 1 for v in by_original.values())
    counts = {p: sum(v == p for v in role.values()) for p in ("train", "val", "heldout")}
    assert counts["heldout"] > 500 and counts["val"] > 200 and counts["train"] > 1000
    kinds = {r.kind for r in held}
    assert {"nature", "animal", "person", "object", "vehicle", "other_flowers"} <= kinds
    assert "lotus" in od.seen_species(rows) and "water_lily" not in od.seen_species(rows)


def test_roles_hold_an_original_out_whole_when_one_crop_is_held_out():
    rows = [row("a_c1.jpg", original="1" * 64), row("a_c2.jpg", original="1" * 64, repo=od.HELD_OUT_SOURCES[0])]
    assert od.roles(rows) == {"a_c1.jpg": "heldout", "a_c2.jpg": "heldout"}


def _photos(folder: Path, n: int, colour=(200, 200, 40)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"p{i:02d}.jpg"
        make_image(colour, seed=i).save(p)
        out.append(p)
    return out


def test_split_of_a_plain_folder_and_of_a_manifest(tmp_path):
    _photos(tmp_path / "plain", 10)
    s = od.split_outliers(tmp_path / "plain")
    assert (len(s["splits"]["train"]), len(s["splits"]["val"]), s["splits"]["test"], s["heldout"]) == (8, 2, [], 0)
    assert s == od.split_outliers(tmp_path / "plain")
    _photos(tmp_path / "few", 3)
    with pytest.raises(DataError, match="has 3 photos; it needs at least 5"):
        od.split_outliers(tmp_path / "few")
    # a set with a manifest: its held-out rows are never in the split, and may be absent
    d = tmp_path / "set"
    files = _photos(d / "no_flowers", 6)
    rows = [row(f"no_flowers/{p.name}") for p in files]
    rows.append(row("no_flowers/held.jpg", repo=od.HELD_OUT_SOURCES[1]))
    od._write_manifest(d / od.MANIFEST, rows, {})
    s = od.split_outliers(d)
    names = [f for part in s["splits"].values() for f, _ in part]
    assert sorted(names) == sorted(f"no_flowers/{p.name}" for p in files) and s["heldout"] == 1
    files[0].unlink()
    with pytest.raises(DataError, match="1 files of its MANIFEST.tsv are missing"):
        od.split_outliers(d)


def test_resolve_order(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEFLOWER_CACHE", str(tmp_path / "cache"))
    given = tmp_path / "given"
    given.mkdir()
    monkeypatch.setenv(od.ENV, "none")
    assert od.resolve(str(given)) == given  # --outliers wins over everything
    assert od.resolve() is None  # EDGEFLOWER_OUTLIERS=none: off
    assert od.resolve(str(given), use=False) is None  # --no-outliers
    monkeypatch.setenv(od.ENV, str(given))
    assert od.resolve() == given
    monkeypatch.setenv(od.ENV, str(tmp_path / "nope"))
    with pytest.raises(DataError, match="EDGEFLOWER_OUTLIERS=.* is not a folder"):
        od.resolve()
    with pytest.raises(DataError, match="--outliers .*: not a folder"):
        od.resolve(str(tmp_path / "nope"))
    # no variable: the cache, else a download; a failed download is said and the run goes on without outliers
    monkeypatch.delenv(od.ENV)
    monkeypatch.setenv(od.URL_ENV, "http://127.0.0.1:9")  # nothing listens on the discard port
    said = []
    assert od.resolve(say=said.append) is None
    assert len(said) == 1 and said[0].startswith("training without outlier photos: cannot download http://127.0.0.1:9/")
    (tmp_path / "cache" / "outliers").mkdir(parents=True)
    (tmp_path / "cache" / "outliers" / od.MANIFEST).write_text("x")
    assert od.resolve() == tmp_path / "cache" / "outliers"


@pytest.fixture()
def file_server(tmp_path):
    """A local HTTP server over tmp_path/www, laid out as {owner}/{repo}/{commit}/{path}."""
    www = tmp_path / "www"
    www.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a, **k: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _original(www: Path, repo: str, path: str, size=(600, 400), colour=(30, 120, 40)) -> bytes:
    """A PNG whose colour changes across it (so that a crop's place shows in its pixels)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([colour[0] + 100 * xx / w, colour[1] + 80 * yy / h, np.full((h, w), colour[2])], -1)
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buf, "PNG")
    dest = www / repo / COMMIT / path
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(buf.getvalue())
    return buf.getvalue()


def test_download_fetches_exactly_the_manifest_and_verifies_it(file_server, tmp_path):
    www, url = file_server
    big = _original(www, "someone/wallpapers", "photos/big lawn.png")
    small = _original(www, "other/set", "a/b.png", size=(120, 90), colour=(90, 90, 200))
    _original(www, "someone/wallpapers", "photos/not_listed.png")  # in the source, not in the manifest
    osha = hashlib.sha256(big).hexdigest()
    rows = [row("no_flowers/nature__lawn_c1.jpg", repo="someone/wallpapers", path="photos/big lawn.png",
                original=osha, crop="box=0,0,300,200"),
            row("no_flowers/nature__lawn_c2.jpg", repo="someone/wallpapers", path="photos/big lawn.png",
                original=osha, crop="box=300,200,600,400"),
            row("other_flowers/lotus__x.jpg", set_="other_flowers", category="lotus", repo="other/set",
                path="a/b.png", original=hashlib.sha256(small).hexdigest())]
    dest = od.download(tmp_path / "cache" / "outliers", rows, base_url=url)
    stored = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.jpg"))
    assert stored == sorted(r.file for r in rows)
    crop = Image.open(dest / "no_flowers/nature__lawn_c2.jpg")
    assert crop.size == (256, 171)  # the 300x200 box, long side 256
    # the file is the crop of the original: the same pixels as cutting it here
    want = Image.open(io.BytesIO(big)).convert("RGB").crop((300, 200, 600, 400)).resize((256, 171), Image.LANCZOS)
    assert np.abs(np.asarray(crop, np.int16) - np.asarray(want, np.int16)).mean() < 2
    other = Image.open(dest / "no_flowers/nature__lawn_c1.jpg")
    assert np.abs(np.asarray(other, np.int16) - np.asarray(want, np.int16)).mean() > 20
    assert Image.open(dest / "other_flowers/lotus__x.jpg").size == (120, 90)  # never enlarged
    written = od.read_manifest(dest / od.MANIFEST)
    assert [r.file for r in written] == [r.file for r in rows]
    assert all(r.sha256 == hashlib.sha256((dest / r.file).read_bytes()).hexdigest() for r in written)
    assert od.split_outliers(dest)["splits"]["train"] or od.split_outliers(dest)["splits"]["val"]


def test_download_with_a_wrong_checksum_leaves_nothing(file_server, tmp_path):
    www, url = file_server
    _original(www, "someone/wallpapers", "p.png")
    rows = [row("no_flowers/nature__p.jpg", repo="someone/wallpapers", path="p.png", original="f" * 64)]
    dest = tmp_path / "cache" / "outliers"
    with pytest.raises(DownloadError, match=r"checksum mismatch for http://127\.0\.0\.1:\d+/someone/wallpapers/"
                                            rf"{COMMIT}/p\.png: got sha256 [0-9a-f]{{64}}, expected f{{64}}"):
        od.download(dest, rows, base_url=url)
    assert not dest.exists() and list((tmp_path / "cache").iterdir()) == []
    missing = [row("no_flowers/nature__q.jpg", repo="someone/wallpapers", path="q.png")]
    with pytest.raises(DownloadError, match="cannot download .*q.png: .*--outliers DIR"):
        od.download(dest, missing, base_url=url)
    assert not dest.exists()


def test_claims_take_photos_as_close_as_a_class_own_photos():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    labels = np.repeat(np.arange(3), 20)
    feats = centres[labels] + 0.3 * rng.normal(size=(60, 16))
    like_class_1 = centres[1] + 0.15 * rng.normal(size=(5, 16))  # plainly photos of class 1
    unrelated = rng.normal(size=(5, 16)) * 1.5
    hit, cls, sim = claims(feats, labels, np.concatenate([like_class_1, unrelated]))
    assert hit.tolist() == [True] * 5 + [False] * 5
    assert cls[:5].tolist() == [1] * 5
    assert (sim[:5] > sim[5:].max()).all()


@pytest.mark.slow
def test_train_on_own_classes_lists_and_leaves_out_the_outliers_they_claim(synth_data, synth_split, tmp_path):
    from edgeflower.training.loop import TrainConfig, train

    out = tmp_path / "outliers"
    out.mkdir()
    for i in range(8):  # photos of one of the user's classes, as a generic set may hold
        make_image(COLOURS["red"], seed=50_000 + i).save(out / f"red_{i}.jpg")
    for i in range(16):  # and photos of none of them
        make_image((230, 230, 230) if i % 2 else (200, 200, 30), seed=60_000 + i).save(out / f"other_{i}.jpg")
    said = []
    # pretrained features (the ImageNet weights of the edgeflower[lite] package): random ones say nothing
    r = train(TrainConfig(model="efficientnet_lite0", input_size=32, data=str(synth_data),
                          split=str(synth_split), out=str(tmp_path / "run"), epochs=2, aug_views=1, verbose=0,
                          outliers=str(out)), say=said.append)
    part = next(p for p in r.config["background"]["parts"] if p["kind"] == "outliers")
    claimed = {c["path"].split(":", 1)[1] for c in part["claimed"]}
    assert claimed and all(name.startswith("red_") for name in claimed)
    assert {c["class"] for c in part["claimed"]} == {"red"}
    kept = {f for s in part["splits"].values() for f, _ in s}
    assert not claimed & kept and {f"other_{i}.jpg" for i in range(16)} <= kept
    assert any(f"left out {len(claimed)} outlier photos that your classes claim" in m for m in said)
    assert r.config["outlier_photos"]["claimed"] == len(claimed)
    assert r.config["classes"][-1] == "background"
    saved = json.loads((r.run_dir / "config.json").read_text())
    assert saved["outlier_photos"]["train"] + saved["outlier_photos"]["val"] == len(kept)
    report = (r.run_dir / "report.md").read_text()
    assert (f"outlier photos (the background class, answered unknown): {saved['outlier_photos']['train']} train, "
            f"{saved['outlier_photos']['val']} val") in report and f"{len(claimed)} claimed by the classes" in report


@pytest.mark.slow
def test_cli_train_takes_outliers_and_turns_them_off(synth_data, synth_split, tmp_path):
    from conftest import run_cli

    out = tmp_path / "outliers"
    _photos(out, 10)
    common = ("train", "--model", "cnn", "--data", synth_data, "--split", synth_split, "--epochs", 1,
              "--input-size", 32)
    r = run_cli(*common, "--outliers", out, "--out", tmp_path / "with")
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = json.loads((tmp_path / "with" / "config.json").read_text())
    assert cfg["classes"][-1] == "background" and cfg["outlier_photos"]["train"] == 8
    assert "outlier photos in the background class: 10 (8 train, 2 val)" in r.stdout
    # the variable names the default set; --no-outliers wins over it
    r = run_cli(*common, "--no-outliers", "--out", tmp_path / "without", env={od.ENV: str(out)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "without" / "config.json").read_text())["classes"] == sorted(COLOURS)
    bad = run_cli(*common, "--outliers", tmp_path / "nope")
    assert bad.returncode == 2 and "--outliers" in bad.stderr
