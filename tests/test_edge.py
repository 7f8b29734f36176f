"""The device runtime: backends, Classifier, unknown threshold, smoothing, sources, the loop and the live page."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from cdp import chromium

from edgeflower.edge import UNKNOWN, Classifier, Smoother, load_backend
from edgeflower.edge.backends import TensorInfo
from edgeflower.edge.classifier import dequantize, quantize
from edgeflower.edge.loop import run
from edgeflower.edge.observers import JsonLines
from edgeflower.edge.sources import Frame, ImageSource, LatestFrame, OpenCVSource, Source
from edgeflower.errors import BackendError, MissingDependencyError, SourceError

from conftest import COLOURS, FakePicamera2, make_image, run_cli, without_metadata


def test_backend_chosen_by_file_type(tiny_export):
    assert load_backend(tiny_export / "model_int8.tflite").name == "litert"
    assert load_backend(tiny_export / "model.onnx").name == "onnxruntime"
    with pytest.raises(BackendError, match="cannot run .onnx"):
        load_backend(tiny_export / "model.onnx", backend="litert")


def test_unloadable_models(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"garbage" * 10)
    with pytest.raises(BackendError, match="cannot load"):
        load_backend(bad)
    with pytest.raises(BackendError, match="not found"):
        load_backend(tmp_path / "missing.tflite")
    (tmp_path / "m.pb").write_bytes(b"x")
    with pytest.raises(BackendError, match="expected .tflite, .onnx or .rpk"):
        load_backend(tmp_path / "m.pb")


def test_tflite_runtime_under_numpy2_says_what_to_do(tiny_export):
    if int(np.__version__.split(".")[0]) < 2:
        pytest.skip("numpy<2 installed")
    with pytest.raises(BackendError, match="numpy<2"):
        load_backend(tiny_export / "model_float.tflite", backend="tflite-runtime")


def test_quantize_roundtrip():
    info = TensorInfo("x", (1, 2, 2, 3), np.dtype(np.int8), scale=0.5, zero_point=-10)
    x = np.array([0, 10, 255], np.uint8)
    q = quantize(x, info)
    assert q.dtype == np.int8 and q.tolist() == [-10, 10, 127]
    np.testing.assert_allclose(dequantize(np.array([-10, 10], np.int8), info), [0.0, 10.0])
    raw = TensorInfo("x", (1,), np.dtype(np.uint8), scale=1.0, zero_point=0)
    assert quantize(x, raw) is x or (quantize(x, raw) == x).all()


@pytest.mark.parametrize("dtype, zero_point", [(np.int8, -10), (np.uint8, 3), (np.float32, 0)])
def test_an_outputs_dequantizer_gives_dequantizes_values(dtype, zero_point):
    """The classifier's per-output dequantizer (a table for 8-bit outputs) gives exactly dequantize's floats."""
    from edgeflower.edge.classifier import dequantizer

    scale = 0.0 if dtype == np.float32 else 0.0039
    info = TensorInfo("y", (1, 256), np.dtype(dtype), scale=scale, zero_point=zero_point)
    y = (np.arange(256, dtype=np.uint8).view(dtype) if dtype != np.float32 else
         np.linspace(0, 1, 256, dtype=np.float32))[None]
    got = dequantizer(info)(y)
    assert got.dtype == np.float32 and got.shape == y.shape
    np.testing.assert_array_equal(got, dequantize(y, info))
    assert (np.diff(got[0][np.argsort(y[0])]) >= 0).all() and len(np.unique(got)) == 256


@pytest.mark.parametrize("name", ["model_float.tflite", "model_int8.tflite", "model.onnx", "model_int8.onnx"])
def test_classifier_on_frames_and_files(tiny_export, synth_data, name):
    clf = Classifier(tiny_export / name, top_k=2)
    assert clf.labels == ["blue", "green", "red"] and clf.input_size == (32, 32)
    img = synth_data / "red" / "red_000.jpg"
    from PIL import Image

    for frame in (img, Image.open(img), np.asarray(Image.open(img)), make_image((210, 40, 40), size=(640, 480))):
        p = clf.classify(frame)
        assert p.label in clf.labels + [UNKNOWN]
        assert len(p.top_k) == 2 and p.top_k[0][1] >= p.top_k[1][1]
        assert abs(float(p.probs.sum()) - 1) < 0.05
        assert p.inference_ms > 0 and p.total_ms >= p.inference_ms


def test_unknown_threshold_and_override(tiny_export):
    frame = np.full((32, 32, 3), 128, np.uint8)  # grey: nothing like the training colours
    assert Classifier(tiny_export / "model_float.tflite", threshold=1.0).classify(frame).label == UNKNOWN
    assert Classifier(tiny_export / "model_float.tflite", threshold=0.0,
                      min_similarity=-1.0).classify(frame).label != UNKNOWN
    # by default the feature-similarity rule answers unknown: grey is unlike every training photo
    assert Classifier(tiny_export / "model_float.tflite").classify(frame).label == UNKNOWN
    meta = json.loads((tiny_export / "model_float.tflite.json").read_text())
    assert Classifier(tiny_export / "model_float.tflite").threshold == meta["confidence_threshold"]


def test_metadata_from_before_the_rename_still_sets_the_confidence_rule(tiny_export, tmp_path):
    old = without_metadata(tiny_export / "model_float.tflite", tmp_path / "old.tflite")
    (tmp_path / "old.tflite.json").write_text(json.dumps({"labels": ["blue", "green", "red"],
                                                          "unknown_threshold": 0.7}))
    assert Classifier(old).threshold == 0.7


def test_smoother_averages():
    s = Smoother(3)
    for v, sim in (([1, 0], 0.9), ([0, 1], 0.6), ([0, 1], 0.3)):
        out, mean_sim = s.update(np.array(v, np.float32), sim)
    np.testing.assert_allclose(out, [1 / 3, 2 / 3])
    assert mean_sim == pytest.approx(0.6)
    assert Smoother(2).update(np.array([1, 0], np.float32))[1] is None


def test_artifact_without_metadata_still_runs(tiny_export, tmp_path):
    # the same model without its embedded metadata and without a sidecar
    lone = without_metadata(tiny_export / "model_int8.tflite", tmp_path / "m.tflite")
    clf = Classifier(lone)
    assert not clf.has_metadata and clf.labels == ["class_0", "class_1", "class_2"]
    assert clf.has_similarity and clf.classify(np.zeros((32, 32, 3), np.uint8)).similarity is not None


# ---------------------------------------------------------------- sources and loop
def test_image_source_and_cli_jsonl(tiny_export, synth_data, tmp_path):
    out = run_cli("classify", tiny_export / "model_int8.tflite", "--images", synth_data / "red", "--jsonl",
                  tmp_path / "o.jsonl")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(ln) for ln in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(rows) == 30
    assert {"ts", "frame", "label", "score", "top_k", "inference_ms", "e2e_ms"} <= set(rows[0])
    assert "30 frames" in out.stderr and "labels:" in out.stderr
    assert "1 frames" in out.stderr and "FPS  inference" in out.stderr  # the status line, without a terminal too


def test_video_gives_the_same_labels_as_the_stills(tiny_export, synth_data, tmp_path):
    cv2 = pytest.importorskip("cv2")
    files = sorted((synth_data / "green").glob("*.jpg"))[:5] + sorted((synth_data / "red").glob("*.jpg"))[:5]
    from edgeflower.edge.preprocess import open_image

    frames = [np.asarray(open_image(f)) for f in files]
    h, w = frames[0].shape[:2]
    video = tmp_path / "v.avi"
    wr = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"FFV1"), 5, (w, h))
    assert wr.isOpened()
    for fr in frames:
        wr.write(cv2.cvtColor(fr, cv2.COLOR_RGB2BGR))
    wr.release()
    clf = Classifier(tiny_export / "model_int8.tflite", threshold=0.0, min_similarity=-1.0)
    still = [clf.classify(fr).label for fr in frames]
    got = [json.loads(ln)["label"] for ln in run_cli(
        "classify", tiny_export / "model_int8.tflite", "--video", video, "--threshold", 0,
        "--min-similarity", -1).stdout.splitlines()]
    assert got == still


class _Flaky(Source):
    name = "flaky"

    def __init__(self, live, fail_after=3):
        self.live, self.fail_after = live, fail_after

    def frames(self):
        for i in range(self.fail_after):
            yield Frame(i, np.full((40, 40, 3), 200, np.uint8), time.time(), time.perf_counter_ns(), f"f{i}")
        yield Frame(self.fail_after, None, time.time(), time.perf_counter_ns(), "bad", error="unreadable frame")
        raise SourceError("camera 0 stopped delivering frames (disconnected?)")


def test_loop_hands_every_record_to_each_observer_in_order(tiny_export):
    """A consumer is one class with update(frame, record) and close(): the loop needs no edit for it."""
    import inspect
    import io

    from edgeflower.edge.observers import LivePage, StatusLine

    seen, lines, buf = [], [], io.StringIO()

    class Recorder:
        def __init__(self, tag):
            self.tag = tag

        def update(self, frame, record):
            seen.append((self.tag, frame.index, "error" in record))

        def close(self):
            return [f"{self.tag} closed"]

    class State:
        def update(self, image, status):
            lines.append(("page", status["frame"], status["label"], image.shape))

    s = run(Classifier(tiny_export / "model_int8.tflite"), _Flaky(False),
            [JsonLines(buf), Recorder("a"), StatusLine(lambda m: lines.append(("status", m)), every=0.0),
             LivePage(State(), None, 0.0), Recorder("b")], max_frames=10)
    assert s.frames == 3 and s.errors == 1
    assert seen == [(t, i, i == 3) for i in range(4) for t in ("a", "b")]  # the unreadable frame too, in order
    assert [r["frame"] for r in map(json.loads, buf.getvalue().splitlines())] == [0, 1, 2, 3]
    assert [ln[0] for ln in lines] == ["status", "page"] * 3  # they skip the unreadable frame
    assert lines[0][1].startswith("1 frames") and lines[1][3] == (40, 40, 3)
    assert len(inspect.signature(run).parameters) <= 6


@pytest.mark.parametrize("live", [False, True])
def test_source_failing_mid_stream_stops_cleanly(tiny_export, live):
    import io

    buf = io.StringIO()
    s = run(Classifier(tiny_export / "model_int8.tflite"), _Flaky(live), [JsonLines(buf)])
    assert s.stopped_by == "source error" and "disconnected" in s.error
    rows = [json.loads(ln) for ln in buf.getvalue().splitlines()]
    assert all(("label" in r) or ("error" in r) for r in rows)
    if not live:
        assert s.frames == 3 and s.errors == 1


def test_latest_frame_drops_stale_frames():
    class Fast(Source):
        live = True

        def frames(self):
            for i in range(200):
                yield Frame(i, np.zeros((2, 2, 3), np.uint8), time.time(), time.perf_counter_ns())

    g = LatestFrame(Fast())
    g._thread.join(timeout=10)  # the source has delivered all 200 frames
    assert not g._thread.is_alive()
    f = g.get(timeout=2)
    assert f is not None and f.index == 199 and g.dropped == 199
    assert g.get(timeout=2) is None


def _labels(buf) -> list[str]:
    return [json.loads(ln)["label"] for ln in buf.getvalue().splitlines()]


def test_fake_picamera2(tiny_export, monkeypatch):
    """A red frame as picamera2 delivers it ('BGR888': R, G, B, X in memory) is answered red; read in the other
    channel order it would be blue."""
    calls = {"n": 0}

    class FakeCam(FakePicamera2):
        def capture_array(self, name="main"):
            calls["n"] += 1
            if calls["n"] > 5:
                raise RuntimeError("camera unplugged")
            w, h = self.size
            return np.dstack([np.full((h, w), 210, np.uint8), np.full((h, w), 40, np.uint8),
                              np.full((h, w), 40, np.uint8), np.zeros((h, w), np.uint8)])

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FakeCam))
    from edgeflower.edge.sources import PiCameraSource

    src, buf = PiCameraSource((64, 48)), io.StringIO()
    s = run(Classifier(tiny_export / "model_float.tflite", threshold=0.0, min_similarity=-1.0), src, [JsonLines(buf)])
    assert s.frames >= 1 and s.stopped_by == "source error" and "unplugged" in s.error
    assert _labels(buf) == ["red"] * s.frames  # a live source: the loop may skip stale frames


def test_missing_picamera2_and_opencv_messages(monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    from edgeflower.edge.sources import PiCameraSource

    with pytest.raises(MissingDependencyError, match="python3-picamera2.*--system-site-packages"):
        PiCameraSource()
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(MissingDependencyError, match=r'--video.*pip install "edgeflower\[edge\]".*opencv'):
        OpenCVSource("x.mp4")


@pytest.mark.parametrize("module, backend, extra", [("onnxruntime", "onnxruntime", "edge-onnx"),
                                                     ("ai_edge_litert.interpreter", "litert", "edge")])
def test_missing_backend_names_the_extra_that_holds_it(tiny_export, monkeypatch, module, backend, extra):
    from edgeflower.util.deps import _EXTRAS

    monkeypatch.setitem(sys.modules, module, None)
    name = "model_int8.onnx" if backend == "onnxruntime" else "model_int8.tflite"
    with pytest.raises(MissingDependencyError) as e:
        load_backend(tiny_export / name, backend)
    msg = str(e.value)
    assert f'pip install "edgeflower[{extra}]"' in msg and "\n" not in msg
    # the extra named really installs the package
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert any(req.startswith(_EXTRAS[module][0]) for req in project["optional-dependencies"][extra])


def test_bad_sources(tiny_export, tmp_path):
    with pytest.raises(SourceError, match="no image files"):
        ImageSource(str(tmp_path / "*.jpg"))
    out = run_cli("classify", tiny_export / "model_int8.tflite", "--video", tmp_path / "none.mp4")
    assert out.returncode == 1 and "no such file" in out.stderr
    out = run_cli("classify", tiny_export / "model_int8.tflite")
    assert out.returncode == 1 and "exactly one source" in out.stderr
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"nope")
    out = run_cli("classify", bad, "--images", tmp_path)
    assert out.returncode == 1 and "cannot load" in out.stderr and "Traceback" not in out.stderr


def test_unreadable_still_is_reported_not_fatal(tiny_export, synth_data, tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    shutil.copy(synth_data / "red" / "red_000.jpg", d / "a.jpg")
    (d / "b.jpg").write_bytes(b"")
    out = run_cli("classify", tiny_export / "model_int8.tflite", "--images", d)
    rows = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert out.returncode == 0 and len(rows) == 2 and "error" in rows[1]


# ---------------------------------------------------------------- live page
@pytest.fixture(scope="module")
def live_page(tiny_export, tmp_path_factory):
    """`classify --serve` on a few stills, its page up until the module's tests are done: the port."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # with --serve the page stays up after the stream ends, so a few stills are enough
    imgs = tmp_path_factory.mktemp("live") / "imgs"
    imgs.mkdir()
    for i in range(20):
        make_image((210, 40, 40), size=(64, 48), seed=i).save(imgs / f"{i:03d}.jpg")
    proc = subprocess.Popen([sys.executable, "-m", "edgeflower", "classify", str(tiny_export / "model_float.tflite"),
                             "--images", str(imgs), "--serve", str(port), "--threshold", "0", "--min-similarity", "-1",
                             "--jsonl", "/dev/null"],
                            stderr=subprocess.PIPE, text=True)
    try:
        status = None
        deadline = time.monotonic() + 90  # a loaded CI machine may take a while to import and load the model
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=2).read())
                if status.get("label"):
                    break
            except OSError:
                pass
            time.sleep(0.1)
        yield port, status
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_live_page_shows_a_label(live_page):
    port, status = live_page
    assert status and status["label"] in ("blue", "green", "red"), status
    html = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
    assert 'id="label"' in html and "/stream.mjpg" in html


