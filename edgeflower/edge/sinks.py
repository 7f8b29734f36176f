"""Tell other systems what the camera sees: a webhook (HTTP POST) and a command, on every change of the label.

Each sink runs on its own thread behind a bounded queue, so a slow or absent receiver never slows the camera
loop: ``put`` never blocks, and when the queue is full the oldest message is dropped and counted. Standard
library only.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque

log = logging.getLogger(__name__)


class Sink:
    """A background sender. Subclasses implement ``send(message) -> None`` (raise to count a failure)."""

    kind = "sink"

    def __init__(self, queue_size: int = 64):
        self._q: deque[dict] = deque()
        self._max = max(1, queue_size)
        self._cond = threading.Condition()
        self._closed = False
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._warned = False
        self._thread = threading.Thread(target=self._loop, name=f"edgeflower-{self.kind}", daemon=True)
        self._thread.start()

    def put(self, message: dict) -> None:
        """Queue a message; never blocks. A full queue drops its oldest message."""
        with self._cond:
            if self._closed:
                return
            if len(self._q) >= self._max:
                self._q.popleft()
                self.dropped += 1
            self._q.append(message)
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._q or self._closed)
                if not self._q:
                    return  # closed and drained
                msg = self._q.popleft()
            try:
                self.send(msg)
                self.sent += 1
            except Exception as exc:  # noqa: BLE001 - a receiver's failure must never reach the camera loop
                self.failed += 1
                if not self._warned:
                    log.warning("%s: %s (further failures are counted, not logged)", self.describe(), exc)
                    self._warned = True

    def send(self, message: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return self.kind

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking messages and give the queue ``timeout`` seconds to drain."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def stats(self) -> dict:
        return {"sink": self.describe(), "sent": self.sent, "failed": self.failed, "dropped": self.dropped,
                "queued": len(self._q)}


class WebhookSink(Sink):
    """POST each message as JSON to ``url``, with a timeout and retries with back-off."""

    kind = "webhook"

    def __init__(self, url: str, timeout: float = 5.0, retries: int = 3, backoff: float = 0.5, **kw):
        if not url.startswith(("http://", "https://")):
            from edgeflower.errors import SourceError

            raise SourceError(f"--post {url!r}: expected an http:// or https:// URL")
        self.url, self.timeout, self.retries, self.backoff = url, timeout, retries, backoff
        super().__init__(**kw)

    def describe(self) -> str:
        return f"webhook {self.url}"

    def send(self, message: dict) -> None:
        body = json.dumps(message).encode()
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            req = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "edgeflower"})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    r.read()
                return
            except (urllib.error.URLError, OSError) as exc:  # HTTPError is a URLError
                last = exc
        raise RuntimeError(f"POST failed after {self.retries + 1} tries: {last}")


class CommandSink(Sink):
    """Run a command on each message, with the label in its environment (EDGEFLOWER_LABEL, EDGEFLOWER_SCORE,
    EDGEFLOWER_SIMILARITY, EDGEFLOWER_JSON). Without a shell unless ``shell=True``."""

    kind = "command"

    def __init__(self, command: str, shell: bool = False, timeout: float = 30.0, **kw):
        self.command, self.shell, self.timeout = command, shell, timeout
        self.argv = command if shell else shlex.split(command)
        if not self.argv:
            from edgeflower.errors import SourceError

            raise SourceError("--exec: the command is empty")
        super().__init__(**kw)

    def describe(self) -> str:
        return f"command {self.command!r}"

    def send(self, message: dict) -> None:
        env = dict(os.environ, EDGEFLOWER_LABEL=str(message.get("label", "")),
                   EDGEFLOWER_SCORE=str(message.get("score", "")),
                   EDGEFLOWER_SIMILARITY="" if message.get("similarity") is None else str(message["similarity"]),
                   EDGEFLOWER_JSON=json.dumps(message))
        r = subprocess.run(self.argv, shell=self.shell, env=env, timeout=self.timeout, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise RuntimeError(f"exit code {r.returncode}: {r.stderr.decode(errors='replace').strip()[:200]}")


class LabelChanges:
    """Passes a message on to the sinks when the (smoothed) label changes, and keeps their counters."""

    def __init__(self, sinks: list[Sink]):
        self.sinks = sinks
        self.last: str | None = None

    def update(self, message: dict) -> bool:
        if message.get("label") == self.last:
            return False
        self.last = message.get("label")
        for s in self.sinks:
            s.put(message)
        return True

    def close(self) -> list[dict]:
        for s in self.sinks:
            s.close()
        return [s.stats() for s in self.sinks]
