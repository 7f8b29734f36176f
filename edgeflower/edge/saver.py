"""Keep the frames the device was unsure of: the ones that would improve the next model.

``classify --save DIR --save-when unknown,low-confidence,changed`` writes each such frame as a JPEG with a JSON
sidecar (answer, scores, similarity, time, model sha256). Writes are atomic (a temporary name, then a rename) and
happen on the saver's own thread behind a bounded queue. The folder never grows past ``--save-max-mb`` (what is
already in it counts): at the cap the saver stops, warns once, and classification goes on; a full disk does the
same. `edgeflower data review DIR` and `edgeflower data add DIR --into DATASET` close the loop.
"""

from __future__ import annotations

import io
import json
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgeflower.edge.sinks import Sink
from edgeflower.errors import SourceError

log = logging.getLogger(__name__)

REASONS = ("unknown", "low-confidence", "changed")


def parse_when(text: str) -> set[str]:
    when = {t.strip() for t in text.split(",") if t.strip()}
    bad = when - set(REASONS)
    if bad or not when:
        raise SourceError(f"--save-when {text!r}: choose from {', '.join(REASONS)} (comma-separated)")
    return when


class FrameSaver(Sink):
    kind = "saver"

    def __init__(self, folder: str | os.PathLike, when: set[str] | str = "unknown,low-confidence",
                 min_interval: float = 1.0, max_mb: float = 500.0, confidence: float = 0.7,
                 model_sha256: str | None = None, clock=time.monotonic, queue_size: int = 8):
        self.folder = Path(folder)
        self.when = parse_when(when) if isinstance(when, str) else set(when)
        self.min_interval, self.confidence, self.model_sha256 = min_interval, confidence, model_sha256
        self.max_bytes = int(max_mb * 2**20)
        self.clock = clock
        self.last_label: str | None = None
        self.last_save = float("-inf")
        self.saved = 0
        self.full = False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / ".edgeflower-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise SourceError(f"--save {self.folder}: cannot write there ({exc.strerror}); choose a writable "
                              "folder") from exc
        self.used = sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())
        super().__init__(queue_size=queue_size)

    def describe(self) -> str:
        return f"saver {self.folder}"

    def reasons(self, rec: dict) -> list[str]:
        from edgeflower.edge.classifier import UNKNOWN

        label = rec.get("label")
        out = []
        if "unknown" in self.when and label == UNKNOWN:
            out.append("unknown")
        top = (rec.get("top_k") or [{}])[0].get("score", rec.get("score", 1.0))
        if "low-confidence" in self.when and top is not None and top < self.confidence:
            out.append("low-confidence")
        if "changed" in self.when and self.last_label is not None and label != self.last_label:
            out.append("changed")
        return out

    def consider(self, image: np.ndarray, rec: dict) -> bool:
        """Queue the frame if it is one to keep (never blocks): whether it was queued."""
        why = self.reasons(rec)
        self.last_label = rec.get("label")
        now = self.clock()
        if not why or self.full or now - self.last_save < self.min_interval:
            return False
        self.last_save = now
        self.put({"image": image, "rec": dict(rec), "reasons": why, "time": datetime.now(timezone.utc)})
        return True

    def send(self, message: dict) -> None:
        if self.full:
            return
        from PIL import Image

        rec, t = message["rec"], message["time"]
        buf = io.BytesIO()
        Image.fromarray(np.asarray(message["image"], np.uint8)).save(buf, format="JPEG", quality=90)
        jpeg = buf.getvalue()
        side = {"label": rec.get("label"), "score": rec.get("score"), "similarity": rec.get("similarity"),
                "top_k": rec.get("top_k"), "reasons": message["reasons"], "time": t.isoformat(),
                "frame": rec.get("frame"), "source_name": rec.get("name"), "model_sha256": self.model_sha256}
        meta = json.dumps(side, indent=1).encode()
        if self.used + len(jpeg) + len(meta) > self.max_bytes:
            self._stop(f"reached --save-max-mb {self.max_bytes / 2**20:g} MB in {self.folder}")
            return
        stem = f"{t.strftime('%Y%m%d-%H%M%S-%f')}-{_safe(str(rec.get('label')))}"
        try:
            for path, data in ((self.folder / f"{stem}.jpg", jpeg), (self.folder / f"{stem}.json", meta)):
                tmp = path.with_name(f".{path.name}.tmp")
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
        except OSError as exc:  # a full disk: stop saving, keep classifying
            for p in self.folder.glob(f".{stem}.*.tmp"):
                p.unlink(missing_ok=True)
            self._stop(f"cannot write to {self.folder} ({exc.strerror})")
            return
        self.used += len(jpeg) + len(meta)
        self.saved += 1

    def _stop(self, why: str) -> None:
        if not self.full:
            log.warning("saving frames stopped: %s; classification goes on", why)
        self.full = True

    def stats(self) -> dict:
        return {**super().stats(), "saved": self.saved, "stopped": self.full, "bytes": self.used}


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:40] or "x"
