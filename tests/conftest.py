"""Shared fixtures: a tiny synthetic dataset, a tiny trained model and its exported artifacts.

Unit tests use 32 px images and models (MediaPipe-style solid colours with noise); only a few tests touch the
real dataset in ../shared, and only small slices of it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from textwrap import dedent as _dedent

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (ROOT.parent / "shared" / "data" / "flower_photos")
SHARED_KERAS = ROOT.parent / "shared" / "keras"

COLOURS = {"blue": (40, 60, 200), "green": (40, 180, 60), "red": (210, 40, 40)}


@pytest.fixture(scope="session", autouse=True)
def _env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    old = dict(os.environ)
    os.environ["EDGEFLOWER_CACHE"] = str(cache)
    os.environ["EDGEFLOWER_NO_PROGRESS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if SHARED_KERAS.is_dir():
        os.environ.setdefault("KERAS_HOME", str(SHARED_KERAS))
    os.environ.pop("EDGEFLOWER_DATA", None)
    # no test trains with the default outlier set (a download); tests of it set the variable themselves
    os.environ["EDGEFLOWER_OUTLIERS"] = "none"
    yield
    os.environ.clear()
    os.environ.update(old)


def make_image(colour, size=(40, 32), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.array(colour, dtype=np.float32)
    arr = base + rng.normal(0, 25, (size[1], size[0], 3))
    # a stripe pattern so the classes are not only the mean colour
    arr[:, :: 4] *= 0.8
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def make_dataset(root: Path, per_class: int = 30) -> Path:
    # Stable, distinct noise seeds per photo. (Not hash((c, i)): str hashing is salted per process, and two classes
    # drawing the same seed get the same noise pattern, which the split rightly excludes as a cross-class
    # near-duplicate, so the fixture's size changed from run to run.)
    for k, (c, colour) in enumerate(COLOURS.items()):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            make_image(colour, seed=10_000 + 1_000 * k + i).save(root / c / f"{c}_{i:03d}.jpg", quality=95)
    return root


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("synth") / "flowers")


@pytest.fixture(scope="session")
def synth_split(synth_data, tmp_path_factory) -> Path:
    from edgeflower.data.split import make_split, write_manifest

    m = make_split(synth_data, test_supports={c: 6 for c in COLOURS}, show_progress=False)
    return write_manifest(m, tmp_path_factory.mktemp("split") / "split.json")


@pytest.fixture(scope="session")
def tiny_run(synth_data, synth_split, tmp_path_factory) -> Path:
    """The study's CNN at 32x32 trained for a few epochs on the synthetic colours."""
    from edgeflower.training.loop import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    r = train(TrainConfig(model="cnn", data=str(synth_data), split=str(synth_split), out=str(out), epochs=8,
                          input_size=32, batch_size=8, learning_rate=3e-3, verbose=0, patience=8))
    return r.run_dir


@pytest.fixture(scope="session")
def tiny_export(tiny_run, synth_data, synth_split) -> Path:
    from edgeflower.exporting.pipeline import ExportConfig, export

    export(ExportConfig(target=str(tiny_run), int8=True, onnx=True, calibration=30, data=str(synth_data),
                        split=str(synth_split), max_drop=100.0))
    return tiny_run / "export"


