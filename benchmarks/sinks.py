"""What the device sinks cost: frame-loop throughput with each sink on (MQTT, webhook, command) and off, with the
receiver up and down.

    python -m benchmarks.sinks [MODEL] [--frames 300] [--rounds 5]

The loop is edgeflower's own (`edgeflower.edge.loop.run`, as `edgeflower classify` runs it), fed from memory with
frames that alternate between two test photos of different classes, so the label changes on every frame: one
message per frame, the worst case for the sinks (a camera's label changes a few times a minute). Receivers are
local, each in its own process: Debian's `mosquitto` on a free port, a threaded HTTP server that answers 200, `true`
for the command sink;
"down" means a closed port (the MQTT client reconnects with back-off, the webhook's requests are refused). Rounds
are interleaved (each round runs every configuration once, in a rotated order) and each configuration's figure is
its median frames per second; the ratio is to "off" in the same round, median (and quartiles) over rounds. A
shared machine's wall clock is noisy, so the CPU time the process and its children spend per frame (every thread:
inference, loop, sinks) is reported beside it, as the cost the sinks add. Target: at most 5% slower, and nothing
blocks when the receiver is down. Writes benchmarks/results/sinks.json (one entry per
--change-every).
"""

from __future__ import annotations

import argparse
import functools
import json
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import RESULTS
from edgeflower.edge import Classifier
from edgeflower.edge.loop import run
from edgeflower.edge.observers import Changes
from edgeflower.edge.sinks import CommandSink, LabelChanges, MqttSink, WebhookSink
from edgeflower.edge.sources import Frame, Source
from edgeflower.util import timing
from edgeflower.util.env import environment
from edgeflower.util.files import write_json

DEFAULT_MODEL = "runs/bench/efficientnet_lite0_make_main/export/model_int8.tflite"
PHOTOS = ["daisy/100080576_f52e8ee070_n.jpg", "roses/10090824183_d02c613f10_m.jpg"]


