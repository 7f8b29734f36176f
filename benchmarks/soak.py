"""Soak: does the device stay bounded over long runs? RSS, threads, file descriptors and FPS sampled over time.

    python -m benchmarks.soak loop [--frames 1000000]                       # the frame loop, a stub classifier
    python -m benchmarks.soak classify MODEL [--frames 100000] [--video V]  # `edgeflower classify`, a real model
    python -m benchmarks.soak stills [--side 8000]                           # peak memory of the largest still

``loop`` runs ``edgeflower.edge.loop.run`` in this process with a classifier that answers at once (so the loop's own
cost and memory are what is measured), in three configurations: bare; with the live page, a saver and a command
sink; with the live page alone; and with it while 1,000 idle connections and a byte-a-second client hold on to it
(the loop's FPS against the page-alone run's, in the same process). ``classify`` runs the real command over a
looped 320x240 video with
``--serve --save --jsonl --exec``, and samples the process from /proc. Each writes a JSON file: the samples, RSS
growth per million frames (least squares over the samples after the first tenth), FPS spread, and the environment.
Linux only (/proc). A million stub frames take about a minute per configuration; 100,000 real frames with make
main's int8 Lite0 about half an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks import RESULTS
from edgeflower.edge.classifier import Prediction
from edgeflower.edge.loop import run
from edgeflower.edge.observers import Changes, JsonLines, LivePage, Saver
from edgeflower.edge.sources import Frame, Source
from edgeflower.util.files import write_json


def proc_stats(pid: int | str = "self") -> dict:
    """RSS (MB), threads and open file descriptors of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "threads": int(fields["Threads"]),
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def growth_per_million(samples: list[dict]) -> float:
    """MB of RSS per million frames: the slope of RSS against frames, after the first tenth (warm-up) and before
    the last frame (samples taken while the process shuts down count no frames)."""
    last = max(s["frames"] for s in samples)
    pts = [(s["frames"], s["rss_mb"]) for s in samples if last / 10 <= s["frames"] < last]
    if len(pts) < 2:
        return float("nan")
    x, y = np.array(pts, float).T
    return float(np.polyfit(x, y, 1)[0] * 1e6)


def summarise(samples: list[dict]) -> dict:
    fps = [s["fps"] for s in samples[1:] if s.get("fps")]
    return {"frames": samples[-1]["frames"], "rss_mb_first": round(samples[0]["rss_mb"], 1),
            "rss_mb_last": round(samples[-1]["rss_mb"], 1),
            "rss_growth_mb_per_million_frames": round(growth_per_million(samples), 3),
            "threads_max": max(s["threads"] for s in samples), "fds_max": max(s["fds"] for s in samples),
            "fps_p10_p50_p90": ([round(float(q), 1) for q in np.percentile(fps, [10, 50, 90])] if fps else None)}


def environment() -> dict:
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "platform": platform.platform(), "fd_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}


# ---------------------------------------------------------------- the loop, with a stub classifier
class StubClassifier:
    """Answers at once; the label changes every ``change_every`` frames so that the sinks and the saver work."""

    min_similarity, threshold = 0.5, 0.0

    def __init__(self, change_every: int = 5000):
        self.n, self.every = 0, change_every
        self.p = np.array([0.6, 0.3, 0.1], np.float32)

    def classify(self, image, smoother=None) -> Prediction:
        self.n += 1
        label = "a" if (self.n // self.every) % 2 == 0 else "unknown"
        return Prediction(label, 0.6, [("a", 0.6), ("b", 0.3), ("c", 0.1)], self.p, 0, 0.2, 0.3, 0.9)


class SampledFrames(Source):
    """``n`` generated 320x240 frames; every ``every`` frames, a sample of this process's RSS, threads, fds, FPS."""

    def __init__(self, n: int, every: int, samples: list):
        self.n, self.every, self.samples = n, every, samples
        self.img = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)

    def frames(self):
        t_last, f_last = time.perf_counter(), 0
        for i in range(self.n):
            if i % self.every == 0:
                now = time.perf_counter()
                fps = (i - f_last) / (now - t_last) if i else None
                self.samples.append({"frames": i, "t": round(now, 3), "fps": fps, **proc_stats()})
                t_last, f_last = now, i
            yield Frame(i, self.img, time.time(), time.perf_counter_ns(), "gen")


HOLD = """
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n)]
slow = socket.create_connection(("127.0.0.1", port), timeout=5)
print(len(idle), flush=True)
for b in b"GET / HTTP/1.1\\r\\n" * 1000:
    try:
        slow.send(bytes([b])); time.sleep(1)
    except OSError:
        slow = socket.create_connection(("127.0.0.1", port), timeout=5)
"""


