"""What the frame loop hands each frame to: one small interface, ``update(frame, record)`` and ``close()``.

The loop (edgeflower.edge.loop.run) classifies a frame and passes its record (the JSON line: time, frame, name,
label, score, top 3, similarity, timings; or time, frame, name and ``error`` for a frame that could not be read)
to every observer in order. An observer never blocks the camera: the sinks and the saver queue to threads of their
own. ``close()`` ends an observer within its own time limit and returns the lines a person should read (counts),
so the caller closes them in its order and says what they did. Adding a consumer (a recorder, a metrics exporter)
is one class here, not an edit of the loop.
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Callable, Protocol

from edgeflower.edge.sources import Frame


class Observer(Protocol):
    def update(self, frame: Frame, record: dict) -> None: ...

    def close(self) -> list[str]: ...


class _Rate:
    """Frames classified and frames per second since the observer was made (just before the loop starts)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.frames = 0

    def tick(self) -> tuple[float, float]:
        self.frames += 1
        now = time.perf_counter()
        return now, (self.frames / (now - self.t0) if now > self.t0 else 0.0)


class JsonLines:
    """Every record as a JSON line (unreadable frames too) on ``out``; closes ``out`` unless it is stdout."""

    def __init__(self, out: IO[str], own: bool = False):
        self.out, self.own = out, own

    def update(self, frame: Frame, record: dict) -> None:
        self.out.write(json.dumps(record) + "\n")

    def close(self) -> list[str]:
        if self.own and self.out is not sys.stdout:
            self.out.close()
        else:
            self.out.flush()
        return []


class StatusLine:
    """One line (frames, FPS, inference and end-to-end time, the answer) to ``say`` at most every ``every`` s."""

    def __init__(self, say: Callable[[str], None], every: float = 0.25):
        self.say, self.every = say, every
        self.rate, self.last = _Rate(), 0.0

    def update(self, frame: Frame, record: dict) -> None:
        if "error" in record:
            return
        now, fps = self.rate.tick()
        if now - self.last > self.every:
            self.last = now
            self.say(f"{self.rate.frames} frames  {fps:5.1f} FPS  inference {record['inference_ms']:6.2f} ms  "
                     f"e2e {record['e2e_ms']:6.2f} ms  {record['label']} {record['score'] * 100:5.1f}%")

    def close(self) -> list[str]:
        return []


class LivePage:
    """The newest frame and its answer for the live page (edgeflower.edge.serve.LiveState)."""

    def __init__(self, state, min_similarity: float | None, threshold: float):
        self.state, self.min_similarity, self.threshold = state, min_similarity, threshold
        self.rate = _Rate()

    def update(self, frame: Frame, record: dict) -> None:
        if "error" in record:
            return
        _, fps = self.rate.tick()
        self.state.update(frame.image, {"label": record["label"], "score": record["score"], "fps": fps,
                                        "latency_ms": record["total_ms"], "frame": frame.index,
                                        "top_k": record["top_k"], "similarity": record.get("similarity"),
                                        "min_similarity": self.min_similarity, "threshold": self.threshold})

    def close(self) -> list[str]:
        return []


class Changes:
    """The label-change sinks (edgeflower.edge.sinks.LabelChanges: MQTT, webhook, command); closed together
    within ``timeout`` seconds."""

    def __init__(self, changes, timeout: float = 5.0):
        self.changes, self.timeout = changes, timeout

    def update(self, frame: Frame, record: dict) -> None:
        if "error" not in record:
            self.changes.update(record)  # never blocks: each sink has its own thread and queue

    def close(self) -> list[str]:
        return [f"{st['sink']}: {st['sent']} sent, {st['failed']} failed, {st['dropped']} dropped (queue full)"
                + (f", {st['queued']} not sent at exit" if st["queued"] else "")
                for st in self.changes.close(timeout=self.timeout)]


class Saver:
    """The frames the model was unsure of (edgeflower.edge.saver.FrameSaver), written within ``timeout`` s."""

    def __init__(self, saver, folder: str, timeout: float = 10.0):
        self.saver, self.folder, self.timeout = saver, folder, timeout

    def update(self, frame: Frame, record: dict) -> None:
        if "error" not in record:
            self.saver.consider(frame.image, record)  # never blocks either

    def close(self) -> list[str]:
        self.saver.close(timeout=self.timeout)
        st = self.saver.stats()
        return [f"saved {st['saved']} frames to {self.folder}"
                + (" (stopped: the size cap or a full disk)" if st["stopped"] else "")]
