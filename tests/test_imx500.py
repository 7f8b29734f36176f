"""The AI Camera on the Pi side, with a fake picamera2 that replays recorded sensor outputs (no IMX500 here):
Imx500Backend turns them into edgeflower's outputs, Imx500Source yields them with the frames, and the loop
answers, rejects `unknown` and tells the sinks as with any other model."""

from __future__ import annotations

import io
import json
import sys
import types

import numpy as np
import pytest

from edgeflower.edge.classifier import UNKNOWN, Classifier
from edgeflower.edge.imx500 import Imx500Backend, per_class_kth
from edgeflower.edge.loop import run
from edgeflower.errors import BackendError

LABELS = ["red", "green", "blue"]
D = 8


def _bank():
    """Three training photos per class, each class's features along its own axes."""
    rows, labels = [], []
    for c in range(3):
        for j in range(3):
            v = np.zeros(D, np.float32)
            v[2 * c] = 1.0
            v[2 * c + 1] = 0.1 * j
            rows.append(v / np.linalg.norm(v))
            labels.append(c)
    return np.array(rows), np.array(labels)


@pytest.fixture()
def imx_folder(tmp_path):
    """What `export --formats imx500` writes, with a stand-in for the .rpk that imx500-package makes on the Pi."""
    bank, labels = _bank()
    np.savez(tmp_path / "bank.npz", bank=bank.astype(np.float16), labels=labels.astype(np.int16))
    meta = {"labels": LABELS, "input": {"size": [32, 32]}, "confidence_threshold": 0.0,
            "unknown": {"method": "knn_cosine_per_class", "bank": "bank.npz", "neighbours": 2,
                        "similarity_threshold": 0.8}}
    (tmp_path / "network.rpk.json").write_text(json.dumps(meta))
    (tmp_path / "network.rpk").write_bytes(b"not a real network")
    return tmp_path


def _features(axis: int) -> np.ndarray:
    f = np.zeros(D, np.float32)
    f[axis] = 3.0  # the sensor's features are not normalized
    return f


# the sensor's outputs per frame: a green photo, a confident "red" unlike any training photo, a blue photo
RECORDED = [None,  # the network's result for the first frame has not arrived yet
            [np.array([[0.1, 0.8, 0.1]]), _features(2)[None]],
            [np.array([[0.9, 0.05, 0.05]]), _features(7)[None]],
            [np.array([[0.05, 0.05, 0.9]]), _features(4)[None]]]
EXPECTED = ["green", UNKNOWN, "blue"]


def test_per_class_kth_takes_the_kth_of_each_class():
    sims = np.array([[0.9, 0.5, 0.7, 0.1, 0.3]])
    assert per_class_kth(sims, np.array([0, 0, 0, 1, 1]), 2).tolist() == [[0.7, 0.1]]


def fake_picamera2(recorded, frames_seen, fail_after=None):
    """picamera2 and picamera2.devices as far as Imx500Source uses them: the IMX500 replays ``recorded``."""
    state = {"i": -1}

    class IMX500:
        def __init__(self, rpk):
            self.rpk, self.camera_num, self.cropped = rpk, 1, False

        def set_auto_aspect_ratio(self):
            self.cropped = True

        def get_outputs(self, metadata, add_batch=False):
            assert add_batch
            return recorded[metadata["frame"]]

    class Request:
        def __init__(self, i, size):
            self.i, self.size = i, size

        def make_array(self, name):
            w, h = self.size
            return np.full((h, w, 4), self.i, np.uint8)

        def get_metadata(self):
            return {"frame": self.i}

        def release(self):
            pass

    class Picamera2:
        def __init__(self, camera_num):
            assert camera_num == 1  # the IMX500's camera, opened after the network was loaded

        def create_preview_configuration(self, main):
            assert main["format"] == "BGR888"
            return main

        def configure(self, cfg):
            self.size = cfg["size"]

        def start(self):
            pass

        def capture_request(self):
            state["i"] += 1
            if state["i"] >= len(recorded) or (fail_after is not None and state["i"] >= fail_after):
                raise RuntimeError("camera unplugged")
            frames_seen.append(state["i"])
            return Request(state["i"], self.size)

        def stop(self):
            pass

        def close(self):
            pass

    devices = types.SimpleNamespace(IMX500=IMX500)
    return types.SimpleNamespace(Picamera2=Picamera2, devices=devices), devices


def test_backend_gives_probabilities_and_the_per_class_similarity(imx_folder):
    b = Imx500Backend(imx_folder / "network.rpk")
    assert [o.name for o in b.outputs] == ["probs", "similarity"] and b.outputs[1].shape == (1, 3)
    b.feed(RECORDED[1])
    probs, sims = b.run_all(None)
    # green's training photos are at cosines 1, 0.995 and 0.981 to this frame: the second-nearest counts
    assert np.allclose(probs, RECORDED[1][0]) and np.allclose(sims, [[0.0, 1 / np.sqrt(1.01), 0.0]], atol=1e-3)
    with pytest.raises(BackendError, match="no sensor output"):
        b.invoke()  # a frame's outputs are used once


def test_backend_refuses_outputs_that_do_not_match_the_export(imx_folder):
    b = Imx500Backend(imx_folder / "network.rpk")
    with pytest.raises(BackendError, match="2 class scores for 3 labels"):
        b.feed([np.array([0.5, 0.5]), _features(0)])
    with pytest.raises(BackendError, match="not class probabilities"):
        b.feed([np.array([3.0, 2.0, 1.0]), _features(0)])
    with pytest.raises(BackendError, match="5 features"):
        b.feed([np.array([0.2, 0.3, 0.5]), np.ones(5)])
    (imx_folder / "bank.npz").unlink()
    with pytest.raises(BackendError, match="bank.npz is missing"):
        Imx500Backend(imx_folder / "network.rpk")


def test_replayed_camera_answers_rejects_unknown_and_tells_the_sinks(imx_folder, monkeypatch):
    seen = []
    pkg, devices = fake_picamera2(RECORDED, seen)
    monkeypatch.setitem(sys.modules, "picamera2", pkg)
    monkeypatch.setitem(sys.modules, "picamera2.devices", devices)
    from edgeflower.edge.imx500 import Imx500Source
    from edgeflower.edge.sinks import LabelChanges

    class Record:  # what LabelChanges passes on to a sink
        def __init__(self):
            self.events = []

        def put(self, message):
            self.events.append(message["label"])

    sink = Record()
    clf = Classifier(imx_folder / "network.rpk")
    src, buf = Imx500Source(imx_folder / "network.rpk", size=(40, 30)), io.StringIO()
    assert src.imx.cropped  # the centre crop that matches edgeflower's preprocessing
    s = run(clf, src, out=buf, changes=LabelChanges([sink]))
    rows = [json.loads(ln) for ln in buf.getvalue().splitlines()]
    assert s.stopped_by == "source error" and "unplugged" in s.error
    # a live source may skip a stale frame, but every answer belongs to its own frame's outputs
    assert rows and all(r["label"] == EXPECTED[r["frame"]] for r in rows)
    assert sink.events == [r["label"] for r in rows]
