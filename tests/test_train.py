"""Training writes a complete run directory; eval recomputes it; bad input fails before training starts."""

from __future__ import annotations

import json

import pytest

from edgeflower.errors import DataError, RunDirError
from edgeflower.training.loop import TrainConfig, evaluate, train

from conftest import SHARED_DATA, needs_shared, run_cli


def test_run_directory_is_complete(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {"model.keras", "config.json", "history.json", "metrics.json", "report.md", "curves.png",
            "confusion_test.png"} <= names
    m = json.loads((tiny_run / "metrics.json").read_text())
    for split in ("train", "val", "test"):
        assert {"loss", "accuracy", "per_class", "confusion_matrix"} <= set(m[split])
        assert 0 <= m[split]["accuracy"] <= 1
    assert m["params"] == {"total": 407_109 - 5 * 65 + 3 * 65, "trainable": 406_149 - 130, "non_trainable": 960}
    assert m["test"]["per_class"]["red"]["support"] == 6
    assert m["test"]["accuracy"] >= 0.9, "solid colours must be learnable"
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["seed"] == 42 and len(cfg["split_manifest_sha256"]) == 64 and "tensorflow" in cfg["versions"]
    assert cfg["resize"] == "nearest"  # the default, resolved: export and the device read it from here
    assert not tiny_run.with_name(tiny_run.name + ".partial").exists()


def test_eval_recomputes_the_metrics(tiny_run, synth_data, synth_split):
    m = evaluate(str(tiny_run), split="test", data=str(synth_data), manifest_path=str(synth_split))
    saved = json.loads((tiny_run / "metrics.json").read_text())["test"]
    assert m["accuracy"] == pytest.approx(saved["accuracy"])
    out = run_cli("eval", tiny_run, "--data", synth_data)
    assert out.returncode == 0, out.stderr
    assert "test: accuracy" in out.stdout
    # --subset names the part, --split the manifest file (as for train)
    out = run_cli("eval", tiny_run, "--subset", "val", "--split", synth_split, "--data", synth_data)
    assert out.returncode == 0, out.stderr
    assert "val: accuracy" in out.stdout


def test_existing_run_dir_is_refused(tiny_run, synth_data, synth_split):
    with pytest.raises(RunDirError, match="already exists.*--force"):
        train(TrainConfig(model="cnn", data=str(synth_data), split=str(synth_split), out=str(tiny_run)))


def test_bad_file_is_caught_before_training(synth_data, synth_split, tmp_path):
    import shutil

    from edgeflower.data.split import load_manifest

    copy = tmp_path / "data"
    shutil.copytree(synth_data, copy)
    rel = load_manifest(synth_split).splits["train"][3][0]
    (copy / rel).write_bytes(b"")  # a file truncated to zero bytes after the split was made
    out = run_cli("train", "--model", "cnn", "--data", copy, "--split", synth_split, "--out", tmp_path / "r",
                  "--input-size", 32, "--epochs", 1)
    assert out.returncode == 1
    assert "changed" in out.stderr and rel in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.partial").exists()


def test_unknown_model_is_a_click_error():
    out = run_cli("train", "--model", "alexnet")
    assert out.returncode == 2 and "alexnet" in out.stderr and "mobilenet_v2" in out.stderr


@pytest.mark.slow
def test_transfer_with_augment_and_fine_tune(synth_data, synth_split, tmp_path):
    r = train(TrainConfig(model="mobilenet_v2", weights="none", input_size=32, data=str(synth_data),
                          split=str(synth_split), out=str(tmp_path / "mnv2"), epochs=2, augment=True, aug_views=1,
                          fine_tune=10, fine_tune_epochs=2, fine_tune_lr=1e-3, fine_tune_schedule="cosine",
                          mixup=0.2, verbose=0))
    assert set(r.history) == {"head", "fine_tune"}
    # the cosine schedule is logged per epoch: half-way after epoch 1 of 2, (close to) zero at the end
    lr = r.history["fine_tune"]["learning_rate"]
    assert lr[0] == pytest.approx(5e-4, rel=0.2) and lr[1] < 1e-5
    assert r.config["mixup"] == 0.2 and r.config["fine_tune_schedule"] == "cosine"
    assert r.config["timings"]["features_s"] > 0
    # BatchNorm layers stay frozen while the top layers are fine-tuned; the layers above the cut train
    import keras

    m = keras.models.load_model(r.run_dir / "model.keras", compile=False)

    def layers_of(model):
        for layer in model.layers:
            yield layer
            if hasattr(layer, "layers"):
                yield from layers_of(layer)

    base = next(la for la in m.layers if hasattr(la, "layers") and len(la.layers) > 20)  # the backbone
    bn = [la for la in layers_of(base) if isinstance(la, keras.layers.BatchNormalization)]
    top = [la for la in base.layers[-10:] if la.weights and not isinstance(la, keras.layers.BatchNormalization)]
    assert bn and not any(la.trainable for la in bn)
    assert top and all(la.trainable for la in top)


def test_mixup_blends_images_and_labels_alike():
    import numpy as np
    import tensorflow as tf

    from edgeflower.training.loop import mixup_batch

    n = 8  # image i is the constant i and has class i: a mixed image must equal its label's expected class
    xb = tf.constant(np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1) * np.ones((1, 4, 4, 3), np.float32))
    yb = tf.one_hot(tf.range(n), n)
    mx, my = (np.asarray(t) for t in mixup_batch(tf, xb, yb, 0.4))
    assert np.allclose(my.sum(1), 1) and my.min() >= 0
    assert np.allclose(mx[:, 0, 0, 0], my @ np.arange(n), atol=1e-5)
    assert np.allclose(mx, mx[:, :1, :1, :1])  # the same weight for every pixel of an image
    assert not np.allclose(my, np.asarray(yb)), "Beta(0.4, 0.4) weights are almost never all exactly 1"