def soak_loop(frames: int, every: int, config: str) -> dict:
    samples: list[dict] = []
    observers, cleanup = [JsonLines(open(os.devnull, "w"), own=True)], []
    if config.startswith("serve"):
        from edgeflower.edge.serve import LiveState, start_server

        state = LiveState()
        server = start_server("127.0.0.1:0", state)
        observers.append(LivePage(state, None, 0.0))
        cleanup.append(server.shutdown)
    if config == "serve+save+exec":
        from edgeflower.edge.saver import FrameSaver
        from edgeflower.edge.sinks import CommandSink, LabelChanges

        tmp = tempfile.TemporaryDirectory()
        cleanup.append(tmp.cleanup)
        saver = FrameSaver(tmp.name, when="unknown", min_interval=0.5, max_mb=20)
        changes = LabelChanges([CommandSink("true")])
        observers += [Saver(saver, tmp.name), Changes(changes)]
        cleanup[:0] = [lambda: saver.close(10), lambda: changes.close()]
    if config == "serve+idle-connections":
        n = min(1000, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 50)
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(server.server_address[1]), str(n)],
                                  stdout=subprocess.PIPE, text=True)
        extra_info = {"idle_connections": int(holder.stdout.readline())}
        cleanup.insert(0, holder.kill)
    else:
        extra_info = {}
    t = time.perf_counter()
    s = run(StubClassifier(), SampledFrames(frames, every, samples), observers)
    seconds = time.perf_counter() - t
    samples.append({"frames": s.frames, "t": round(time.perf_counter(), 3), "fps": None, **proc_stats()})
    for c in cleanup:
        c()
    return {"config": config, "seconds": round(seconds, 1), "fps": round(s.frames / seconds, 1), **extra_info,
            **summarise(samples), "samples": samples}


