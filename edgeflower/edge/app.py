"""The device application behind `edgeflower classify` and `edgeflower service install`.

``DeviceOptions`` holds every choice of the command line; ``check`` loads the model and opens the sources that can be
opened once (what `service install` verifies before it writes a unit); ``run_device`` wires source, classifier,
saver, live page and sinks together, runs the loop and stops cleanly: SIGTERM (``systemctl stop``) and Ctrl-C both
flush the sinks' files, stop the ``--exec`` children and return the summary. The library never prints: messages for
the person go to ``say``, the status line to ``status``; ``run_console`` is `classify`: ``run_device`` with both
written for a terminal or a journal through one ``echo`` function.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterator

from edgeflower.edge.classifier import Classifier
from edgeflower.edge.loop import Summary, run
from edgeflower.edge.observers import Changes, JsonLines, LivePage, Saver, StatusLine
from edgeflower.edge.sources import Source
from edgeflower.errors import SourceError

SOURCES = "--camera [N|imx500], --video PATH|URL or --images DIR|GLOB"


@dataclass(frozen=True)
class DeviceOptions:
    """What `edgeflower classify` was asked to do (the CLI's options, one field each)."""

    model: str
    camera: str | None = None  # "pi", "imx500" (the AI Camera, MODEL its network.rpk), or an OpenCV camera number
    video: str | None = None
    images: str | None = None
    backend: str | None = None
    threads: int | None = None
    threshold: float | None = None
    min_similarity: float | None = None
    top_k: int = 3
    smooth: int = 0
    jsonl: str | None = None
    serve: str | None = None
    mqtt_url: str | None = None
    mqtt_every: float = 60.0
    mqtt_discovery: bool = False
    post_url: str | None = None
    exec_cmd: str | None = None
    exec_shell: bool = False
    save_dir: str | None = None
    save_when: str = "unknown,low-confidence"
    save_confidence: float = 0.7
    save_min_interval: float = 1.0
    save_max_mb: float = 500.0
    reconnect: bool = False
    loop: bool = False
    resolution: str = "320x240"
    max_frames: int | None = None

    @classmethod
    def from_params(cls, params: dict) -> DeviceOptions:
        """From `classify`'s parsed options; those that are not the device's (--quiet) are left out."""
        return cls(**{f.name: params[f.name] for f in fields(cls) if f.name in params})

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.camera, self.video, self.images)) != 1:
            raise SourceError(f"give exactly one source: {SOURCES}")
        on_sensor = str(self.model).lower().endswith(".rpk")
        if on_sensor != (self.camera == "imx500"):
            raise SourceError("the AI Camera runs the network on the sensor: give its network.rpk as MODEL with "
                              "--camera imx500" if on_sensor else
                              "--camera imx500 needs MODEL to be the network.rpk of `export --formats imx500`")
        self.size  # noqa: B018 - parse --resolution now: a bad value is an error before anything starts

    @property
    def size(self) -> tuple[int, int]:
        """--resolution as (width, height)."""
        try:
            w, h = (int(v) for v in self.resolution.lower().split("x"))
        except ValueError as exc:
            raise SourceError(f"--resolution {self.resolution!r}: expected WxH, e.g. 640x480") from exc
        if w <= 0 or h <= 0:
            raise SourceError(f"--resolution {self.resolution!r}: width and height must be positive")
        return w, h

    @property
    def camera_index(self) -> int | None:
        if self.camera is None or self.camera in ("pi", "imx500"):
            return None
        try:
            return int(self.camera)
        except ValueError as exc:
            raise SourceError(f"--camera {self.camera!r}: expected a camera number (0, 1, ...), imx500 or no "
                              "value") from exc

    @property
    def live(self) -> bool:
        """A camera or a stream: opened when the device starts, never by `check` (a running service holds it)."""
        return self.camera is not None or (self.video is not None and "://" in self.video)


