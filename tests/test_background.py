"""train --background DIR: the camera's own scene as one more class, from training through export to classify."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from edgeflower.data.background import BACKGROUND, MIN_PHOTOS, split_background
from edgeflower.errors import DataError


def make_scene_frames(folder, n=30, seed=5):
    """Frames of one scene (a textured brown-grey wall with a darker band), with small shifts, crops and brightness
    changes, as a fixed camera records them."""
    rng = np.random.default_rng(seed)
    scene = np.full((64, 80, 3), (120, 110, 95), np.float32) + rng.normal(0, 18, (64, 80, 3))
    scene[20:34] *= 0.6
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        dy, dx = rng.integers(0, 12, 2)
        frame = scene[dy:dy + 48, dx:dx + 60] * rng.uniform(0.85, 1.15)
        Image.fromarray(np.clip(frame, 0, 255).astype(np.uint8)).save(folder / f"frame_{i:03d}.JPG", quality=90)
    return folder


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene_frames(tmp_path_factory.mktemp("scene") / "garden")


@pytest.fixture(scope="module")
def bg_run(synth_data, synth_split, scene, tmp_path_factory):
    from edgeflower.training.loop import TrainConfig, train

    out = tmp_path_factory.mktemp("bgruns") / "bg"
    return train(TrainConfig(model="cnn", data=str(synth_data), split=str(synth_split), out=str(out), epochs=10,
                             input_size=32, batch_size=8, learning_rate=3e-3, verbose=0, patience=10,
                             background=str(scene)))


def test_split_is_seeded_covers_every_photo_and_names_too_few(scene, tmp_path):
    s = split_background(scene)
    assert split_background(scene) == s
    rels = [rel for part in s.values() for rel, _ in part]
    assert sorted(rels) == sorted(p.name for p in scene.iterdir()) and len(set(rels)) == 30
    assert {k: len(v) for k, v in s.items()} == {"train": 18, "val": 6, "test": 6}
    few = tmp_path / "few"
    make_scene_frames(few, n=MIN_PHOTOS - 1)
    with pytest.raises(DataError, match=rf"has {MIN_PHOTOS - 1} photos; it needs at least {MIN_PHOTOS}"):
        split_background(few)
    with pytest.raises(DataError, match="not a folder"):
        split_background(tmp_path / "missing")


@pytest.mark.slow
def test_background_is_one_more_class_in_the_run(bg_run):
    cfg = bg_run.config
    assert cfg["classes"] == ["blue", "green", "red", BACKGROUND]
    assert cfg["background"]["class"] == BACKGROUND
    [scene_part] = cfg["background"]["parts"]  # the tests turn the default outlier photos off
    assert scene_part["kind"] == "scene"
    assert {k: len(v) for k, v in scene_part["splits"].items()} == {"train": 18, "val": 6, "test": 6}
    assert cfg["outlier_photos"] is None
    assert cfg["counts"]["test"] == 18 + 6  # 6 per colour + 6 background frames
    assert BACKGROUND in bg_run.metrics["test"]["per_class"]
    assert bg_run.metrics["test"]["per_class"][BACKGROUND]["recall"] == 1.0


@pytest.mark.slow
def test_export_and_device_answer_unknown_for_the_scene(bg_run, synth_data, synth_split, scene):
    from edgeflower.edge import Classifier
    from edgeflower.exporting.pipeline import ExportConfig, export

    report = export(ExportConfig(target=str(bg_run.run_dir), int8=True, onnx=False, calibration=30,
                                 data=str(synth_data), max_drop=100.0))
    held_out = [scene / rel for rel, _ in bg_run.config["background"]["parts"][0]["splits"]["test"]]
    flowers = [sorted((synth_data / c).iterdir())[0] for c in ("blue", "green", "red")]
    for a in report["artifacts"]:
        assert a["unknown"]["test"]["background_answered_unknown"] == 1.0
        clf = Classifier(a["path"])
        assert clf.labels[-1] == BACKGROUND and clf.background == BACKGROUND
        preds = [clf.classify(p) for p in held_out]
        assert [p.label for p in preds] == ["unknown"] * len(held_out)
        assert all(p.top_k[0][0] == BACKGROUND for p in preds)  # the scene itself, not just a low similarity
        assert [clf.classify(p).label for p in flowers] == ["blue", "green", "red"]
        # the background class alone answers unknown, without the similarity rule
        no_sim = Classifier(a["path"], min_similarity=-1)
        assert [no_sim.classify(p).label for p in held_out] == ["unknown"] * len(held_out)
    md = (bg_run.run_dir / "export" / "export_report.md").read_text()
    assert "background photos answered unknown 100.0%" in md
    assert "% taken by the background class)" in md
    # bench measures the accuracy of an artifact with a background class on the split's classes, as export does
    from edgeflower.benchmarking import BenchConfig, bench

    int8 = next(a for a in report["artifacts"] if a["format"] == "tflite_int8")
    b = bench(BenchConfig(artifacts=(int8["path"],), threads=(1,), runs=3, warmup=1, e2e_images=2,
                          data=str(synth_data), split=str(synth_split)))
    assert b["results"][0]["accuracy"] == pytest.approx(int8["accuracy"]), b["results"][0].get("accuracy_note")


def test_eval_includes_the_background(bg_run, synth_data):
    from edgeflower.training.loop import evaluate

    m = evaluate(str(bg_run.run_dir), "test", data=str(synth_data))
    assert BACKGROUND in m["per_class"] and m["per_class"][BACKGROUND]["support"] == 6


def test_a_dataset_class_named_background_is_refused(synth_data, synth_split, scene, tmp_path):
    from edgeflower.data.arrays import SplitArrays
    from edgeflower.data.background import with_background

    a = SplitArrays(np.zeros((1, 8, 8, 3), np.uint8), np.zeros(1, np.int64), ["x"], [BACKGROUND])
    with pytest.raises(DataError, match="already has a class named 'background'"):
        with_background({"train": a}, {"parts": [{"kind": "scene", "dir": scene, "splits": split_background(scene)}]},
                        8)


@pytest.mark.slow
def test_cli_train_takes_background(synth_data, synth_split, scene, tmp_path):
    from conftest import run_cli

    out = run_cli("train", "--model", "cnn", "--data", synth_data, "--split", synth_split, "--background", scene,
                  "--epochs", 1, "--input-size", 32, "--out", tmp_path / "r")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "r" / "config.json").read_text())["classes"][-1] == BACKGROUND
    bad = run_cli("train", "--model", "cnn", "--data", synth_data, "--background", tmp_path / "nope")
    assert bad.returncode == 2 and "--background" in bad.stderr


def test_the_unknown_budget_counts_the_flowers_the_background_takes():
    from edgeflower.exporting.unknown import NEVER_KEPT, answer_without, similarity_with_background
    from edgeflower.util.metrics import calibrate_scores

    # 100 flowers of classes 0 and 1; class 2 is the background. Photo 0's top class is the background, but
    # without it the answer is right (class 0): it counts as correct and as already answered unknown.
    probs = np.tile([0.8, 0.1, 0.1], (100, 1))
    probs[0] = [0.3, 0.1, 0.6]
    y = np.zeros(100, np.int64)
    sims = np.linspace(0.5, 0.9, 100)
    assert answer_without(probs, 2)[0] == 0 and answer_without(probs, None)[0] == 2
    scores = similarity_with_background(probs, sims, 2)
    assert scores[0] == NEVER_KEPT and (scores[1:] == sims[1:]).all()
    assert (similarity_with_background(probs, sims, None) == sims).all()
    correct = answer_without(probs, 2) == y
    # a 1-point budget is spent by the background's photo: the similarity rejects no other flower
    cal = calibrate_scores(correct, scores, 0.01)
    assert (sims[1:] >= cal["threshold"]).all() and cal["accuracy_with_rejection"] == 0.99
    # a 2-point budget leaves one more flower to the similarity: the least similar of the rest
    cal = calibrate_scores(correct, scores, 0.02)
    assert (sims[1:] < cal["threshold"]).sum() == 1
