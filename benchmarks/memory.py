"""Does training's memory grow with the dataset? Peak RSS of `edgeflower train` on flower_photos and on a copy
8x larger.

    python -m benchmarks.memory [--data DIR] [--copies 8] [--model cnn] [--input-size 96] [--epochs 1]

Both datasets are folders of symbolic links to flower_photos under other class names, so that both take the same
path (a split of their own, made by train): the small one links each photo once, the large one --copies times
under other file names. Each training runs in its own process with an empty image cache (so it decodes), and its
peak resident set size is the kernel's (``ru_maxrss`` of that process, from ``os.wait4``): the page cache that
serves the on-disk image store is not part of it, a mapped page would be. The default model and size keep the
two runs at about 3 and 20 minutes on 2 cores; the images are what grows, whatever the model.
Writes benchmarks/results/memory.json. Target (the new-user issue): the large run's peak at most 1.3x the small's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import RESULTS, ROOT
from edgeflower.data.source import resolve_data_dir
from edgeflower.data.split import class_folders
from edgeflower.edge.preprocess import IMAGE_SUFFIXES
from edgeflower.util.env import environment
from edgeflower.util.files import write_json

TARGET = 1.3


def link_dataset(src: Path, dest: Path, copies: int) -> int:
    """``dest/<class>_x/<name>__k.<ext>`` -> ``src/<class>/<name>.<ext>`` for k < copies; the number of links."""
    shutil.rmtree(dest, ignore_errors=True)
    n = 0
    for cls in class_folders(src):
        out = dest / f"{cls}_x"
        out.mkdir(parents=True)
        for p in sorted((src / cls).iterdir()):
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            for k in range(copies):
                (out / f"{p.stem}__{k}{p.suffix}").symlink_to(p.resolve())
                n += 1
    return n


def peak_rss(cmd: list[str], env: dict, log: Path) -> tuple[int, float]:
    """(peak RSS in bytes, wall seconds) of one process, its output in ``log``."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}; see {log}")
    return usage.ru_maxrss * 1024, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="flower_photos (default: $EDGEFLOWER_DATA or the usual places)")
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--input-size", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--work", default="runs/memory", help="links, caches, runs and logs (git-ignored)")
    ap.add_argument("--results", default=str(RESULTS / "memory.json"))
    args = ap.parse_args()
    src = resolve_data_dir(args.data)
    work = (ROOT / args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    rows = {}
    for copies in (1, args.copies):
        name = f"{copies}x"
        data = work / f"data_{name}"
        n = link_dataset(src, data, copies)
        cache = work / f"cache_{name}"
        shutil.rmtree(cache, ignore_errors=True)
        env = dict(os.environ, EDGEFLOWER_CACHE=str(cache), EDGEFLOWER_PROGRESS_EVERY="60", TF_CPP_MIN_LOG_LEVEL="2")
        cmd = [sys.executable, "-m", "edgeflower", "train", "--data", str(data), "--model", args.model,
               "--input-size", str(args.input_size), "--epochs", str(args.epochs), "--no-augment",
               "--out", str(work / f"run_{name}"), "--force"]
        print(f"{name}: {n} photos: {' '.join(cmd[2:])}", flush=True)
        rss, wall = peak_rss(cmd, env, work / f"train_{name}.log")
        cached = sum(p.stat().st_size for p in (cache / "arrays").glob("*.npy"))
        rows[name] = {"photos": n, "peak_rss_bytes": rss, "wall_seconds": round(wall, 1),
                      "decoded_cache_bytes": cached, "command": " ".join(["edgeflower"] + cmd[3:])}
        print(f"{name}: peak RSS {rss / 2**20:.0f} MiB, decoded images {cached / 2**20:.0f} MiB on disk, "
              f"{wall:.0f} s", flush=True)
    small, large = rows["1x"], rows[f"{args.copies}x"]
    ratio = large["peak_rss_bytes"] / small["peak_rss_bytes"]
    print(f"peak RSS {args.copies}x / 1x = {ratio:.2f} (target at most {TARGET})")
    write_json(Path(args.results), {
        "command": "python -m benchmarks.memory " + " ".join(sys.argv[1:]),
        "model": args.model, "input_size": args.input_size, "epochs": args.epochs, "copies": args.copies,
        "runs": rows, "ratio": ratio, "target": TARGET, "met": ratio <= TARGET,
        "environment": environment(), "date": time.strftime("%Y-%m-%d"),
    })


if __name__ == "__main__":
    main()
