"""`export --formats imx500`: the portable graph here, and (opt-in, EDGEFLOWER_TEST_IMX500=1, which .ci/run sets)
the whole export on a tiny network in the side environment: MCT, the simulation, the gate and Sony's converter."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from edgeflower.edge.classifier import Classifier
from edgeflower.exporting.imx500 import memory_figures, portable_graph


def test_portable_graph_inlines_nested_models_and_keeps_every_weight():
    import keras
    from keras import layers

    inner_in = keras.Input((8, 8, 4))
    y = layers.Conv2D(6, 3, padding="same", name="conv")(inner_in)
    y = layers.BatchNormalization(name="bn")(y)
    a = layers.ReLU(6.0, name="relu")(y)
    inner = keras.Model(inner_in, layers.Add(name="add")([a, y]), name="backbone")
    x_in = keras.Input((8, 8, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(x_in)
    x = layers.Conv2D(4, 1, name="stem")(x)
    f = layers.GlobalAveragePooling2D(name="gap")(inner(x))
    model = keras.Model(x_in, layers.Dense(3, activation="softmax", name="probs")(f))
    graph, weights = portable_graph(model, ("gap",))
    nodes = {n["name"]: n for n in graph["nodes"]}
    assert list(nodes) == ["image", "preprocess", "stem", "conv", "bn", "relu", "add", "gap", "probs"]
    assert nodes["conv"]["inputs"] == ["stem"] and nodes["add"]["inputs"] == ["relu", "bn"]
    assert nodes["gap"]["inputs"] == ["add"]  # the nested model's output, inlined
    assert graph["outputs"] == ["probs", "gap"]
    assert {k: len(v) for k, v in weights.items()} == {"stem": 2, "conv": 2, "bn": 4, "probs": 2}
    np.testing.assert_array_equal(weights["conv"][0], model.get_layer("backbone").get_layer("conv").get_weights()[0])


def test_memory_report_figures():
    m = memory_figures({"Memory Usage": "6.41MB", "Total Memory Available On Chip": "8.00MB",
                        "Model Memory Physical Size": "4.81MB", "Runtime Memory Physical Size": "512.00KB",
                        "Fit In Chip": True})
    assert m == {"memory_used_mb": 6.41, "chip_mb": 8.0, "model_mb": 4.81, "runtime_mb": 0.5, "fits": True}


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("EDGEFLOWER_TEST_IMX500") != "1",
                    reason="opt-in (EDGEFLOWER_TEST_IMX500=1): creates the 2.3 GB IMX500 environment on first use")
def test_export_imx500_on_a_tiny_network(tiny_run, synth_data, synth_split, tmp_path):
    from edgeflower.exporting.pipeline import ExportConfig, export

    out = tmp_path / "export"
    report = export(ExportConfig(target=str(tiny_run), formats=("imx500",), calibration=30, data=str(synth_data),
                                 split=str(synth_split), out=str(out)))
    art = report["artifacts"][0]
    assert art["format"] == "imx500" and art["passed"], art["reason"]
    assert abs(art["gate"]["drop_pts"]) <= 5 and art["accuracy"] >= report["keras_test_accuracy"] - 0.05
    pkg = out / "imx500"
    assert {"packerOut.zip", "network.rpk.json", "bank.npz", "labels.txt"} <= {p.name for p in pkg.iterdir()}
    meta = json.loads((pkg / "network.rpk.json").read_text())
    assert meta["imx500_memory"]["fits"] and 0 < meta["imx500_memory"]["memory_used_mb"] <= 8
    assert meta["simulated"] and meta["sensor_outputs"] == ["probs", "features"]
    # the Pi side reads the package as written: the backend turns sensor outputs into the artifact's outputs
    (pkg / "network.rpk").write_bytes(b"made on the Pi by imx500-package")
    clf = Classifier(pkg / "network.rpk")
    feats = np.load(pkg / "bank.npz")["bank"][0].astype(np.float32)
    clf.backend.feed([np.eye(len(clf.labels))[0] * 0.9 + 0.1 / len(clf.labels), feats])
    probs, sims, _ = clf.raw_scores(np.zeros((1, *clf.input_size, 3), np.uint8))
    assert probs.shape == (1, len(clf.labels)) and sims.max() > 0.99  # a training photo's own features


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("EDGEFLOWER_TEST_IMX500") != "1",
                    reason="opt-in (EDGEFLOWER_TEST_IMX500=1): creates the 2.3 GB IMX500 environment on first use")
def test_export_imx500_keeps_the_background_class_and_its_unknown(synth_data, synth_split, tmp_path):
    """A run trained with outlier photos (the background class) through the AI Camera's export: the gate, the
    labels with the background last, and the unknown figures that count what the background takes."""
    from edgeflower.exporting.pipeline import ExportConfig, export
    from edgeflower.training.loop import TrainConfig, train

    from conftest import make_image

    outliers = tmp_path / "outliers"
    outliers.mkdir()
    for i in range(20):
        make_image((230, 230, 230) if i % 2 else (200, 200, 30), seed=70_000 + i).save(outliers / f"o{i}.jpg")
    r = train(TrainConfig(model="cnn", data=str(synth_data), split=str(synth_split), out=str(tmp_path / "run"),
                          epochs=8, input_size=32, batch_size=8, learning_rate=3e-3, verbose=0, patience=8,
                          outliers=str(outliers)))
    assert r.config["classes"][-1] == "background"
    out = tmp_path / "export"
    report = export(ExportConfig(target=str(r.run_dir), formats=("imx500",), calibration=30, data=str(synth_data),
                                 split=str(synth_split), out=str(out), max_drop=100.0))
    art = report["artifacts"][0]
    assert art["format"] == "imx500" and art["passed"], art["reason"]
    meta = json.loads((out / "imx500" / "network.rpk.json").read_text())
    assert meta["labels"][-1] == "background" and meta["background_class"] == "background"
    t = meta["unknown"]["test"]
    assert {"flower_accuracy_without_rejection", "flower_accuracy_with_unknown",
            "flowers_answered_background"} <= set(t)
    assert (out / "imx500" / "labels.txt").read_text().split()[-1] == "background"
