"""Dataset resolution, download (from a local server), checks on bad files, and the frozen split."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import tarfile
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeflower.data import source
from edgeflower.data.check import check_dataset
from edgeflower.data.split import TEST_SUPPORTS, load_manifest, make_split, split_items, verify_files, write_manifest
from edgeflower.errors import DataError, DownloadError

from conftest import SHARED_DATA, make_dataset, make_image, needs_shared, run_cli


# ------------------------------------------------------------------ resolution and download
def test_resolution_order(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    monkeypatch.setenv("EDGEFLOWER_DATA", str(b))
    assert source.resolve_data_dir(str(a)) == a
    assert source.resolve_data_dir(None) == b
    monkeypatch.delenv("EDGEFLOWER_DATA")
    monkeypatch.setenv("EDGEFLOWER_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "datasets" / "flower_photos" / "daisy"
    cached.mkdir(parents=True)
    assert source.resolve_data_dir(None) == cached.parent
    with pytest.raises(DataError, match="does not exist"):
        source.resolve_data_dir(str(tmp_path / "nope"))


def _archive(tmp_path: Path) -> tuple[bytes, str]:
    root = make_dataset(tmp_path / "src" / "flower_photos", per_class=3)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(root, arcname="flower_photos")
    data = buf.getvalue()
    return data, hashlib.sha256(data).hexdigest()


class _Server:
    def __init__(self, payload: bytes, truncate: bool = False):
        payload_ = payload

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload_)))
                self.end_headers()
                self.wfile.write(payload_[: len(payload_) // 2] if truncate else payload_)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/flower_photos.tgz"

    def close(self):
        self.httpd.shutdown()


def test_download_verifies_and_extracts_atomically(tmp_path, monkeypatch):
    payload, digest = _archive(tmp_path)
    srv = _Server(payload)
    try:
        monkeypatch.setenv("EDGEFLOWER_CACHE", str(tmp_path / "cache"))
        d = source.resolve_data_dir(None, url=srv.url, sha256=digest)
        assert d == tmp_path / "cache" / "datasets" / "flower_photos"
        assert sorted(p.name for p in d.iterdir()) == ["blue", "green", "red"]
        # no temporary files left beside it
        assert [p.name for p in d.parent.iterdir()] == ["flower_photos"]
    finally:
        srv.close()


def test_download_checksum_mismatch_leaves_nothing(tmp_path):
    payload, _ = _archive(tmp_path)
    srv = _Server(payload)
    try:
        with pytest.raises(DownloadError, match="checksum mismatch"):
            source.download_dataset(tmp_path / "dl", url=srv.url, sha256="0" * 64)
        assert list((tmp_path / "dl").iterdir()) == []
    finally:
        srv.close()


def test_interrupted_download_leaves_no_dataset(tmp_path):
    payload, digest = _archive(tmp_path)
    srv = _Server(payload, truncate=True)
    try:
        with pytest.raises(DownloadError):
            source.download_dataset(tmp_path / "dl", url=srv.url, sha256=digest, timeout=5)
        assert not (tmp_path / "dl" / "flower_photos").exists()
        assert list((tmp_path / "dl").iterdir()) == []
    finally:
        srv.close()


def test_download_from_local_file_url(tmp_path):
    payload, digest = _archive(tmp_path)
    f = tmp_path / "flower_photos.tgz"
    f.write_bytes(payload)
    d = source.download_dataset(tmp_path / "dl", url=f.as_uri(), sha256=digest)
    assert (d / "red").is_dir()


def test_unreachable_download_says_what_to_do(tmp_path):
    with pytest.raises(DownloadError, match="--data"):
        source.download_dataset(tmp_path / "dl", url="http://127.0.0.1:9/none.tgz", sha256="0" * 64, timeout=2)


# ------------------------------------------------------------------ data check
@pytest.fixture()
def messy(tmp_path) -> Path:
    root = make_dataset(tmp_path / "messy", per_class=4)
    (root / "red" / "zero.jpg").write_bytes(b"")
    good = (root / "red" / "red_000.jpg").read_bytes()
    (root / "red" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (root / "red" / "notes.txt").write_text("not an image")
    (root / "blue" / "fake.jpg").write_text("<html>not a jpeg</html>")
    make_image((40, 60, 200)).save(root / "blue" / "png.png")
    make_image((40, 60, 200)).convert("L").save(root / "blue" / "gray.jpg")
    make_image((40, 60, 200)).convert("CMYK").save(root / "blue" / "cmyk.jpg")
    make_image((40, 60, 200)).convert("RGBA").save(root / "blue" / "rgba.png")
    (root / "green" / "copy.jpg").write_bytes((root / "green" / "green_000.jpg").read_bytes())
    (root / "red" / "cross.jpg").write_bytes((root / "green" / "green_001.jpg").read_bytes())
    img = make_image((40, 180, 60), size=(40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    img.save(root / "green" / "rotated.jpg", exif=exif)
    (root / "empty_class").mkdir()
    return root


def test_check_reports_every_problem_without_crashing(messy):
    r = check_dataset(messy, show_progress=False)
    d = r.to_dict()
    bad = {Path(u["path"]).name for u in d["unreadable"]}
    assert {"zero.jpg", "truncated.jpg", "fake.jpg"} <= bad
    assert "red/notes.txt" in d["not_images"]
    assert d["counts"]["empty_class"] == 0 and d["empty_classes"] == ["empty_class"]
    assert d["converted_modes"].get("L") == 1 and d["converted_modes"].get("CMYK") == 1
    assert d["converted_modes"].get("RGBA") == 1 and d["converted_modes"].get("exif-rotated") == 1
    assert ["green/copy.jpg", "green/green_000.jpg"] in d["identical_duplicates"]
    assert ["green/green_001.jpg", "red/cross.jpg"] in d["cross_class_duplicates"]
    from edgeflower.data.split import auto_split

    with pytest.raises(DataError, match="no readable images: empty_class"):  # train --data on this folder
        auto_split(messy, show_progress=False)


def test_cli_data_check_on_messy_folder(messy, tmp_path):
    out = run_cli("data", "check", "--data", messy, "--json", tmp_path / "r.json")
    assert out.returncode == 0, out.stderr
    assert "unreadable files: 3" in out.stdout
    assert "filed under several classes" in out.stdout
    assert json.loads((tmp_path / "r.json").read_text())["counts"]["blue"] == 8


@pytest.mark.parametrize("setup, match", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "no class folders"),
])
def test_missing_or_empty_data_dir(tmp_path, setup, match):
    d = tmp_path / "data"
    setup(d)
    out = run_cli("data", "check", "--data", d)
    assert out.returncode != 0
    assert match in out.stderr and "Traceback" not in out.stderr


def test_one_class_is_not_enough(tmp_path):
    make_dataset(tmp_path / "one", per_class=3)
    for c in ("blue", "green"):
        for f in (tmp_path / "one" / c).iterdir():
            f.unlink()
        (tmp_path / "one" / c).rmdir()
    with pytest.raises(DataError, match="at least 2"):
        make_split(tmp_path / "one", show_progress=False)


# ------------------------------------------------------------------ split
def test_split_groups_duplicates_and_excludes_cross_class(messy):
    m = make_split(messy, test_supports={"blue": 2, "green": 2, "red": 1}, show_progress=False)
    where = {p: k for k, rows in m["splits"].items() for p, _ in rows}
    assert where["green/copy.jpg"] == where["green/green_000.jpg"]
    excluded = {e["path"] for e in m["excluded"]}
    assert {"red/cross.jpg", "green/green_001.jpg", "red/zero.jpg"} <= excluded
    assert "red/cross.jpg" not in where
    # deterministic
    assert make_split(messy, test_supports={"blue": 2, "green": 2, "red": 1}, show_progress=False) == m


def test_verify_names_missing_and_changed(synth_data, synth_split, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(synth_data, copy)
    m = load_manifest(synth_split)
    items = split_items(m, "test")
    (copy / items[0][0]).unlink()
    (copy / items[1][0]).write_bytes(b"changed")
    with pytest.raises(DataError, match=r"1 missing .*1 changed"):
        verify_files(copy, items)


def test_packaged_manifest_has_the_study_supports():
    m = load_manifest()
    test = Counter(p.split("/")[0] for p, _ in m.splits["test"])
    assert dict(test) == TEST_SUPPORTS and sum(test.values()) == 360
    sets = {k: {p for p, _ in v} for k, v in m.splits.items()}
    assert not (sets["train"] & sets["val"]) and not (sets["train"] & sets["test"]) and not (sets["val"] & sets["test"])
    hashes = {k: {h for _, h in v} for k, v in m.splits.items()}
    assert not (hashes["train"] & hashes["test"]) and not (hashes["val"] & hashes["test"])
    assert not (hashes["train"] & hashes["val"])
    total = sum(len(v) for v in m.splits.values()) + len(m.excluded)
    assert total == 3670
    assert {e["path"] for e in m.excluded} == {"roses/15922772266_1167a06620.jpg", "tulips/15922772266_1167a06620.jpg"}
    n_train, n_val = len(m.splits["train"]), len(m.splits["val"])
    assert abs(n_train / (n_train + n_val) - 7 / 9) < 0.01


@needs_shared
def test_cli_data_split_regenerates_the_frozen_split():
    out = run_cli("data", "split", "--data", SHARED_DATA)
    assert out.returncode == 0, out.stderr
    assert "identical to the frozen split" in out.stdout


def test_cli_data_split_out_for_own_dataset(synth_data, tmp_path):
    out = run_cli("data", "split", "--data", synth_data, "--out", tmp_path / "m.json")
    assert out.returncode == 0, out.stderr
    m = load_manifest(tmp_path / "m.json")
    assert sum(len(v) for v in m.splits.values()) == 90


def test_arrays_cache_roundtrip(synth_data, synth_split):
    from edgeflower.data.arrays import load_split

    m = load_manifest(synth_split)
    a = load_split(synth_data, m, "train", 32)
    b = load_split(synth_data, m, "train", 32)
    assert a.x.shape[1:] == (32, 32, 3) and a.x.dtype == np.uint8
    np.testing.assert_array_equal(a.x, b.x)


def test_data_clean_flags_a_mislabeled_photo_and_never_touches_files(synth_data, synth_split, tmp_path):
    """A red photo filed under blue is flagged as likely mislabeled; the data folder is left as it was."""
    import shutil

    from edgeflower.clean import CleanConfig, clean
    from edgeflower.data.split import make_split

    data = tmp_path / "data"
    shutil.copytree(synth_data, data)
    make_image((210, 40, 40), seed=999).save(data / "blue" / "actually_red.jpg", quality=95)
    split = write_manifest(make_split(data, test_supports={"blue": 6, "green": 6, "red": 6}, show_progress=False),
                           tmp_path / "split.json")
    before = sorted((p.relative_to(data), p.stat().st_mtime) for p in data.rglob("*"))
    r = clean(CleanConfig(data=str(data), out=str(tmp_path / "clean"), split=str(split), features="pixels",
                          input_size=32, folds=3, mislabel_confidence=0.6))
    assert sorted((p.relative_to(data), p.stat().st_mtime) for p in data.rglob("*")) == before
    flagged = {f["path"]: f for f in r["flagged"]}
    assert "blue/actually_red.jpg" in flagged and flagged["blue/actually_red.jpg"]["predicted"] == "red"
    exclude = (tmp_path / "clean" / "exclude.txt").read_text().splitlines()
    in_test = {p for p, _ in load_manifest(split).splits["test"]}
    assert not in_test & set(exclude)
    assert (tmp_path / "clean" / "clean_report.json").is_file()
    assert (tmp_path / "clean" / "contact_sheet.png").is_file()