def test_live_page_in_a_browser(live_page, tmp_path):
    chrome = chromium()
    if chrome is None:
        pytest.skip("no Chromium installed (apt install chromium) for the browser check")
    port, _ = live_page
    # Real time (--timeout), not --virtual-time-budget: virtual time stands still while a fetch is pending, and the
    # MJPEG stream is a fetch that never ends, so a virtual budget can wait forever (it did, on a loaded CI machine).
    dom = subprocess.run([chrome, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                          "--no-first-run", "--disable-background-networking", "--disable-component-update",
                          "--disable-sync", f"--user-data-dir={tmp_path / 'chrome'}",
                          "--timeout=8000", "--dump-dom", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=120).stdout
    import re

    m = re.search(r'<span id="label">([^<]*)</span>', dom)
    assert m and m.group(1) in ("blue", "green", "red"), dom[:500]
    # the server renders "N FPS"; only the page's script, after fetching status.json, adds the latency
    fps = re.search(r'<div id="fps">([^<]*)</div>', dom)
    assert fps and re.fullmatch(r"[0-9.]+ FPS, [0-9.]+ ms", fps.group(1)), dom[:500]


def test_live_page_explains_itself_at_phone_width(live_page, tmp_path):
    """The answer, the similarity against its threshold as a bar, the top 3 classes as bars, a timeline; at a
    phone's width nothing sticks out sideways (the page's script records that in data-overflow)."""
    chrome = chromium()
    if chrome is None:
        pytest.skip("no Chromium installed (apt install chromium) for the browser check")
    import re

    port, _ = live_page
    common = [chrome, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=390,844", "--hide-scrollbars",
              "--timeout=8000"]
    dom = subprocess.run(common + ["--dump-dom", f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         timeout=120).stdout
    assert 'data-overflow="false"' in dom, dom[:800]
    top3 = re.search(r'<div id="top3">(.*?)</div>\s*<h2>', dom, re.S)
    assert top3 and top3.group(1).count('class="row"') == 3, dom[:800]
    assert re.search(r'<div id="timeline">(<span[^>]*></span>)+</div>', dom), dom[:800]
    assert re.search(r'<span class="val" id="simval">[-0-9.]+( / [-0-9.]+)?</span>', dom), dom[:800]
    shot = tmp_path / "phone.png"
    subprocess.run(common + [f"--screenshot={shot}", f"http://127.0.0.1:{port}/"], capture_output=True,
                   timeout=120)
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size[0] == 390
        # not a blank page: the dark background, the bars and the text give many distinct colours
        assert len(im.convert("RGB").getcolors(1 << 16) or []) > 20


@pytest.mark.parametrize("dtype, scale, zp", [(np.uint8, 0.996, 0), (np.int8, 1.0, -128), (np.int8, 0.0157, 3),
                                              (np.uint8, 2.5, 10)])
def test_lookup_table_quantization_equals_the_arithmetic(dtype, scale, zp):
    from edgeflower.edge.classifier import _affine

    info = TensorInfo("x", (1, 4, 4, 3), np.dtype(dtype), scale=scale, zero_point=zp)
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    np.testing.assert_array_equal(quantize(x, info), _affine(x, scale, zp, np.dtype(dtype)))


def test_reconnect_restarts_a_lost_pi_camera(tiny_export, monkeypatch):
    starts = {"n": 0}

    class FlakyCam(FakePicamera2):
        def __init__(self):
            starts["n"] += 1
            self.generation = starts["n"]
            self.frames = 0

        def capture_array(self, name="main"):
            self.frames += 1
            if self.generation == 1 and self.frames > 2:
                raise RuntimeError("camera unplugged")
            w, h = self.size
            return np.full((h, w, 3), COLOURS["blue"], np.uint8)  # RGB in memory, as 'BGR888' delivers it

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=FlakyCam))
    monkeypatch.setattr(time, "sleep", lambda s: None)
    from edgeflower.edge.sources import PiCameraSource

    buf = io.StringIO()
    s = run(Classifier(tiny_export / "model_float.tflite", threshold=0.0, min_similarity=-1.0),
            PiCameraSource((64, 48), reconnect=True), [JsonLines(buf)], max_frames=6)
    assert starts["n"] == 2 and s.frames == 6 and s.error == ""
    assert _labels(buf) == ["blue"] * 6  # before and after the restart


