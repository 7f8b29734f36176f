"""Frame sources. Each is an iterator of RGB uint8 frames (H, W, 3); capture can run in its own thread.

- ImageSource: still images from a folder or glob (sorted), with their paths.
- OpenCVSource: USB cameras (index), video files and URLs (RTSP/HTTP) through OpenCV; BGR -> RGB.
- PiCameraSource: the Raspberry Pi camera through picamera2, a low-resolution RGB stream.
- LatestFrame: runs a source in a background thread; the newest frame wins, stale frames are dropped.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from edgeflower.edge.preprocess import image_files, load_photo, open_image
from edgeflower.errors import ImageError, SourceError

log = logging.getLogger(__name__)


@dataclass
class Frame:
    index: int
    image: np.ndarray | None  # RGB uint8 (H, W, 3); None when the frame could not be read
    timestamp: float  # time.time() at capture
    captured_ns: int  # perf_counter_ns at capture (for end-to-end latency)
    name: str = ""
    error: str = ""
    outputs: list | None = None  # the network's outputs computed on the sensor (the AI Camera), else None


class Source:
    name = "source"
    live = False  # live sources drop stale frames; files are read one by one
    end_note = ""  # why the stream ended, when it ended before its own end (a truncated video)

    def frames(self) -> Iterator[Frame]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


class ImageSource(Source):
    name = "images"

    def __init__(self, spec: str, size_hint: tuple[int, int] | None = None):
        p = Path(spec)
        if p.is_dir():
            files = [str(f) for f in image_files(p)]
        else:
            files = sorted(f for f in glob.glob(spec, recursive=True) if Path(f).is_file())
        if not files:
            raise SourceError(f"--images {spec}: no image files found (expected a folder or a glob like 'dir/*.jpg')")
        self.files = files
        self.root = p if p.is_dir() else None
        self.size_hint = size_hint

    def frames(self) -> Iterator[Frame]:
        for i, f in enumerate(self.files):
            name = os.path.relpath(f, self.root) if self.root else f
            t, tn = time.time(), time.perf_counter_ns()
            try:
                img = load_photo(f, self.size_hint) if self.size_hint else np.asarray(open_image(f))
                yield Frame(i, img, t, tn, name)
            except ImageError as exc:
                yield Frame(i, None, t, tn, name, error=str(exc))


def _cv2():
    from edgeflower.util.deps import require

    return require("cv2", "--video and --camera N")


class OpenCVSource(Source):
    name = "opencv"

    def __init__(self, spec: str | int, reconnect: bool = False, retries: int = 10, retry_delay: float = 1.0,
                 size: tuple[int, int] | None = None, loop: bool = False):
        """``size`` (width, height): the capture size asked of a camera (``--resolution``); the camera may pick
        the nearest it supports. Videos and streams keep their own size. ``loop``: a video file starts again at
        its end (a demo, a soak test)."""
        self.loop = loop
        self.cv2 = _cv2()
        self.spec = spec
        self.size = size if isinstance(spec, int) else None
        self.live = isinstance(spec, int) or str(spec).startswith(("rtsp://", "http://", "https://"))
        self.reconnect, self.retries, self.retry_delay = reconnect, retries, retry_delay
        if not isinstance(spec, int) and not self.live and not Path(spec).is_file():
            raise SourceError(f"--video {spec}: no such file")
        self.cap = self._open()

    def _open(self):
        cap = self.cv2.VideoCapture(self.spec)
        if not cap.isOpened():
            if isinstance(self.spec, int):
                raise SourceError(f"cannot open camera {self.spec}: check that it is connected and not in use by "
                                  "another program")
            if self.live:
                raise SourceError(f"cannot open the stream {self.spec}: check the URL and that the camera is on")
            if Path(self.spec).stat().st_size == 0:
                raise SourceError(f"--video {self.spec} is empty (0 bytes)")
            raise SourceError(f"--video {self.spec}: OpenCV cannot decode it (corrupt, truncated at the start, or a "
                              "format it has no decoder for); try converting it to MP4 (H.264) or MJPEG AVI")
        if self.size:
            cap.set(self.cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(self.cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        return cap

    def frames(self) -> Iterator[Frame]:
        i = 0
        failures = 0
        while True:
            ok, bgr = self.cap.read()
            t, tn = time.time(), time.perf_counter_ns()
            if not ok or bgr is None:
                if not self.live:
                    if self.loop and i > 0 and failures == 0:
                        failures = 1  # a second failure in a row: the video cannot be read from its start
                        self.cap.set(getattr(self.cv2, "CAP_PROP_POS_FRAMES", 1), 0)
                        continue
                    self._note_early_end(i)
                    return  # the video ended
                failures += 1
                if not self.reconnect or failures > self.retries:
                    raise SourceError(f"camera {self.spec} stopped delivering frames (disconnected?); "
                                      "use --reconnect to keep retrying")
                log.warning("camera %s lost; reconnecting (%d/%d)", self.spec, failures, self.retries)
                self.cap.release()
                time.sleep(self.retry_delay)
                try:
                    self.cap = self._open()
                except SourceError:
                    continue
                continue
            failures = 0
            yield Frame(i, self.cv2.cvtColor(bgr, self.cv2.COLOR_BGR2RGB), t, tn, f"frame{i}")
            i += 1

    def _note_early_end(self, read: int) -> None:
        """A video that ends well before the frame count in its header is truncated: say so."""
        prop = getattr(self.cv2, "CAP_PROP_FRAME_COUNT", None)
        announced = int(self.cap.get(prop) or 0) if prop is not None else 0
        if announced > 0 and read < announced * 0.98 - 1:
            self.end_note = f"the video ended after {read} of the {announced} frames its header announces: truncated?"
            log.warning("%s: %s", self.spec, self.end_note)

    def close(self) -> None:
        self.cap.release()


class PiCameraSource(Source):
    """Raspberry Pi camera via picamera2 (apt install python3-picamera2), low-resolution RGB stream."""

    name = "picamera2"
    live = True

    def __init__(self, size: tuple[int, int] = (640, 480), reconnect: bool = False, retries: int = 10):
        from edgeflower.util.deps import require

        self._cls = require("picamera2", "the Raspberry Pi camera").Picamera2
        self.size, self.reconnect, self.retries = size, reconnect, retries
        self._start()

    def _start(self) -> None:
        try:
            self.cam = self._cls()
            # 'RGB888' in libcamera terms is BGR byte order in memory; 'BGR888' gives RGB arrays.
            cfg = self.cam.create_video_configuration(main={"size": self.size, "format": "BGR888"})
            self.cam.configure(cfg)
            self.cam.start()
        except Exception as exc:  # noqa: BLE001 - libcamera raises RuntimeError/IndexError when no camera
            raise SourceError(f"cannot start the Raspberry Pi camera ({exc}): is it connected and enabled?") from exc

    what = "the Raspberry Pi camera"

    def _capture(self) -> tuple[np.ndarray, list | None] | None:
        """One frame (RGBX or RGB) and the network's outputs computed on the sensor (None here); None: no frame."""
        return self.cam.capture_array("main"), None

    def frames(self) -> Iterator[Frame]:
        i, failures = 0, 0
        while True:
            try:
                got = self._capture()
            except Exception as exc:  # noqa: BLE001
                failures += 1
                if not self.reconnect or failures > self.retries:
                    raise SourceError(f"{self.what} stopped ({exc}); use --reconnect to retry") from exc
                log.warning("camera lost (%s); restarting (%d/%d)", exc, failures, self.retries)
                self.close()
                time.sleep(1.0)
                try:
                    self._start()
                except SourceError:
                    pass
                continue
            failures = 0
            if got is None:
                continue
            arr, outputs = got
            t, tn = time.time(), time.perf_counter_ns()
            yield Frame(i, np.ascontiguousarray(arr[:, :, :3]), t, tn, f"frame{i}", outputs=outputs)
            i += 1

    def close(self) -> None:
        try:
            self.cam.stop()
            self.cam.close()
        except Exception:  # noqa: BLE001 - closing a dead camera must not mask the first error
            pass


class LatestFrame:
    """Capture in a background thread; ``get`` returns the newest frame not yet returned (older ones are dropped).

    Inference therefore never works through a stale backlog. Errors in the capture thread are re-raised in
    the consumer; the end of the stream is reported as ``None``.
    """

    def __init__(self, source: Source):
        self.source = source
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._done = False
        self._error: BaseException | None = None
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgeflower-capture", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for f in self.source.frames():
                if self._stop.is_set():
                    break
                with self._cond:
                    if self._frame is not None:
                        self.dropped += 1
                    self._frame = f
                    self._cond.notify()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread
            with self._cond:
                self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify()

    def get(self, timeout: float | None = None) -> Frame | None:
        with self._cond:
            while self._frame is None and not self._done and self._error is None:
                if not self._cond.wait(timeout):
                    return None
            if self._frame is not None:
                f, self._frame = self._frame, None
                return f
            if self._error is not None:
                err, self._error = self._error, None
                raise err
            return None  # end of stream

    def close(self) -> None:
        self._stop.set()
        self.source.close()
