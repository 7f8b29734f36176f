"""Tell other systems what the camera sees: MQTT, a webhook (HTTP POST) and a command, on every change of the label.

Each sink runs on its own thread behind a bounded queue, so a slow or absent receiver never slows the camera
loop: ``put`` never blocks, and when the queue is full the oldest message is dropped and counted. Standard
library only, except MQTT (paho-mqtt, the ``mqtt`` extra).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import deque

log = logging.getLogger(__name__)


class Sink:
    """A background sender. Subclasses implement ``send(message) -> None`` (raise to count a failure).

    A sink that reports a state (``redeliver``: the webhook, MQTT) keeps the newest label message that failed and
    sends it again when the receiver comes back (tries every ``retry_every`` seconds, doubling up to a minute),
    unless a newer label has gone out meanwhile: after an outage the receiver learns the current answer, not a
    backlog."""

    kind = "sink"
    redeliver = False

    def __init__(self, queue_size: int = 64, retry_every: float = 2.0):
        self._q: deque[dict] = deque()
        self._max = max(1, queue_size)
        self._cond = threading.Condition()
        self._closed = False
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.redelivered = 0
        self.retry_every = retry_every
        self._held: dict | None = None  # the newest label message that failed (redeliver)
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
        wait = self.retry_every
        while True:
            with self._cond:
                if self._held is None:
                    self._cond.wait_for(lambda: self._q or self._closed)
                else:  # a failed label waits for the receiver; a new message or the close wakes us
                    self._cond.wait_for(lambda: self._q or self._closed, timeout=wait)
                if self._q:
                    msg, retry = self._q.popleft(), False
                elif self._closed or self._held is None:
                    return  # closed and drained (a held message is given up at close)
                else:
                    msg, retry = self._held, True
            label_msg = msg.get("kind") != "heartbeat"
            try:
                self.send(msg)
            except Exception as exc:  # noqa: BLE001 - a receiver's failure must never reach the camera loop
                if not retry:
                    self.failed += 1
                if not self._warned:
                    log.warning("%s: %s (further failures are counted, not logged)", self.describe(), exc)
                    self._warned = True
                if self.redeliver and label_msg:
                    self._held = msg
                    wait = min(wait * 2, 60.0) if retry else self.retry_every
                continue
            self.sent += not retry
            self.redelivered += retry
            if label_msg:
                self._held = None  # the receiver has the newest label

    def send(self, message: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return self.kind

    def stop(self) -> None:
        """Take no more messages; the thread sends what is queued, then ends."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def join(self, timeout: float) -> None:
        self._thread.join(max(0.0, timeout))

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking messages and give the queue ``timeout`` seconds to drain."""
        self.stop()
        self.join(timeout)

    def stats(self) -> dict:
        return {"sink": self.describe(), "sent": self.sent, "failed": self.failed, "dropped": self.dropped,
                "queued": len(self._q), "redelivered": self.redelivered}


def parse_webhook_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        from edgeflower.errors import SourceError

        raise SourceError(f"--post {url!r}: expected an http:// or https:// URL")
    return url


class WebhookSink(Sink):
    """POST each message as JSON to ``url``, with a timeout and retries with back-off."""

    kind = "webhook"
    redeliver = True

    def __init__(self, url: str, timeout: float = 5.0, retries: int = 3, backoff: float = 0.5, **kw):
        self.url, self.timeout, self.retries, self.backoff = parse_webhook_url(url), timeout, retries, backoff
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
    EDGEFLOWER_SIMILARITY, EDGEFLOWER_JSON). Without a shell unless ``shell=True``.

    Each run is a process group of its own: one that outlives ``timeout``, and whatever is still running when the
    sink closes, is killed with all its children (SIGTERM, then SIGKILL after ``kill_grace`` seconds), so no
    command outlives `classify`."""

    kind = "command"

    def __init__(self, command: str, shell: bool = False, timeout: float = 30.0, kill_grace: float = 1.0, **kw):
        self.command, self.shell, self.timeout, self.kill_grace = command, shell, timeout, kill_grace
        self.argv = command if shell else shlex.split(command)
        if not self.argv:
            from edgeflower.errors import SourceError

            raise SourceError("--exec: the command is empty")
        self._child: subprocess.Popen | None = None
        self._abandoned = False  # set when close() gives up on the queue: no new command starts
        super().__init__(**kw)

    def describe(self) -> str:
        return f"command {self.command!r}"

    def send(self, message: dict) -> None:
        env = dict(os.environ, EDGEFLOWER_LABEL=str(message.get("label", "")),
                   EDGEFLOWER_SCORE=str(message.get("score", "")),
                   EDGEFLOWER_SIMILARITY="" if message.get("similarity") is None else str(message["similarity"]),
                   EDGEFLOWER_JSON=json.dumps(message))
        with self._cond:
            if self._abandoned:
                raise RuntimeError("not run: classify was stopping")
            self._child = child = subprocess.Popen(
                self.argv, shell=self.shell, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, err = child.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self._kill(child)
            raise RuntimeError(f"still running after {self.timeout:g} s: killed") from None
        finally:
            with self._cond:
                self._child = None
        if child.returncode != 0:
            raise RuntimeError(f"exit code {child.returncode}: {err.decode(errors='replace').strip()[:200]}")

    def _kill(self, child: subprocess.Popen) -> None:
        """SIGTERM to the command's process group, SIGKILL after the grace period, and reap it."""
        for sig, wait in ((signal.SIGTERM, self.kill_grace), (signal.SIGKILL, 5.0)):
            _signal_group(child.pid, sig)
            try:
                child.communicate(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        _signal_group(child.pid, signal.SIGKILL)  # the leader is gone; what it left in its group goes too

    def join(self, timeout: float) -> None:
        """Wait ``timeout`` seconds for the queue to drain, then kill a command still running: at most
        ``timeout + kill_grace`` seconds in all."""
        super().join(timeout)
        with self._cond:
            if self._thread.is_alive():  # still busy: what is queued is given up, nothing new starts
                self._abandoned = True
                self._q.clear()
            child = self._child
        if child is None:
            return
        # signals only: the sink's own thread waits on the child and reaps it (two waiters would race)
        for sig, wait in ((signal.SIGTERM, self.kill_grace), (signal.SIGKILL, 1.0)):
            _signal_group(child.pid, sig)
            super().join(wait)
            if not self._thread.is_alive():
                break
        _signal_group(child.pid, signal.SIGKILL)  # what the leader left in its group


def _signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to a command's process group; a group that is already gone is no error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class LabelChanges:
    """Passes a message on to the sinks when the (smoothed) label changes, and a heartbeat (the current answer,
    frames and uptime) every ``heartbeat_every`` seconds to the sinks that want one (MQTT)."""

    def __init__(self, sinks: list[Sink], heartbeat_every: float = 60.0, clock=time.monotonic):
        self.sinks = sinks
        self.last: str | None = None
        self.every, self.clock = heartbeat_every, clock
        self.t0 = self.last_beat = clock()
        self.frames = 0

    def update(self, message: dict) -> bool:
        self.frames += 1
        now = self.clock()
        if self.every > 0 and now - self.last_beat >= self.every:
            self.last_beat = now
            beat = {"kind": "heartbeat", "label": message.get("label"), "score": message.get("score"),
                    "frames": self.frames, "uptime_s": round(now - self.t0, 1)}
            for s in self.sinks:
                if getattr(s, "wants_heartbeat", False):
                    s.put(beat)
        if message.get("label") == self.last:
            return False
        self.last = message.get("label")
        for s in self.sinks:
            s.put(message)
        return True

    def close(self, timeout: float = 5.0) -> list[dict]:
        """Close every sink at once, giving them ``timeout`` seconds together (plus a killed command's grace)."""
        for s in self.sinks:
            s.stop()
        deadline = time.monotonic() + timeout
        for s in self.sinks:
            s.join(deadline - time.monotonic())
        return [s.stats() for s in self.sinks]


def parse_mqtt_url(url: str) -> dict:
    """mqtt://[user:pass@]host[:port]/topic -> connection settings (a one-line error for anything else)."""
    from urllib.parse import unquote, urlsplit

    from edgeflower.errors import SourceError

    u = urlsplit(url)
    topic = u.path.lstrip("/")
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname or not topic or "+" in topic or "#" in url or u.query:
        raise SourceError(f"--mqtt {url!r}: expected mqtt://[user:pass@]host[:port]/topic (no wildcards)")
    try:
        port = u.port or (8883 if u.scheme == "mqtts" else 1883)
    except ValueError as exc:
        raise SourceError(f"--mqtt {url!r}: bad port") from exc
    return {"host": u.hostname, "port": port, "topic": topic.rstrip("/"), "tls": u.scheme == "mqtts",
            "username": unquote(u.username) if u.username else None,
            "password": unquote(u.password) if u.password else None}


class MqttSink(Sink):
    """Publish to an MQTT broker (paho-mqtt): the answer on TOPIC (retained) at each label change, a heartbeat on
    TOPIC/status, ``online``/``offline`` on TOPIC/availability (the broker sends ``offline`` itself when the device
    vanishes), and with ``discovery`` a retained Home Assistant discovery config that makes the device a sensor.
    paho reconnects on its own with back-off (1 s up to 60 s); a message that finds no connection within
    ``wait`` seconds counts as failed, and the next ones go out once the broker is back."""

    kind = "mqtt"
    wants_heartbeat = True
    redeliver = True

    def __init__(self, url: str, discovery: bool = False, node_id: str | None = None, wait: float = 2.0,
                 discovery_prefix: str = "homeassistant", **kw):
        from edgeflower.util.deps import require

        mqtt = require("paho.mqtt.client", "--mqtt")
        self.cfg = parse_mqtt_url(url)
        self.topic, self.wait = self.cfg["topic"], wait
        self.node_id = node_id or re.sub(r"[^A-Za-z0-9_-]", "_", f"edgeflower_{socket.gethostname()}")
        self.discovery, self.discovery_prefix = discovery, discovery_prefix
        self._connected = threading.Event()
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=self.node_id)
        if self.cfg["username"]:
            c.username_pw_set(self.cfg["username"], self.cfg["password"])
        if self.cfg["tls"]:
            c.tls_set()
        c.will_set(f"{self.topic}/availability", "offline", qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=60)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a, **k: self._connected.clear()
        self.client = c
        super().__init__(**kw)
        c.connect_async(self.cfg["host"], self.cfg["port"], keepalive=30)
        c.loop_start()

    def describe(self) -> str:
        return f"mqtt {self.cfg['host']}:{self.cfg['port']}/{self.topic}"

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if getattr(reason_code, "is_failure", False):
            return
        client.publish(f"{self.topic}/availability", "online", qos=1, retain=True)
        if self.discovery:
            client.publish(f"{self.discovery_prefix}/sensor/{self.node_id}/label/config",
                           json.dumps(self.discovery_config()), qos=1, retain=True)
        self._connected.set()

    def discovery_config(self) -> dict:
        return {"name": "flower", "unique_id": f"{self.node_id}_label", "object_id": f"{self.node_id}_label",
                "state_topic": self.topic, "value_template": "{{ value_json.label }}",
                "json_attributes_topic": self.topic, "availability_topic": f"{self.topic}/availability",
                "icon": "mdi:flower",
                "device": {"identifiers": [self.node_id], "name": self.node_id, "manufacturer": "edgeflower",
                           "model": "edgeflower classify"}}

    def send(self, message: dict) -> None:
        if not self._connected.wait(self.wait):
            raise RuntimeError(f"not connected to {self.cfg['host']}:{self.cfg['port']}")
        heartbeat = message.get("kind") == "heartbeat"
        info = self.client.publish(f"{self.topic}/status" if heartbeat else self.topic, json.dumps(message),
                                   qos=1, retain=not heartbeat)
        if info.rc != 0:
            raise RuntimeError(f"publish failed (paho rc {info.rc})")

    def join(self, timeout: float) -> None:
        """Drain for ``timeout`` seconds, then say ``offline`` and disconnect."""
        super().join(timeout)
        try:
            if self._connected.is_set():
                self.client.publish(f"{self.topic}/availability", "offline", qos=1, retain=True).wait_for_publish(1)
        except (RuntimeError, ValueError):
            pass
        self.client.disconnect()
        self.client.loop_stop()