def test_usb_camera_gets_the_resolution_asked_for(tiny_export, monkeypatch):
    from click.testing import CliRunner

    from edgeflower.cli import main

    asked = {}

    class FakeCapture:
        def __init__(self, spec):
            self.spec = spec

        def isOpened(self):
            return True

        def set(self, prop, value):
            asked[prop] = value
            return True

        def read(self):  # OpenCV's byte order: B, G, R; the colour is red
            return True, np.full((asked.get("h", 48), asked.get("w", 64), 3), COLOURS["red"][::-1], np.uint8)

        def release(self):
            pass

    fake = types.SimpleNamespace(VideoCapture=FakeCapture, CAP_PROP_FRAME_WIDTH="w", CAP_PROP_FRAME_HEIGHT="h",
                                 COLOR_BGR2RGB=4, cvtColor=lambda img, code: img[..., ::-1])
    monkeypatch.setitem(sys.modules, "cv2", fake)
    r = CliRunner().invoke(main, ["classify", str(tiny_export / "model_int8.tflite"), "--camera", "0",
                                  "--resolution", "640x480", "--max-frames", "2", "--quiet", "--threshold", "0",
                                  "--min-similarity", "-1"])
    assert r.exit_code == 0, r.output
    assert asked == {"w": 640, "h": 480}
    assert [json.loads(ln)["label"] for ln in r.stdout.splitlines()] == ["red", "red"]