def load_classifier(opts: DeviceOptions) -> Classifier:
    return Classifier(opts.model, backend=opts.backend, threads=opts.threads, threshold=opts.threshold,
                      top_k=opts.top_k, min_similarity=opts.min_similarity)


def open_source(opts: DeviceOptions, clf: Classifier) -> Source:
    from edgeflower.edge.sources import ImageSource, OpenCVSource, PiCameraSource

    if opts.images is not None:
        return ImageSource(opts.images, size_hint=clf.input_size)
    if opts.video is not None:
        return OpenCVSource(opts.video, reconnect=opts.reconnect, loop=opts.loop)
    if opts.camera == "pi":
        return PiCameraSource(opts.size, reconnect=opts.reconnect)
    if opts.camera == "imx500":
        from edgeflower.edge.imx500 import Imx500Source

        return Imx500Source(opts.model, opts.size, reconnect=opts.reconnect)
    return OpenCVSource(opts.camera_index, reconnect=opts.reconnect, size=opts.size)


def check(opts: DeviceOptions) -> Classifier:
    """What would stop the device at start, found now: the model loads and is a classifier, still images and video
    files open, cameras and streams have their package (they are opened only when the device starts: a running
    service may hold the camera), and the sinks' addresses parse."""
    from edgeflower.edge.saver import parse_when
    from edgeflower.edge.serve import parse_hostport
    from edgeflower.edge.sinks import parse_mqtt_url, parse_webhook_url

    clf = load_classifier(opts)
    opts.camera_index  # noqa: B018 - a bad --camera value
    if opts.live:
        from edgeflower.util.deps import require

        if opts.camera == "pi":
            require("picamera2", "the Raspberry Pi camera")
        elif opts.camera == "imx500":
            require("picamera2.devices", "the Raspberry Pi AI Camera")
        else:
            require("cv2", "--video and --camera N")
    else:
        open_source(opts, clf).close()
    if opts.serve:
        parse_hostport(opts.serve)
    if opts.mqtt_url:
        parse_mqtt_url(opts.mqtt_url)
    if opts.post_url:
        parse_webhook_url(opts.post_url)
    if opts.save_dir:
        parse_when(opts.save_when)
    return clf


