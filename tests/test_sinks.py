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

from edgeflower.edge.sinks import CommandSink, LabelChanges, Sink, WebhookSink
from edgeflower.errors import SourceError

from conftest import make_image, run_cli


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
    code = (f"import os; open({str(out)!r}, 'a').write(os.environ['EDGEFLOWER_LABEL'] + ' ' "
            "+ os.environ['EDGEFLOWER_SCORE'] + '\\n')")
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


# ---------------------------------------------------------------- MQTT against a real broker
def _mosquitto():
    import shutil

    for p in ("mosquitto", "/usr/sbin/mosquitto"):
        if shutil.which(p):
            return shutil.which(p)
    return None


class _Broker:
    def __init__(self, port: int, tmp_path):
        import subprocess

        conf = tmp_path / f"mosquitto-{port}.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.proc = subprocess.Popen([_mosquitto(), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class _Subscriber:
    def __init__(self, port: int, topics):
        import paho.mqtt.client as mqtt

        self.got = []
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub{port}{time.time()}")
        c.on_connect = lambda cl, *a, **k: [cl.subscribe(t, qos=1) for t in topics]
        c.on_message = lambda cl, ud, m: self.got.append((m.topic, m.payload.decode(), m.retain))
        c.reconnect_delay_set(1, 2)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.c = c

    def wait_for(self, pred, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.got):
                return True
            time.sleep(0.05)
        return False

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def broker(tmp_path):
    pytest.importorskip("paho.mqtt.client", reason="paho-mqtt not installed (pip install 'edgeflower[mqtt]')")
    if _mosquitto() is None:
        pytest.skip("mosquitto not installed (apt install mosquitto); .ci/run installs it")
    port = _free_port()
    b = _Broker(port, tmp_path)
    yield port, b
    b.stop()


def test_bad_mqtt_urls():
    from edgeflower.edge.sinks import parse_mqtt_url

    assert parse_mqtt_url("mqtt://u:p%40ss@hub:1884/garden/flowers") == {
        "host": "hub", "port": 1884, "topic": "garden/flowers", "tls": False, "username": "u", "password": "p@ss"}
    for bad in ("http://hub/x", "mqtt://hub", "mqtt://hub/a/#", "mqtt://:1883/x"):
        with pytest.raises(SourceError, match="--mqtt"):
            parse_mqtt_url(bad)


def test_mqtt_state_discovery_and_heartbeat(broker):
    from edgeflower.edge.sinks import MqttSink

    port, _ = broker
    sub = _Subscriber(port, ["garden/#", "homeassistant/#"])
    try:
        s = MqttSink(f"mqtt://127.0.0.1:{port}/garden", discovery=True, node_id="pi1")
        t = [0.0]
        ch = LabelChanges([s], heartbeat_every=10, clock=lambda: t[0])
        for lab in ("daisy", "daisy", "unknown"):
            ch.update({"label": lab, "score": 0.9})
        t[0] = 11  # a heartbeat is due at the next frame
        ch.update({"label": "unknown", "score": 0.8})
        assert sub.wait_for(lambda g: sum(tp == "garden" for tp, _, _ in g) == 2
                            and any(tp == "garden/status" for tp, _, _ in g)), sub.got
        states = [json.loads(p)["label"] for tp, p, _ in sub.got if tp == "garden"]
        assert states == ["daisy", "unknown"]
        beat = json.loads(next(p for tp, p, _ in sub.got if tp == "garden/status"))
        assert beat["kind"] == "heartbeat" and beat["frames"] == 4 and beat["label"] == "unknown"
        assert ("garden/availability", "online", False) in sub.got or \
            any(tp == "garden/availability" and p == "online" for tp, p, _ in sub.got)
        ch.close()
        assert s.stats()["sent"] == 3 and s.stats()["failed"] == 0
    finally:
        sub.close()
    # a subscriber that comes later gets the retained discovery config, the last state and "offline"
    late = _Subscriber(port, ["garden/#", "homeassistant/#"])
    try:
        assert late.wait_for(lambda g: len({tp for tp, _, r in g if r}) >= 3), late.got
        retained = {tp: p for tp, p, r in late.got if r}
        cfg = json.loads(retained["homeassistant/sensor/pi1/label/config"])
        assert cfg["state_topic"] == "garden" and cfg["value_template"] == "{{ value_json.label }}"
        assert cfg["availability_topic"] == "garden/availability" and cfg["unique_id"] == "pi1_label"
        assert json.loads(retained["garden"])["label"] == "unknown"
        assert retained["garden/availability"] == "offline"
    finally:
        late.close()


def test_mqtt_reconnects_after_the_broker_restarts(broker, tmp_path):
    from edgeflower.edge.sinks import MqttSink

    port, b = broker
    s = MqttSink(f"mqtt://127.0.0.1:{port}/cam", wait=1.0)
    s.put({"label": "a"})
    sub = _Subscriber(port, ["cam"])
    try:
        assert sub.wait_for(lambda g: any(json.loads(p)["label"] == "a" for _, p, _ in g))
        b.stop()  # the broker goes away mid-stream
        t = time.perf_counter()
        s.put({"label": "while-down"})
        assert time.perf_counter() - t < 0.1  # the camera loop is not held up
        time.sleep(1.5)
        b2 = _Broker(port, tmp_path)  # and comes back on the same port
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not sub.wait_for(
                    lambda g: any(json.loads(p)["label"] == "after" for _, p, _ in g), timeout=0.5):
                s.put({"label": "after"})
            assert any(json.loads(p)["label"] == "after" for _, p, _ in sub.got), sub.got
        finally:
            s.close()
            b2.stop()
            b.proc = b2.proc  # the fixture stops it again harmlessly
    finally:
        sub.close()