def test_live_page_encodes_only_for_viewers_and_at_its_rate():
    import socket

    from edgeflower.edge.serve import LiveState, start_server

    state = LiveState(max_fps=5)
    frame = np.zeros((48, 64, 3), np.uint8)
    for i in range(50):  # nobody watching: no JPEG work on the inference thread's behalf
        state.update(frame + i, {"label": "red", "frame": i})
    assert state.encoded == 0 and state.status["frame"] == 49
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = start_server(f"127.0.0.1:{port}", state)
    stop = False

    def camera():  # a fast camera: 200 FPS
        i = 0
        while not stop:
            state.update(frame + (i % 200), {"label": "red", "frame": i})
            i += 1
            time.sleep(0.005)

    import threading

    t = threading.Thread(target=camera, daemon=True)
    t.start()
    try:
        resp = urllib.request.urlopen(f"http://127.0.0.1:{port}/stream.mjpg", timeout=10)
        t0 = time.monotonic()
        got = 0
        while got < 4:
            line = resp.readline()
            if line.startswith(b"Content-Length:"):
                n = int(line.split(b":")[1])
                resp.readline()
                assert resp.read(n)[:2] == b"\xff\xd8"  # a JPEG
                got += 1
        elapsed = time.monotonic() - t0
        resp.close()
    finally:
        stop = True
        t.join(timeout=2)
        server.shutdown()
    assert elapsed >= 3 * 0.2 * 0.9  # 4 frames at 5 FPS: at least 3 intervals
    assert state.encoded <= 6  # one encode per frame sent, not one per camera frame (about 150 went by)