class Stop(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM, so that the loop ends the way Ctrl-C ends it."""


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM raises ``Stop`` in the main thread while the block runs (elsewhere it keeps its handler)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Stop(signal.Signals(signum).name)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextlib.contextmanager
def _no_stops() -> Iterator[None]:
    """Cleanup runs to its end: a second SIGTERM or Ctrl-C while the files are flushed is ignored (every step of
    the cleanup has a timeout, so this cannot hang the stop)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_device(opts: DeviceOptions, say: Callable[[str], None] = lambda m: None,
               status: Callable[[str], None] | None = None, status_every: float = 15.0,
               keep_page: bool = True) -> Summary:
    """Classify until the source ends, ``max_frames``, Ctrl-C or SIGTERM; return the summary.

    With a live page (``serve``) and a stream that ended, the page stays up until Ctrl-C or SIGTERM unless
    ``keep_page`` is false. Sinks' and saver's counts go to ``say`` at the end."""
    with stop_on_sigterm():
        observers: list = []
        if opts.save_dir:  # before the model loads: a folder it cannot write is an error at start
            from edgeflower.edge.saver import FrameSaver
            from edgeflower.util.files import sha256_file

            observers.append(Saver(FrameSaver(
                opts.save_dir, when=opts.save_when, min_interval=opts.save_min_interval, max_mb=opts.save_max_mb,
                confidence=opts.save_confidence,
                model_sha256=sha256_file(opts.model) if Path(opts.model).is_file() else None), opts.save_dir))
        server = None
        try:
            try:
                clf = load_classifier(opts)
                if not clf.has_metadata:
                    say(f"warning: {opts.model} has no edgeflower metadata; labels are class_0.. and no unknown "
                        "threshold")
                if opts.serve:
                    from edgeflower.edge.serve import LiveState, start_server

                    live_state = LiveState()
                    server = start_server(opts.serve, live_state)
                    host, port = server.server_address[:2]
                    say(f"live page: http://{host}:{port}/")
                    observers.append(LivePage(live_state, clf.min_similarity, clf.threshold))
                changes = _sinks(opts)
                if changes is not None:
                    observers.append(Changes(changes))
                source = open_source(opts, clf)  # the loop closes it, whatever happens
                out = open(opts.jsonl, "w", encoding="utf-8") if opts.jsonl else sys.stdout
                # in the order they see each frame: the record first, then the person, then the rest
                observers = [JsonLines(out, own=bool(opts.jsonl))] + ([StatusLine(status, status_every)] if status
                                                                      else []) + observers
                summary = run(clf, source, observers, smooth=opts.smooth, max_frames=opts.max_frames)
            finally:
                with _no_stops():
                    # the records' file first, then the saver (10 s), then the sinks together (5 s)
                    for o in sorted(observers, key=_closing_order):
                        for line in o.close():
                            say(line)
            if server is not None and keep_page and summary.stopped_by.startswith("end of stream"):
                say("the stream ended; the live page keeps showing the last frame until Ctrl-C or SIGTERM")
                try:
                    while True:
                        time.sleep(3600)
                except KeyboardInterrupt:
                    pass
        finally:
            if server is not None:
                server.shutdown()
    return summary


def run_console(opts: DeviceOptions, echo: Callable[..., None], tty: bool, quiet: bool = False) -> Summary:
    """``run_device`` for a person: on a terminal (``tty``) one status line rewritten in place; under systemd, nohup
    or a pipe the same status as a line every 15 s; none when ``quiet``. Messages go on lines of their own, then the
    summary line; a source that failed is a SourceError after it. ``echo(text, warning=False)`` writes ``text`` as
    it is (no newline added) to stderr."""
    show = tty and not quiet
    if show:
        status, status_every = (lambda msg: echo("\r" + msg[:150].ljust(150))), 0.25
    else:
        status, status_every = (None if quiet else (lambda msg: echo(msg[:150] + "\n"))), 15.0

    def say(msg: str) -> None:
        echo("\n" if show else "")  # below the status line
        echo(msg, warning=msg.startswith("warning:"))
        echo("\n")

    summary = run_device(opts, say=say, status=status, status_every=status_every)
    echo(("\n" if show else "") + summary_line(summary) + "\n")
    if summary.error:
        raise SourceError(summary.error)
    return summary


def _sinks(opts: DeviceOptions):
    sinks = []
    if opts.mqtt_url:
        from edgeflower.edge.sinks import MqttSink

        sinks.append(MqttSink(opts.mqtt_url, discovery=opts.mqtt_discovery))
    if opts.post_url:
        from edgeflower.edge.sinks import WebhookSink

        sinks.append(WebhookSink(opts.post_url))
    if opts.exec_cmd:
        from edgeflower.edge.sinks import CommandSink

        sinks.append(CommandSink(opts.exec_cmd, shell=opts.exec_shell))
    if not sinks:
        return None
    from edgeflower.edge.sinks import LabelChanges

    return LabelChanges(sinks, heartbeat_every=opts.mqtt_every)


def _closing_order(o) -> int:
    return {JsonLines: 0, Saver: 1, Changes: 2}.get(type(o), 3)


def summary_line(summary: Summary) -> str:
    d = summary.to_dict()
    labels = ", ".join(f"{k} {v}" for k, v in d["labels"].items())
    return (f"{d['frames']} frames in {d['seconds']:.1f} s ({d['fps']:.1f} FPS); inference p50 "
            f"{d['inference_ms']['p50']:.2f} ms p95 {d['inference_ms']['p95']:.2f} ms; end-to-end p50 "
            f"{d['e2e_ms']['p50']:.2f} ms p95 {d['e2e_ms']['p95']:.2f} ms; {d['errors']} unreadable, "
            f"{d['dropped']} dropped; labels: {labels or '-'} ({d['stopped_by']})")
