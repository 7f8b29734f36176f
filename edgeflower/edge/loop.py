"""The classify loop: source -> classifier -> sinks (JSON lines, status line, live page), with a summary."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import IO, Callable

from edgeflower._util import Reservoir, percentiles
from edgeflower.edge.classifier import Classifier, Smoother
from edgeflower.edge.sources import LatestFrame, Source
from edgeflower.errors import SourceError


@dataclass
class Summary:
    frames: int = 0
    errors: int = 0
    dropped: int = 0
    seconds: float = 0.0
    # fixed-size samples, not lists: a service classifies for months and nothing here may grow with frames
    inference_ms: Reservoir = field(default_factory=lambda: Reservoir(seed=1))
    e2e_ms: Reservoir = field(default_factory=lambda: Reservoir(seed=2))
    labels: Counter = field(default_factory=Counter)
    stopped_by: str = "end of stream"
    error: str = ""

    def to_dict(self) -> dict:
        inf = percentiles(self.inference_ms, (50, 95))
        e2e = percentiles(self.e2e_ms, (50, 95))
        return {"frames": self.frames, "errors": self.errors, "dropped": self.dropped,
                "seconds": round(self.seconds, 3), "fps": round(self.frames / self.seconds, 3) if self.seconds else 0.0,
                "inference_ms": {k: round(v, 3) for k, v in inf.items()},
                "e2e_ms": {k: round(v, 3) for k, v in e2e.items()},
                "labels": dict(self.labels.most_common()), "stopped_by": self.stopped_by, "error": self.error}


def run(clf: Classifier, source: Source, out: IO[str] | None = None, smooth: int = 0,
        status: Callable[[str], None] | None = None, live_state=None, max_frames: int | None = None,
        status_every: float = 0.25, changes=None, saver=None) -> Summary:
    """Classify every frame (files) or the newest frame (live sources) until the stream ends or Ctrl-C.
    ``status`` gets a one-line summary at most every ``status_every`` seconds; ``changes``
    (``sinks.LabelChanges``) gets every frame's answer and tells the sinks when the label changes; ``saver``
    (``saver.FrameSaver``) keeps the frames it was unsure of."""
    smoother = Smoother(smooth) if smooth and smooth > 1 else None
    s = Summary()
    grabber = LatestFrame(source) if source.live else None
    frames = iter(source.frames()) if grabber is None else None
    t0 = time.perf_counter()
    last_status = 0.0
    try:
        while max_frames is None or s.frames + s.errors < max_frames:
            if grabber is not None:
                frame = grabber.get()
                if frame is None:
                    break
            else:
                frame = next(frames, None)
                if frame is None:
                    break
            if frame.image is None:
                s.errors += 1
                if out is not None:
                    out.write(json.dumps({"ts": frame.timestamp, "frame": frame.index, "name": frame.name,
                                          "error": frame.error}) + "\n")
                continue
            if frame.outputs is not None:  # the AI Camera ran the network on the sensor for this frame
                clf.backend.feed(frame.outputs)
            pred = clf.classify(frame.image, smoother)
            e2e = (time.perf_counter_ns() - frame.captured_ns) / 1e6
            s.frames += 1
            s.inference_ms.append(pred.inference_ms)
            s.e2e_ms.append(e2e)
            s.labels[pred.label] += 1
            if out is not None or changes is not None or saver is not None:
                rec = {"ts": round(frame.timestamp, 6), "frame": frame.index, "name": frame.name, **pred.to_dict(),
                       "e2e_ms": round(e2e, 3)}
                if out is not None:
                    out.write(json.dumps(rec) + "\n")
                if changes is not None:
                    changes.update(rec)  # never blocks: each sink has its own thread and queue
                if saver is not None:
                    saver.consider(frame.image, rec)  # nor does this
            now = time.perf_counter()
            fps = s.frames / (now - t0) if now > t0 else 0.0
            if live_state is not None:
                live_state.update(frame.image, {"label": pred.label, "score": pred.score, "fps": fps,
                                                "latency_ms": pred.total_ms, "frame": frame.index,
                                                "top_k": pred.to_dict()["top_k"], "similarity": pred.similarity,
                                                "min_similarity": clf.min_similarity,
                                                "threshold": clf.threshold})
            if status is not None and now - last_status > status_every:
                last_status = now
                status(f"{s.frames} frames  {fps:5.1f} FPS  inference {pred.inference_ms:6.2f} ms  "
                       f"e2e {e2e:6.2f} ms  {pred.label} {pred.score * 100:5.1f}%")
        else:  # the count was reached (an ending stream breaks out of the loop)
            s.stopped_by = f"--max-frames {max_frames}"
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through app.stop_on_sigterm (its name in args)
        s.stopped_by = f"stopped by {exc.args[0]}" if exc.args else "interrupted"
    except SourceError as exc:
        s.stopped_by, s.error = "source error", str(exc)
    finally:
        s.seconds = time.perf_counter() - t0
        if grabber is not None:
            s.dropped = grabber.dropped
            grabber.close()
        else:
            source.close()
        if s.stopped_by == "end of stream" and source.end_note:
            s.stopped_by = f"end of stream: {source.end_note}"
        if out is not None and out is not sys.stdout:
            out.flush()
    return s
