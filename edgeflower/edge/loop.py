"""The classify loop: source -> classifier -> observers (JSON lines, status line, live page, sinks, saver), with a
summary."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from edgeflower.edge.classifier import Classifier, Smoother
from edgeflower.edge.observers import Observer
from edgeflower.edge.sources import LatestFrame, Source
from edgeflower.errors import SourceError
from edgeflower.util.stats import Reservoir, percentiles


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


def run(clf: Classifier, source: Source, observers: Sequence[Observer] = (), smooth: int = 0,
        max_frames: int | None = None) -> Summary:
    """Classify every frame (files) or the newest frame (live sources) until the stream ends, ``max_frames`` or
    Ctrl-C (SIGTERM through app.stop_on_sigterm), and hand each frame's record to every observer in order
    (edgeflower.edge.observers: JSON lines, the status line, the live page, the sinks, the saver). The source is
    closed here; the observers are the caller's to close, in its order."""
    smoother = Smoother(smooth) if smooth and smooth > 1 else None
    s = Summary()
    grabber = LatestFrame(source) if source.live else None
    frames = iter(source.frames()) if grabber is None else None
    t0 = time.perf_counter()
    try:
        while max_frames is None or s.frames + s.errors < max_frames:
            frame = grabber.get() if grabber is not None else next(frames, None)
            if frame is None:
                break
            if frame.image is None:
                s.errors += 1
                rec = {"ts": frame.timestamp, "frame": frame.index, "name": frame.name, "error": frame.error}
            else:
                if frame.outputs is not None:  # the AI Camera ran the network on the sensor for this frame
                    clf.backend.feed(frame.outputs)
                pred = clf.classify(frame.image, smoother)
                e2e = (time.perf_counter_ns() - frame.captured_ns) / 1e6
                s.frames += 1
                s.inference_ms.append(pred.inference_ms)
                s.e2e_ms.append(e2e)
                s.labels[pred.label] += 1
                rec = {"ts": round(frame.timestamp, 6), "frame": frame.index, "name": frame.name, **pred.to_dict(),
                       "e2e_ms": round(e2e, 3)}
            for o in observers:
                o.update(frame, rec)
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
    return s