# ---------------------------------------------------------------- classify, a real model
def make_video(path: Path, photos: list[Path], frames: int = 300) -> Path:
    """A 320x240 MJPEG video of still photos, 30 frames each: what a camera pointed at a scene gives."""
    import cv2
    from PIL import Image

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
    for i in range(frames):
        img = Image.open(photos[(i // 30) % len(photos)]).convert("RGB").resize((320, 240))
        w.write(np.asarray(img)[:, :, ::-1])
    w.release()
    return path


def soak_classify(model: str, frames: int, video: str | None, every_s: float) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    if video is None:
        data = Path(os.environ.get("EDGEFLOWER_DATA", "../shared/data/flower_photos"))
        photos = sorted(data.glob("*/*.jpg"))[::300][:10] or sys.exit("no photos: set EDGEFLOWER_DATA")
        video = str(make_video(tmp / "scene.avi", photos))
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    cmd = [sys.executable, "-m", "edgeflower", "classify", model, "--video", video, "--loop", "--max-frames",
           str(frames), "--serve", f"127.0.0.1:{port}", "--save", str(tmp / "saved"), "--save-max-mb", "50",
           "--jsonl", str(tmp / "out.jsonl"), "--exec", "true", "--quiet"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    samples: list[dict] = []
    jsonl = tmp / "out.jsonl"
    stop = threading.Event()

    def watch():  # the live page's stream, watched the whole time
        import urllib.request

        while not stop.is_set():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/stream.mjpg", timeout=5) as r:
                    while not stop.is_set():
                        r.read(65536)
            except OSError:
                time.sleep(1)

    threading.Thread(target=watch, daemon=True).start()
    last_n, last_t = 0, time.perf_counter()
    while proc.poll() is None:
        time.sleep(every_s)
        try:
            st = proc_stats(proc.pid)
            with open(jsonl, "rb") as f:
                n = sum(1 for _ in f)
        except (FileNotFoundError, ProcessLookupError, KeyError):
            continue
        now = time.perf_counter()
        samples.append({"frames": n, "t": round(now, 3), "fps": (n - last_n) / (now - last_t) if n > last_n else None,
                        **st})
        last_n, last_t = n, now
        print(f"{n} frames, RSS {st['rss_mb']:.1f} MB, {st['threads']} threads, {st['fds']} fds", file=sys.stderr)
    stop.set()
    err = proc.stderr.read()
    return {"command": " ".join(cmd[1:]), "returncode": proc.returncode, "summary_line": err.strip().splitlines()[-1],
            **summarise(samples), "samples": samples}


# ---------------------------------------------------------------- large stills
# VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child would report its parent's peak
PEAK = """
import sys, time
from edgeflower.edge.preprocess import preprocess
def hwm():
    return next(int(ln.split()[1]) for ln in open("/proc/self/status") if ln.startswith("VmHWM")) / 1024
base = hwm()
if len(sys.argv) > 1:
    t = time.perf_counter()
    preprocess(sys.argv[1], 224)
    print(time.perf_counter() - t, hwm())
else:
    print(base)
"""


def soak_stills(side: int) -> dict:
    """Peak RSS and time to preprocess one side x side PNG and JPEG to 224 x 224, each in a fresh process."""
    from PIL import Image

    tmp = Path(tempfile.mkdtemp(prefix="stills-"))
    small = np.random.default_rng(0).integers(0, 255, (side // 16, side // 16, 3), dtype=np.uint8)
    big = Image.fromarray(np.kron(small, np.ones((16, 16, 1), np.uint8)))
    paths = {}
    for fmt, kw in (("PNG", {"compress_level": 1}), ("JPEG", {"quality": 85})):
        paths[fmt] = tmp / f"big.{fmt.lower()}"
        big.save(paths[fmt], format=fmt, **kw)
    del big
    rows = []
    base = subprocess.run([sys.executable, "-c", PEAK], capture_output=True, text=True, check=True)
    for fmt, path in paths.items():
        out = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True, check=True)
        seconds, peak = (float(v) for v in out.stdout.split())
        rows.append({"format": fmt, "pixels": f"{side}x{side}", "seconds": round(seconds, 2),
                     "peak_rss_mb": round(peak)})
        path.unlink()
    return {"import_rss_mb": round(float(base.stdout)), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    lp = sub.add_parser("loop", help="the frame loop with a stub classifier")
    lp.add_argument("--frames", type=int, default=1_000_000)
    lp.add_argument("--every", type=int, default=20_000, help="frames between samples")
    lp.add_argument("--configs", default="bare,serve,serve+save+exec,serve+idle-connections")
    lp.add_argument("--results", default=str(RESULTS / "soak_loop.json"))
    cp = sub.add_parser("classify", help="`edgeflower classify` with a real model")
    cp.add_argument("model")
    cp.add_argument("--frames", type=int, default=100_000)
    cp.add_argument("--video", default=None, help="default: a 300-frame video of ten flower_photos, looped")
    cp.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    cp.add_argument("--results", default=str(RESULTS / "soak_classify.json"))
    sp = sub.add_parser("stills", help="peak memory to preprocess the largest still")
    sp.add_argument("--side", type=int, default=8000)
    sp.add_argument("--results", default=str(RESULTS / "soak_stills.json"))
    a = ap.parse_args()
    if a.what == "stills":
        out = {"suite": "soak", "what": "stills", "command": " ".join(sys.argv), "environment": environment(),
               **soak_stills(a.side)}
        for r in out["rows"]:
            print(f"{r['format']} {r['pixels']}: {r['seconds']} s, peak RSS {r['peak_rss_mb']} MB "
                  f"(edgeflower imported: {out['import_rss_mb']} MB)")
    elif a.what == "loop":
        runs = [soak_loop(a.frames, a.every, c) for c in a.configs.split(",")]
        for r in runs:
            print(f"{r['config']:>24}: {r['frames']} frames, {r['fps']} FPS, RSS {r['rss_mb_first']} -> "
                  f"{r['rss_mb_last']} MB, {r['rss_growth_mb_per_million_frames']} MB per million frames, "
                  f"threads <= {r['threads_max']}, fds <= {r['fds_max']}")
        bare = next((r for r in runs if r["config"] == "serve"), None)
        idle = next((r for r in runs if r["config"] == "serve+idle-connections"), None)
        out = {"suite": "soak", "what": "loop", "command": " ".join(sys.argv), "environment": environment(),
               "fps_ratio_idle_connections_to_serve": (round(idle["fps"] / bare["fps"], 3) if bare and idle
                                                      else None), "runs": runs}
    else:
        out = {"suite": "soak", "what": "classify", "command": " ".join(sys.argv), "environment": environment(),
               "runs": [soak_classify(a.model, a.frames, a.video, a.every)]}
        r = out["runs"][0]
        print(f"{r['frames']} frames, RSS {r['rss_mb_first']} -> {r['rss_mb_last']} MB, "
              f"{r['rss_growth_mb_per_million_frames']} MB per million frames; {r['summary_line']}")
    write_json(a.results, out)
    print(f"written {a.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
