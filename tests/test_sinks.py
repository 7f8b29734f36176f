"""Sinks that tell other systems what the camera sees: a webhook and a command, each on its own thread behind a
bounded queue; tested against real receivers (a local HTTP server that fails the first requests, real processes)."""

from __future__ import annotations

import http.server
import json
import socket
import sys
import threading
import time

import pytest

from conftest import make_image, run_cli
from edgeflower.edge.sinks import CommandSink, LabelChanges, Sink, WebhookSink
from edgeflower.errors import SourceError


class _Receiver:
    """A local HTTP server that answers 500 to its first ``fail`` requests, then 200; records the bodies."""

    def __init__(self, fail: int = 0, delay: float = 0.0):
        self.bodies, self.requests, self.fail, self.delay = [], 0, fail, delay
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.requests += 1
                time.sleep(outer.delay)
                if outer.requests <= outer.fail:
                    self.send_response(500)
                    self.end_headers()
                    return
                outer.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_webhook_retries_until_the_receiver_answers():
    r = _Receiver(fail=2)
    try:
        s = WebhookSink(r.url, retries=3, backoff=0.01)
        s.put({"label": "daisy", "score": 0.9})
        s.close(timeout=10)
        assert r.bodies == [{"label": "daisy", "score": 0.9}] and r.requests == 3
        assert s.stats()["sent"] == 1 and s.stats()["failed"] == 0
    finally:
        r.close()


def test_an_absent_receiver_never_blocks_and_the_queue_drops_the_oldest():
    s = WebhookSink(f"http://127.0.0.1:{_free_port()}/", retries=1, backoff=0.2, timeout=1, queue_size=4)
    t = time.perf_counter()
    for i in range(200):
        s.put({"label": f"l{i}"})
    assert time.perf_counter() - t < 0.5  # 200 puts while the receiver is down
    s.close(timeout=0.1)
    st = s.stats()
    assert st["dropped"] >= 190 and st["sent"] == 0


def test_a_slow_receiver_gets_the_newest_messages():
    r = _Receiver(delay=0.2)
    try:
        s = WebhookSink(r.url, queue_size=2)
        for i in range(10):
            s.put({"label": f"l{i}"})
        s.close(timeout=10)
        got = [b["label"] for b in r.bodies]
        assert got[-1] == "l9" and len(got) <= 4 and s.stats()["dropped"] >= 6
    finally:
        r.close()


def test_command_gets_the_label_in_its_environment_without_a_shell(tmp_path):
    out = tmp_path / "out.txt"
    code = f"import os; open({str(out)!r}, 'a').write(os.environ['EDGEFLOWER_LABEL'] + ' ' + os.environ['EDGEFLOWER_SCORE'] + '\\n')"
    s = CommandSink(f"{sys.executable} -c \"{code}\"")
    s.put({"label": "roses", "score": 0.5})
    s.put({"label": "unknown", "score": 0.1})
    s.close(timeout=30)
    assert out.read_text().splitlines() == ["roses 0.5", "unknown 0.1"] and s.stats()["sent"] == 2
    # no shell: a ';' is an argument, not a second command
    marker = tmp_path / "marker"
    s = CommandSink(f"echo hello; touch {marker}")
    s.put({"label": "x"})
    s.close(timeout=30)
    assert not marker.exists() and s.stats()["sent"] == 1
    # with the shell it is a second command
    s = CommandSink(f"echo hello; touch {marker}", shell=True)
    s.put({"label": "x"})
    s.close(timeout=30)
    assert marker.exists()


def test_a_failing_command_is_counted():
    s = CommandSink(f"{sys.executable} -c \"raise SystemExit(3)\"")
    s.put({"label": "x"})
    s.close(timeout=30)
    assert s.stats()["failed"] == 1 and s.stats()["sent"] == 0


def test_bad_sink_settings():
    with pytest.raises(SourceError, match="http"):
        WebhookSink("ftp://x/")
    with pytest.raises(SourceError, match="empty"):
        CommandSink("  ")


def test_only_label_changes_are_sent():
    class Rec(Sink):
        def __init__(self):
            self.got = []
            super().__init__()

        def send(self, m):
            self.got.append(m["label"])

    s = Rec()
    ch = LabelChanges([s])
    for lab in ["a", "a", "b", "b", "b", "a", "unknown", "unknown"]:
        ch.update({"label": lab})
    ch.close()
    assert s.got == ["a", "b", "a", "unknown"]


def test_classify_posts_each_change_and_runs_the_command(tiny_export, tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    colours = [(210, 40, 40)] * 3 + [(40, 60, 200)] * 3 + [(210, 40, 40)] * 2
    for i, c in enumerate(colours):
        make_image(c, size=(40, 32), seed=500 + i).save(imgs / f"{i:03d}.jpg")
    r = _Receiver(fail=1)
    log = tmp_path / "labels.txt"
    try:
        out = run_cli("classify", tiny_export / "model_float.tflite", "--images", imgs, "--threshold", "0",
                      "--min-similarity", "-1", "--jsonl", tmp_path / "p.jsonl", "--post", r.url,
                      "--exec", f"sh -c 'echo $EDGEFLOWER_LABEL >> {log}'")
        assert out.returncode == 0, out.stderr
    finally:
        r.close()
    labels = [json.loads(ln)["label"] for ln in (tmp_path / "p.jsonl").read_text().splitlines()]
    changes = [lab for i, lab in enumerate(labels) if i == 0 or lab != labels[i - 1]]
    assert len(changes) >= 2  # red, blue, red
    assert [b["label"] for b in r.bodies] == changes
    assert log.read_text().split() == changes
    assert "webhook" in out.stderr and "sent" in out.stderr
