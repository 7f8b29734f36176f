"""Learning from the field: classify --save keeps the frames it was unsure of (size cap, atomic writes, bad folders),
data review shows them, data add puts the sorted ones into the dataset, and the next train uses them."""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest

from edgeflower.edge.saver import FrameSaver, parse_when
from edgeflower.errors import SourceError

from conftest import make_dataset, make_image, run_cli


def _rec(label, score, sim=None):
    return {"label": label, "score": score, "similarity": sim, "frame": 1, "name": "f",
            "top_k": [{"label": label if label != "unknown" else "daisy", "score": score}]}


def test_saver_keeps_the_unsure_frames_with_a_sidecar(tmp_path):
    s = FrameSaver(tmp_path / "saved", when="unknown,low-confidence", min_interval=0, model_sha256="abc")
    img = np.full((24, 32, 3), 120, np.uint8)
    assert s.consider(img, _rec("unknown", 0.9, 0.2))
    assert not s.consider(img, _rec("roses", 0.95))  # sure: not kept
    assert s.consider(img, _rec("tulips", 0.4))  # low confidence
    s.close()
    jpgs = sorted((tmp_path / "saved").glob("*.jpg"))
    assert len(jpgs) == 2 and s.stats()["saved"] == 2
    side = json.loads(jpgs[0].with_suffix(".json").read_text())
    assert side["label"] == "unknown" and side["similarity"] == 0.2 and side["model_sha256"] == "abc"
    assert side["reasons"] == ["unknown"] and side["time"]
    assert not list((tmp_path / "saved").glob(".*"))  # no temporary files left


def test_saver_rate_limit_and_changed():
    t = [0.0]
    import tempfile

    d = tempfile.mkdtemp()
    s = FrameSaver(d, when="changed", min_interval=5, clock=lambda: t[0])
    img = np.zeros((8, 8, 3), np.uint8)
    assert not s.consider(img, _rec("a", 0.9))  # the first answer is not a change
    assert s.consider(img, _rec("b", 0.9))
    t[0] = 1
    assert not s.consider(img, _rec("a", 0.9))  # a change, but within 5 s of the last save
    t[0] = 7
    assert s.consider(img, _rec("b", 0.9))
    s.close()
    with pytest.raises(SourceError, match="--save-when"):
        parse_when("unknown,sometimes")


def test_saver_stops_at_the_cap_and_warns_once(tmp_path, caplog):
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "old.bin").write_bytes(b"x" * 30_000)  # what is there counts
    s = FrameSaver(tmp_path / "saved", when="unknown", min_interval=0, max_mb=40_000 / 2**20)
    rng = np.random.default_rng(0)
    for _ in range(20):
        s.consider(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), _rec("unknown", 0.1))
        time.sleep(0.01)
    s.close()
    total = sum(p.stat().st_size for p in (tmp_path / "saved").iterdir())
    assert total <= 40_000 and s.stats()["stopped"] and s.stats()["saved"] < 20
    assert sum("saving frames stopped" in r.message for r in caplog.records) == 1


def test_an_unwritable_save_folder_is_a_one_line_error_at_start(tiny_export, tmp_path):
    if os.geteuid() == 0:
        target = "/proc/edgeflower-cannot-write-here"  # root may write anywhere else
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        target = str(ro / "saved")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    make_image((210, 40, 40)).save(imgs / "a.jpg")
    out = run_cli("classify", tiny_export / "model_float.tflite", "--images", imgs, "--save", target)
    assert out.returncode != 0 and "cannot write" in out.stderr
    assert out.stderr.strip().splitlines() == [next(ln for ln in out.stderr.splitlines() if "--save" in ln)], \
        out.stderr  # one line, no traceback, and before the model is even loaded


@pytest.mark.slow
def test_save_review_add_train_loop(tiny_export, tmp_path):
    # the device sees photos of a scene: some are red flowers it is unsure of
    imgs = tmp_path / "field"
    imgs.mkdir()
    for i in range(6):
        make_image((170, 60, 60), seed=900 + i).save(imgs / f"{i:02d}.jpg")  # a pale red
    saved = tmp_path / "saved"
    out = run_cli("classify", tiny_export / "model_float.tflite", "--images", imgs, "--save", saved,
                  "--save-when", "unknown,low-confidence,changed", "--save-confidence", "1.0",
                  "--save-min-interval", "0", "--jsonl", tmp_path / "p.jsonl")
    assert out.returncode == 0, out.stderr
    frames = sorted(saved.glob("*.jpg"))
    assert len(frames) == 6 and "saved 6 frames" in out.stderr  # every top score is below 1.0
    # a person reviews them
    rv = run_cli("data", "review", saved)
    assert rv.returncode == 0, rv.stderr
    page = (saved / "review.html").read_text()
    assert all(f.name in page for f in frames) and (saved / "review.png").stat().st_size > 0
    # ... and sorts four into red/ (one twice, under another name: a duplicate)
    (saved / "red").mkdir()
    for f in frames[:4]:
        shutil.move(str(f), saved / "red" / f.name)
    shutil.copy(saved / "red" / frames[0].name, saved / "red" / "again.jpg")
    dataset = make_dataset(tmp_path / "dataset", per_class=12)
    before = len(list((dataset / "red").iterdir()))
    ad = run_cli("data", "add", saved, "--into", dataset)
    assert ad.returncode == 0, ad.stderr
    assert len(list((dataset / "red").iterdir())) == before + 4
    assert "added 4 photos" in ad.stdout and "already in the dataset, skipped" in ad.stdout
    again = run_cli("data", "add", saved, "--into", dataset)  # nothing is overwritten or added twice
    assert again.returncode == 0 and len(list((dataset / "red").iterdir())) == before + 4
    # a class the dataset does not have is refused
    (saved / "orchids").mkdir()
    bad = run_cli("data", "add", saved, "--into", dataset)
    assert bad.returncode != 0 and "orchids" in bad.stderr
    shutil.rmtree(saved / "orchids")
    # the next training uses them
    tr = run_cli("train", "--model", "cnn", "--data", dataset, "--epochs", 1, "--input-size", 32,
                 "--out", tmp_path / "run")
    assert tr.returncode == 0, tr.stderr
    m = json.loads((tmp_path / "run" / "split.json").read_text())
    listed = {rel for items in m["splits"].values() for rel, _ in items}
    assert {f"red/{f.name}" for f in frames[:4]} <= listed
