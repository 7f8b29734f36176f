"""The AI Camera on the Pi side, with a fake picamera2 that replays recorded sensor outputs (no IMX500 here):
Imx500Backend turns them into edgeflower's outputs, Imx500Source yields them with the frames, and the loop
answers, rejects `unknown` and tells the sinks as with any other model."""

from __future__ import annotations

import io
import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from edgeflower.edge.classifier import UNKNOWN, Classifier
from edgeflower.edge.imx500 import Imx500Backend, per_class_kth
from edgeflower.edge.loop import run
from edgeflower.edge.observers import Changes, JsonLines
from edgeflower.errors import BackendError

from conftest import FakePicamera2

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

    class Picamera2(FakePicamera2):
        def __init__(self, camera_num):
            assert camera_num == 1  # the IMX500's camera, opened after the network was loaded
            super().__init__(camera_num)

        def capture_request(self):
            state["i"] += 1
            if state["i"] >= len(recorded) or (fail_after is not None and state["i"] >= fail_after):
                raise RuntimeError("camera unplugged")
            frames_seen.append(state["i"])
            return Request(state["i"], self.size)

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
    # the whole field of view, squashed to the input, as edgeflower's preprocessing stretches photos
    from edgeflower.edge.preprocess import PREPROCESSING

    assert PREPROCESSING["aspect"] == "stretch" and not src.imx.cropped
    s = run(clf, src, [JsonLines(buf), Changes(LabelChanges([sink]))])
    rows = [json.loads(ln) for ln in buf.getvalue().splitlines()]
    assert s.stopped_by == "source error" and "unplugged" in s.error
    # a live source may skip a stale frame, but every answer belongs to its own frame's outputs
    assert rows and all(r["label"] == EXPECTED[r["frame"]] for r in rows)
    assert sink.events == [r["label"] for r in rows]


FAKE_PICAMERA2 = '''
"""A stand-in for picamera2 with an AI Camera that replays the outputs in $FAKE_IMX500 (one frame every 20 ms)."""
import json, os, time
import numpy as np

from conftest import FakePicamera2

RECORDED = json.load(open(os.environ["FAKE_IMX500"]))


class Picamera2(FakePicamera2):
    def __init__(self, camera_num=0):
        super().__init__(camera_num)
        self.i = -1

    def capture_request(self):
        time.sleep(0.02)
        self.i += 1
        return _Request(self.i % len(RECORDED), self.size)


class _Request:
    def __init__(self, i, size):
        self.i, self.size = i, size

    def make_array(self, name):
        return np.full((self.size[1], self.size[0], 4), 99, np.uint8)

    def get_metadata(self):
        return {"frame": self.i}

    def release(self):
        pass
'''

FAKE_DEVICES = '''
from picamera2 import RECORDED


class IMX500:
    def __init__(self, rpk):
        self.camera_num = 0

    def set_auto_aspect_ratio(self):
        pass

    def get_outputs(self, metadata, add_batch=False):
        out = RECORDED[metadata["frame"]]
        return None if out is None else [__import__("numpy").array(o) for o in out]
'''


def test_classify_with_the_ai_camera_serves_the_page_and_runs_the_sinks(imx_folder, tmp_path):
    """`edgeflower classify network.rpk --camera imx500` end to end in another process: the status page shows
    the sensor's answer, the jsonl has one line per answered frame, and --exec runs on each label change."""
    import socket
    import subprocess
    import time
    import urllib.request

    fakes = tmp_path / "fakes" / "picamera2"
    (fakes / "devices").mkdir(parents=True)
    (fakes / "__init__.py").write_text(FAKE_PICAMERA2)
    (fakes / "devices" / "__init__.py").write_text(FAKE_DEVICES)
    (tmp_path / "recorded.json").write_text(json.dumps(
        [None if r is None else [o.tolist() for o in r] for r in RECORDED]))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fakes.parent), str(Path(__file__).parent)]),
           "FAKE_IMX500": str(tmp_path / "recorded.json")}
    labels = tmp_path / "labels.txt"
    cmd = [sys.executable, "-m", "edgeflower", "classify", str(imx_folder / "network.rpk"), "--camera", "imx500",
           "--serve", str(port), "--jsonl", str(tmp_path / "out.jsonl"), "--max-frames", "60",
           "--exec", f"sh -c 'echo $EDGEFLOWER_LABEL >> {labels}'", "--quiet"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    seen = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=2).read())
            seen.add(status.get("label"))
        except OSError:
            pass
        time.sleep(0.05)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert seen & set(EXPECTED), seen  # the page showed the sensor's answers
    rows = [json.loads(ln) for ln in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and {r["label"] for r in rows} <= set(EXPECTED) and UNKNOWN in {r["label"] for r in rows}
    # each frame's own outputs decided its answer: the replay repeats green, unknown, blue (frame 0 has none)
    assert all(r["label"] == EXPECTED[(r["frame"] % 3)] for r in rows), rows[:6]
    changes = labels.read_text().split()
    assert changes and set(changes) <= set(EXPECTED)


def test_rpk_and_imx500_camera_go_together(imx_folder):
    from edgeflower.edge.app import DeviceOptions
    from edgeflower.errors import SourceError

    with pytest.raises(SourceError, match="--camera imx500 needs MODEL to be the network.rpk"):
        DeviceOptions(model="model_int8.tflite", camera="imx500")
    with pytest.raises(SourceError, match="give its network.rpk as MODEL with --camera imx500"):
        DeviceOptions(model=str(imx_folder / "network.rpk"), images="x")
