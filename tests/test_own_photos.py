"""Your own photos in one command: `train --data DIR` on a folder that is not flower_photos makes and keeps its own
split, and export, eval and bench find it from the run."""

from __future__ import annotations

import json
import shutil

import pytest

from edgeflower.data.split import MIN_PER_CLASS, auto_split, is_packaged_dataset, load_manifest
from edgeflower.errors import DataError

from conftest import make_dataset, run_cli


@pytest.mark.slow
def test_own_folder_from_train_to_bench_without_a_split(tmp_path):
    data = make_dataset(tmp_path / "my_photos", per_class=20)
    shutil.copyfile(data / "red" / "red_000.jpg", data / "green" / "also_red.jpg")  # one photo under two classes
    run = tmp_path / "run"
    out = run_cli("train", "--model", "cnn", "--data", data, "--epochs", 2, "--input-size", 32, "--out", run)
    assert out.returncode == 0, out.stderr
    assert "split: train" in out.stderr and "split.json" in out.stderr
    # what the split left out is said on the terminal and listed in the run folder
    assert "left out of the split: 2 photos (2 filed under several classes)" in out.stderr, out.stderr
    listed = (run / "left_out.tsv").read_text().splitlines()
    assert listed[0] == "path\treason" and sorted(ln.split("\t")[0] for ln in listed[1:]) == [
        "green/also_red.jpg", "red/red_000.jpg"]
    cfg = json.loads((run / "config.json").read_text())
    m = load_manifest(run / "split.json")
    assert cfg["split"] == str((run / "split.json").resolve()) and cfg["split_manifest_sha256"] == m.sha256
    assert m.classes == ["blue", "green", "red"] and m.raw["automatic"]
    assert {k: len(v) for k, v in m.splits.items()} == cfg["counts"]
    assert cfg["counts"]["test"] == 6  # about 10% of each class of 20 (red has 19 left)
    # the same folder gives the same split (seeded)
    assert auto_split(data, seed=42, show_progress=False)["splits"] == m.raw["splits"]
    ev = run_cli("eval", run)
    assert ev.returncode == 0, ev.stderr
    ex = run_cli("export", run, "--int8", "--no-onnx", "--max-drop", 100, "--calibration", 10)
    assert ex.returncode == 0, ex.stderr
    rep = json.loads((run / "export" / "export_report.json").read_text())
    assert rep["test_images"] == 6
    b = run_cli("bench", run / "export" / "model_int8.tflite", "--threads", 1, "--runs", 5, "--warmup", 1,
                "--json", tmp_path / "b.json")
    assert b.returncode == 0, b.stderr
    res = json.loads((tmp_path / "b.json").read_text())["results"][0]
    assert res["accuracy"] is not None and res["test_images"] == 6


def test_flower_photos_keeps_the_frozen_split(tmp_path):
    fake = tmp_path / "flower_photos"
    for c in load_manifest().classes:
        (fake / c).mkdir(parents=True)
    assert is_packaged_dataset(fake)
    (fake / "orchids").mkdir()
    assert not is_packaged_dataset(fake)


def test_too_few_photos_say_so_and_leave_no_run(tmp_path):
    data = make_dataset(tmp_path / "few", per_class=MIN_PER_CLASS)
    shutil.rmtree(data / "red")
    make_dataset(tmp_path / "few_red", per_class=3)
    shutil.move(str(tmp_path / "few_red" / "red"), str(data / "red"))
    with pytest.raises(DataError, match=r"red has 3.*at least 10 per class"):
        auto_split(data, show_progress=False)
    out = run_cli("train", "--model", "cnn", "--data", data, "--epochs", 1, "--out", tmp_path / "run")
    assert out.returncode != 0 and "red has 3" in out.stderr
    assert not (tmp_path / "run").exists()


def test_a_folder_of_duplicate_groups_splits_about_ten_percent(tmp_path):
    """Every photo three times under other names (copies from a phone and its backup): an exact 10% cannot be
    made of whole groups, and the split takes as close as it can instead of refusing; no group spans splits."""
    data = make_dataset(tmp_path / "dups", per_class=12)
    for p in sorted(data.rglob("*.jpg")):
        for k in (1, 2):
            shutil.copy(p, p.with_name(f"{p.stem}_copy{k}.jpg"))
    m = auto_split(data, show_progress=False)
    where = {}
    for split, items in m["splits"].items():
        for rel, digest in items:
            assert where.setdefault(digest, split) == split, f"{rel} is in {where[digest]} and {split}"
    per_class_test = {c: sum(rel.startswith(c + "/") for rel, _ in m["splits"]["test"]) for c in m["classes"]}
    assert per_class_test == {c: 3 for c in m["classes"]}  # 10% of 36 is 3.6: one group of 3
    assert sum(m["counts"].values()) == 3 * 36