class MemorySource(Source):
    """``n`` frames alternating between decoded images, as a camera would hand them over."""

    name = "memory"

    def __init__(self, images: list[np.ndarray], n: int, change_every: int = 1):
        self.images, self.n, self.every = images, n, max(1, change_every)

    def frames(self):
        for i in range(self.n):
            yield Frame(i, self.images[(i // self.every) % len(self.images)], time.time(), time.perf_counter_ns(),
                        f"frame{i}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, tmp: Path):
        exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if exe is None:
            sys.exit("mosquitto is not installed (apt install mosquitto)")
        self.port = free_port()
        conf = tmp / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def close(self):
        self.proc.terminate()
        self.proc.wait(5)


HTTP_SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


class Http:
    """A local webhook receiver in its own process (as a real one would be), answering 200."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", HTTP_SERVER], stdout=subprocess.PIPE, text=True)
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}/hook"

    def close(self):
        self.proc.terminate()
        self.proc.wait(5)


def configs(broker: Broker, web: Http) -> dict:
    closed = free_port()
    return {
        "off": lambda: [],
        "mqtt": lambda: [MqttSink(f"mqtt://127.0.0.1:{broker.port}/edgeflower/bench")],
        "mqtt, broker down": lambda: [MqttSink(f"mqtt://127.0.0.1:{closed}/edgeflower/bench", wait=0.0)],
        "webhook": lambda: [WebhookSink(web.url)],
        "webhook, server down": lambda: [WebhookSink(f"http://127.0.0.1:{closed}/hook", timeout=1.0)],
        "command (true)": lambda: [CommandSink("true")],
    }


def one(clf: Classifier, images: list[np.ndarray], n: int, make, change_every: int = 1) -> dict:
    sinks = make()
    changes = LabelChanges(sinks, heartbeat_every=0) if sinks else None
    t, cpu = time.perf_counter(), _cpu_s()
    s = run(clf, MemorySource(images, n, change_every), [Changes(changes)] if changes else [])
    loop_s = time.perf_counter() - t
    t = time.perf_counter()
    stats = changes.close() if changes else []
    # CPU time of this process (every thread: inference, loop, sinks) and of its finished children (the command
    # sink's processes), per frame: what the sinks cost, without the machine's wall-clock noise
    cpu_ms = (_cpu_s() - cpu) * 1000 / max(1, s.frames)
    return {"fps": s.frames / loop_s, "frames": s.frames, "cpu_ms_per_frame": cpu_ms,
            "close_s": time.perf_counter() - t, "sinks": stats}


def _cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--change-every", type=int, default=1,
                    help="frames between label changes (1: every frame, the worst case; 30: once a second at 30 FPS)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--results", default=str(RESULTS / "sinks.json"))
    args = ap.parse_args()
    from edgeflower.data.source import resolve_data_dir
    from edgeflower.edge.preprocess import open_image

    root = resolve_data_dir(args.data, download=False)
    images = [np.asarray(open_image(root / p).resize((320, 240))) for p in PHOTOS]
    clf = Classifier(args.model, threads=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        broker, web = Broker(Path(tmp)), Http()
        try:
            cfgs = configs(broker, web)
            one(clf, images, 30, cfgs["off"])  # warm-up
            names = list(cfgs)

            def say(r, runs):
                print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {runs[k][-1]['fps']:.1f}" for k in names),
                      flush=True)

            # rotated rounds (ABC, BCA, CAB, ...); each figure is a median over rounds, each ratio to "off" the
            # median of the per-round ratios
            runs = timing.interleaved({k: functools.partial(one, clf, images, args.frames, cfgs[k], args.change_every)
                                       for k in names}, args.rounds, how="rotate", after_round=say)
        finally:
            broker.close()
            web.close()
    res = {"command": "python -m benchmarks.sinks " + " ".join(sys.argv[1:]), "model": args.model,
           "frames_per_run": args.frames, "rounds": args.rounds, "threads": args.threads,
           "change_every": args.change_every, "target_max_slowdown": 0.05,
           "configs": {}}
    for name, rs in runs.items():
        ratios = timing.round_ratios([x["fps"] for x in rs], [o["fps"] for o in runs["off"]])
        cpu = timing.round_ratios([x["cpu_ms_per_frame"] for x in rs], [o["cpu_ms_per_frame"] for o in runs["off"]])
        res["configs"][name] = {
            "median_fps": statistics.median(x["fps"] for x in rs),
            "median_ratio_to_off": statistics.median(ratios),
            "ratio_quartiles": timing.quartiles(ratios),
            "slowdown": 1 - statistics.median(ratios),
            "median_cpu_ms_per_frame": statistics.median(x["cpu_ms_per_frame"] for x in rs),
            "median_cpu_ratio_to_off": statistics.median(cpu),
            "max_close_s": max(x["close_s"] for x in rs),
            "sink_stats_last_round": rs[-1]["sinks"],
        }
    res["met"] = all(c["slowdown"] <= 0.05 for c in res["configs"].values())
    res["environment"] = environment()
    res["date"] = time.strftime("%Y-%m-%d")
    # one file, one entry per label-change rate (a run with another --change-every keeps the others)
    path = Path(args.results)
    old = json.loads(path.read_text()) if path.exists() else {}
    scenarios = old.get("scenarios", {})
    scenarios[str(args.change_every)] = res
    write_json(path, {"scenarios": dict(sorted(scenarios.items(), key=lambda kv: int(kv[0])))})
    for name, c in res["configs"].items():
        print(f"{name:<22} {c['median_fps']:7.1f} FPS  {c['median_ratio_to_off']:.3f}x off  "
              f"CPU {c['median_cpu_ms_per_frame']:.2f} ms/frame ({c['median_cpu_ratio_to_off']:.3f}x)  "
              f"close {c['max_close_s']:.2f} s")


if __name__ == "__main__":
    main()