def without_metadata(src: Path, dst: Path) -> Path:
    """A copy of the .tflite ``src`` without its embedded metadata (an artifact from another tool)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(src))
    model.metadata = None
    flatbuffer_utils.write_model(model, str(dst))
    return dst


def slower_onnx(src: Path, dst: Path, side: int = 512) -> Path:
    """A copy of the ONNX model ``src`` that computes the same outputs and more: a (32 x side) @ (side x side) float
    product of the image, times zero, added to the probabilities. Genuinely slower on any CPU, with no timing stub."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.load(str(src))
    g = m.graph
    image = g.input[0].name
    producer = next(n for n in g.node if "probs" in n.output)
    producer.output[list(producer.output).index("probs")] = "probs_before"
    rng = np.random.default_rng(0)
    g.initializer.extend([numpy_helper.from_array(np.array([32, -1], np.int64), "slow_shape"),
                          numpy_helper.from_array(rng.normal(0, 1e-3, (96, side)).astype(np.float32), "slow_w1"),
                          numpy_helper.from_array(rng.normal(0, 1e-3, (side, side)).astype(np.float32), "slow_w2"),
                          numpy_helper.from_array(np.zeros((), np.float32), "slow_zero")])
    g.node.extend([helper.make_node("Reshape", [image, "slow_shape"], ["slow_x"]),
                   helper.make_node("MatMul", ["slow_x", "slow_w1"], ["slow_a"]),
                   *[helper.make_node("MatMul", [f"slow_a{'' if i == 0 else i}", "slow_w2"], [f"slow_a{i + 1}"])
                     for i in range(8)],
                   helper.make_node("ReduceSum", ["slow_a8"], ["slow_sum"], keepdims=0),
                   helper.make_node("Mul", ["slow_sum", "slow_zero"], ["slow_nothing"]),
                   helper.make_node("Add", ["probs_before", "slow_nothing"], ["probs"])])
    onnx.save(m, str(dst))
    return dst


def run_cli(*args, env=None, timeout=300):
    import subprocess

    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "edgeflower", *map(str, args)], capture_output=True, text=True,
                          env=e, timeout=timeout, cwd=ROOT)


FAKE_CV2 = _dedent("""
    '''A stand-in for OpenCV: camera N delivers a grey frame every 5 ms, forever.'''
    import time
    import numpy as np
    CAP_PROP_FRAME_WIDTH, CAP_PROP_FRAME_HEIGHT, CAP_PROP_FRAME_COUNT, COLOR_BGR2RGB = 3, 4, 7, 4

    class VideoCapture:
        def __init__(self, spec):
            self.spec = spec
        def isOpened(self):
            return True
        def set(self, prop, value):
            return True
        def get(self, prop):
            return 0
        def read(self):
            time.sleep(0.005)
            return True, np.full((48, 64, 3), 128, np.uint8)
        def release(self):
            pass

    def cvtColor(img, code):
        return img[..., ::-1]
""")


class FakePicamera2:
    """The slice of picamera2.Picamera2 that edgeflower's camera sources use (PiCameraSource, Imx500Source), the
    one stand-in of every test: a test subclasses it with the frames it wants (``capture_array`` or
    ``capture_request``). Both configurations ask for 'BGR888', picamera2's name for RGB byte order in memory."""

    def __init__(self, camera_num: int = 0):
        self.camera_num = camera_num

    def create_video_configuration(self, main):
        assert main["format"] == "BGR888"
        return main

    create_preview_configuration = create_video_configuration

    def configure(self, cfg):
        self.size = cfg["size"]

    def start(self):
        pass

    def stop(self):
        pass

    def close(self):
        pass


@pytest.fixture()
def fake_camera_env(tmp_path) -> dict:
    """An environment whose Python finds stand-ins for OpenCV and picamera2 (this machine has no camera)."""
    d = tmp_path / "fakes"
    d.mkdir()
    (d / "cv2.py").write_text(FAKE_CV2)
    (d / "picamera2.py").write_text("from conftest import FakePicamera2 as Picamera2  # noqa: F401\n")
    return {"PYTHONPATH": os.pathsep.join([str(d), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}


needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data/flower_photos not present")


_MODEL_FIXTURES = {"tiny_run", "tiny_export", "live_page", "bg_run"}


def pytest_collection_modifyitems(config, items):
    """Every test that needs a trained or exported model is `slow` (`pytest -m "not slow"` runs the rest in about
    a minute); tests that train their own are marked by hand."""
    for item in items:
        if _MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