def test_onnx_sessions_run_fast_kernels_only_where_int8_weights_cannot_saturate(tiny_export, tmp_path):
    """The export's int8 ONNX has 7-bit weights: onnxruntime's fast x86 kernels compute its graph exactly, so the
    session runs without x64quantprecision; an int8 ONNX without metadata (8-bit weights, for all we know) gets it."""
    from edgeflower.edge.backends import weights_cannot_saturate

    def precise(path):
        opts = load_backend(path).session.get_session_options()
        try:
            return opts.get_session_config_entry("session.x64quantprecision") == "1"
        except RuntimeError:  # onnxruntime: "does not have configuration with key"
            return False

    meta = json.loads((tiny_export / "model_int8.onnx.json").read_text())
    assert meta["quantization_options"]["reduce_range"] is True  # the export's first candidate passed its gate
    assert not precise(tiny_export / "model_int8.onnx") and not precise(tiny_export / "model.onnx")
    bare = tmp_path / "bare_int8.onnx"
    shutil.copyfile(tiny_export / "model_int8.onnx", bare)
    import onnx

    m = onnx.load(str(bare))
    del m.metadata_props[:]
    onnx.save(m, str(bare))
    assert precise(bare)
    # an 8-bit artifact's sidecar asks for the option at the first load
    eight = tmp_path / "eight_int8.onnx"
    shutil.copyfile(tiny_export / "model_int8.onnx", eight)
    meta["quantization_options"]["reduce_range"] = False
    (tmp_path / "eight_int8.onnx.json").write_text(json.dumps(meta))
    assert precise(eight)
    assert weights_cannot_saturate({"quantized": True, "quantization_options": {"reduce_range": True}})
    assert not weights_cannot_saturate({"quantized": True, "quantization_options": {"reduce_range": False}})
    assert not weights_cannot_saturate(None) and weights_cannot_saturate({"quantized": False})