@pytest.mark.parametrize("kw, match", [({"fine_tune_schedule": "linear"}, "constant or cosine"),
                                       ({"mixup": -1.0}, "--mixup"),
                                       ({"resize": "area"}, "--resize must be one of nearest, bilinear")])
def test_bad_schedule_or_mixup_is_refused(synth_data, synth_split, tmp_path, kw, match):
    with pytest.raises(DataError, match=match):
        train(TrainConfig(model="cnn", data=str(synth_data), split=str(synth_split), out=str(tmp_path / "x"), **kw))


def test_empty_split_after_limit_is_reported(synth_data, tmp_path):
    from edgeflower.data.split import make_split, write_manifest

    m = make_split(synth_data, test_supports={"blue": 30, "green": 30, "red": 30}, show_progress=False)
    p = write_manifest(m, tmp_path / "all_test.json")
    with pytest.raises(DataError, match="train split is empty"):
        train(TrainConfig(model="cnn", data=str(synth_data), split=str(p), out=str(tmp_path / "x")))


@needs_shared
@pytest.mark.slow
def test_real_data_slice_trains(tmp_path):
    """A few real photos per class through the full CLI (the frozen split, hashes verified)."""
    out = run_cli("train", "--model", "cnn", "--data", SHARED_DATA, "--limit-per-class", 4, "--epochs", 1,
                  "--input-size", 64, "--out", tmp_path / "real")
    assert out.returncode == 0, out.stderr
    cfg = json.loads((tmp_path / "real" / "config.json").read_text())
    assert cfg["counts"]["train"] == 20 and cfg["counts"]["test"] == 10


@pytest.mark.slow
def test_interrupted_fine_tuning_resumes_from_the_last_epoch(synth_data, synth_split, tmp_path, monkeypatch):
    """A run stopped after fine-tuning epoch 1 of 3 continues at epoch 2 when the same command runs again."""
    import keras

    from edgeflower.training import loop

    cfg = TrainConfig(model="mobilenet_v2", weights="none", input_size=32, data=str(synth_data),
                      split=str(synth_split), out=str(tmp_path / "ft"), epochs=2, augment=False, fine_tune=10,
                      fine_tune_epochs=3,
                      fine_tune_lr=1e-3, patience=10, verbose=0)

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if self.params.get("epochs") == 3 and epoch == 0:  # the fine-tuning phase, after its first epoch
                raise KeyboardInterrupt

    real = loop._callbacks
    monkeypatch.setattr(loop, "_callbacks", lambda *a, **k: real(*a, **k) + [Stop()])
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    backup = loop.resume_dir(tmp_path / "ft")
    assert (backup / "training_metadata.json").is_file() and not (tmp_path / "ft").exists()
    monkeypatch.setattr(loop, "_callbacks", real)
    r = train(cfg)
    assert len(r.history["fine_tune"]["loss"]) == 2  # epochs 2 and 3 only
    assert not backup.exists()
    # another configuration does not pick up a stale backup
    backup.mkdir()
    (backup / "training_metadata.json").write_text('{"epoch": 2}')
    r = train(TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "ft"), "force": True, "fine_tune_epochs": 2}))
    assert len(r.history["fine_tune"]["loss"]) == 2


@pytest.mark.slow
def test_default_recipe_is_the_recommended_one(synth_data, synth_split, tmp_path):
    """`edgeflower train --model X` with no recipe flags trains make main's recipe, not the study's weaker one."""
    from edgeflower.training.models import MODELS

    out = run_cli("train", "--model", "mobilenet_v2", "--weights", "none", "--input-size", 32, "--aug-views", 1,
                  "--data", synth_data, "--split", synth_split, "--out", tmp_path / "run")
    assert out.returncode == 0, out.stderr
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (cfg["augment"], cfg["label_smoothing"], cfg["epochs"]) == (True, 0.1, 40)
    for name, spec in MODELS.items():
        if spec.transfer and name != "resnet50_da":
            assert (spec.augment, spec.label_smoothing, spec.epochs) == (True, 0.1, 40), name
    assert (MODELS["cnn"].augment, MODELS["cnn"].label_smoothing) == (False, 0.0)