def test_the_classifier_resizes_as_its_artifact_says(tiny_export, synth_data, tmp_path):
    """The artifact's metadata names its run's resize; one without metadata is resized as runs were before the
    choice (bilinear); a resize this version does not know is refused at load, in one line."""
    import onnx

    from edgeflower.edge.preprocess import preprocess

    from conftest import without_metadata

    photo = sorted(synth_data.rglob("*.jpg"))[0]
    clf = Classifier(tiny_export / "model_float.tflite")
    bare = Classifier(without_metadata(tiny_export / "model_float.tflite", tmp_path / "bare.tflite"))
    assert (clf.resize, bare.resize) == ("nearest", "bilinear")
    nearest, bilinear = preprocess(photo, 32, "nearest"), preprocess(photo, 32, "bilinear")
    assert (nearest != bilinear).any()
    np.testing.assert_array_equal(clf.preprocess(photo), nearest)
    np.testing.assert_array_equal(bare.preprocess(photo), bilinear)
    np.testing.assert_array_equal(clf.classify(photo).probs, clf.scores(nearest)[0][0])
    m = onnx.load(str(tiny_export / "model.onnx"))
    for prop in m.metadata_props:
        if prop.key == "edgeflower":
            meta = json.loads(prop.value)
            meta["preprocessing"]["resize"] = "lanczos"
            prop.value = json.dumps(meta)
    onnx.save(m, str(tmp_path / "newer.onnx"))
    with pytest.raises(BackendError, match=r"^newer.onnx: unknown resize 'lanczos'.*newer edgeflower"):
        Classifier(tmp_path / "newer.onnx")
