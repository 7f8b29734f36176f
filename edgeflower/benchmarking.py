"""`edgeflower bench`: latency, throughput, memory, size and accuracy of exported artifacts.

Runs with the edge install only (never imports TensorFlow). Each (artifact, thread count) is measured in a
fresh worker process, so peak memory is the artifact's own and a crashing artifact cannot stop the others.
Latency of the interpreter call is timed with perf_counter_ns around ``invoke()`` alone, after a warm-up.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from edgeflower.errors import BenchError, EdgeflowerError
from edgeflower.util.env import environment
from edgeflower.util.files import sha256_file
from edgeflower.util.progress import progress
from edgeflower.util.stats import percentiles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchConfig:
    artifacts: tuple[str, ...]
    threads: tuple[int, ...] = (1, 2, 4)
    runs: int = 200
    warmup: int = 20
    e2e_images: int = 50
    data: str | None = None
    accuracy: bool = True
    backend: str | None = None
    split: str | None = None  # split manifest (default: the packaged flower_photos one)
    limit_per_class: int | None = None  # tests only


def _rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; falls back to the peak)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except (OSError, ValueError):
        return _peak_mb()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _stats(ms: list[float]) -> dict:
    p = percentiles(ms, (50, 90, 99))
    return {**{k: round(v, 4) for k, v in p.items()}, "mean": round(float(np.mean(ms)), 4),
            "min": round(float(np.min(ms)), 4), "n": len(ms)}


def _test_images(data: str | None, split: str | None, limit: int | None, verify: bool = True):
    """The frozen test split: (data root, manifest, items); raises an EdgeflowerError saying why it is unavailable."""
    from edgeflower.data.source import resolve_data_dir
    from edgeflower.data.split import load_manifest, split_items, verify_files

    root = resolve_data_dir(data, download=False)
    manifest = load_manifest(split)
    items = split_items(manifest, "test", limit)
    if verify:
        verify_files(root, items)
    return root, manifest, items


def check_test_images(cfg: "BenchConfig") -> str | None:
    """Verify the test images once for the whole run: None when usable, else why not (for every worker's note)."""
    try:
        _test_images(cfg.data, cfg.split, cfg.limit_per_class)
    except EdgeflowerError as exc:
        return str(exc)
    return None


def measure(path: str, threads: int, cfg: BenchConfig, with_accuracy: bool, data_note: str | None = None) -> dict:
    """One artifact at one thread count, in this process (the worker).

    The parent has already verified the test images (``check_test_images``); ``data_note`` says why they are
    unavailable, if they are.
    """
    from edgeflower.edge.classifier import Classifier, quantize

    rss_before = _rss_mb()
    t = time.perf_counter_ns()
    clf = Classifier(path, backend=cfg.backend, threads=threads, threshold=0.0)
    load_ms = (time.perf_counter_ns() - t) / 1e6
    b = clf.backend
    res: dict = {"artifact": path, "name": Path(path).name, "threads": threads, "backend": b.name,
                 "backend_version": b.version, "load_ms": round(load_ms, 3), "size_bytes": os.path.getsize(path),
                 "input_dtype": str(b.input.dtype), "has_metadata": clf.has_metadata,
                 "format": clf.metadata.get("format"), "quantized": clf.metadata.get("quantized",
                                                                                    b.input.quantized)}
    items = root = manifest = None
    if data_note is None:
        root, manifest, items = _test_images(cfg.data, cfg.split, cfg.limit_per_class, verify=False)
    # a real image for the latency loop when we have one, else a deterministic synthetic one
    if items:
        sample = clf.preprocess(root / items[0][0])
    else:
        sample = np.random.default_rng(0).integers(0, 256, (*clf.input_size, 3), dtype=np.uint8)
    x = quantize(sample[None], b.input)
    b.set_input(x)
    invoke, clock = b.invoke, time.perf_counter_ns  # bound once: the loop adds ~1 us to a ms-scale call
    for _ in range(cfg.warmup):
        invoke()
    lat = [0.0] * cfg.runs
    for i in range(cfg.runs):
        t = clock()
        invoke()
        lat[i] = (clock() - t) / 1e6
    res["latency_ms"] = _stats(lat)
    # end to end on real files: decode + preprocess + quantize + invoke + dequantize + top-k
    if items:
        files = [root / rel for rel, _, _ in items[: cfg.e2e_images]]
        e2e = []
        t_all = time.perf_counter_ns()
        for f in files:
            t = time.perf_counter_ns()
            clf.classify(f)
            e2e.append((time.perf_counter_ns() - t) / 1e6)
        total_s = (time.perf_counter_ns() - t_all) / 1e9
        res["e2e_ms"] = _stats(e2e)
        res["throughput_ips"] = round(len(files) / total_s, 2)
        res["e2e_source"] = "frozen test images (JPEG files)"
    else:
        res["e2e_ms"] = None
        res["throughput_ips"] = round(1000.0 / res["latency_ms"]["mean"], 2)
        res["e2e_source"] = f"unavailable: {data_note}"
    if with_accuracy and cfg.accuracy:
        if not clf.has_metadata:
            res["accuracy"] = None
            res["accuracy_note"] = "unavailable: the artifact has no edgeflower metadata (labels unknown)"
        elif not items:
            res["accuracy"] = None
            res["accuracy_note"] = f"unavailable: {data_note}"
        elif [c for c in clf.labels if c != clf.background] != list(manifest.classes):
            res["accuracy"] = None
            res["accuracy_note"] = f"unavailable: the artifact's labels {clf.labels} are not the split's classes"
        else:
            y = np.array([lab for _, lab, _ in items])
            pred = np.array([int(np.argmax(clf.classify(root / rel).probs))
                             for rel, _, _ in progress(items, total=len(items), desc=f"{Path(path).name} accuracy")])
            res["accuracy"] = float((pred == y).mean())  # a background class (the last label) counts as wrong
            res["per_class_accuracy"] = {c: float((pred[y == i] == i).mean()) for i, c in enumerate(manifest.classes)
                                         if (y == i).any()}
            res["test_images"] = len(items)
            res["predictions"] = {rel: clf.labels[int(p)] for (rel, _, _), p in zip(items, pred)}
    res["rss_before_load_mb"] = round(rss_before, 1)
    res["peak_rss_mb"] = round(_peak_mb(), 1)
    res["source_model_sha256"] = clf.metadata.get("source_model_sha256")
    return res


def run_isolated(path: str, threads: int, cfg: BenchConfig, with_accuracy: bool, data_note: str | None,
                 timeout: float = 600) -> dict:
    """Measure one (artifact, threads) pair in a fresh Python process: its own peak RSS, and a crash or hang of one
    artifact cannot take the others down. Returns the :func:`measure` dict, or one with an ``error`` key."""
    payload = json.dumps({"path": path, "threads": threads, "cfg": asdict(cfg), "acc": with_accuracy,
                          "data_note": data_note})
    proc = subprocess.Popen([sys.executable, "-m", "edgeflower.benchmarking", payload], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    out_parts: list[str] = []
    prefix = f"{Path(path).name} "

    def relay() -> None:  # the worker's progress lines reach the user as they come; the rest is kept for errors
        for ln in proc.stderr:
            if ln.startswith(prefix):
                sys.stderr.write(ln)
                sys.stderr.flush()
            err.append(ln)

    readers = [threading.Thread(target=relay, daemon=True),
               threading.Thread(target=lambda: out_parts.append(proc.stdout.read()), daemon=True)]
    for r in readers:
        r.start()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return {"artifact": path, "name": Path(path).name, "threads": threads, "error": f"timed out after {timeout} s"}
    for r in readers:
        r.join(timeout=10)
    out = "".join(out_parts)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = ("".join(err).strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return {"artifact": path, "name": Path(path).name, "threads": threads,
                "error": f"worker failed (exit {proc.returncode}): {tail}"}
    return json.loads(lines[-1])


def with_run_split(cfg: BenchConfig, say=lambda m: None) -> BenchConfig:
    """Without --data and --split, the test photos of the run the artifacts were exported from: the dataset folder
    and split its metadata names (a run on your own photos has its own split.json), when they exist here and all
    the artifacts agree; else the defaults (the frozen flower_photos split)."""
    if cfg.data is not None or cfg.split is not None:
        return cfg
    from edgeflower.edge.metadata import read_metadata

    found = set()
    for a in cfg.artifacts:
        meta = (read_metadata(a) or {}) if Path(a).is_file() else {}
        found.add((meta.get("data_dir"), meta.get("split")))
    if len(found) != 1:
        return cfg
    data, split = found.pop()
    if not (data and Path(data).is_dir()) or (split and not Path(split).is_file()):
        return cfg
    # split None: the run used the frozen flower_photos split, of the dataset folder it names
    which = f"the run's split {split}" if split else "the frozen split"
    say(f"test photos: {which} of {data}")
    return replace(cfg, data=data, split=split)


def bench(cfg: BenchConfig, progress=None) -> dict:
    say = progress or (lambda m: log.info(m))
    if not cfg.artifacts:
        raise BenchError("no artifacts given: edgeflower bench ARTIFACT... (e.g. runs/x/export/*.tflite)")
    bad = [t for t in cfg.threads if t < 1]
    if bad:
        raise BenchError(f"--threads values must be at least 1, got {bad}; e.g. --threads 1,2,4")
    if cfg.runs < 1 or cfg.warmup < 0:
        raise BenchError(f"--runs must be >= 1 and --warmup >= 0 (got {cfg.runs}, {cfg.warmup})")
    cfg = with_run_split(cfg, say)
    data_note = check_test_images(cfg)
    results = []
    for path in cfg.artifacts:
        p = Path(path)
        if not p.is_file():
            results.append({"artifact": path, "name": p.name, "error": f"not found: {path}"})
            say(f"skip {path}: not found")
            continue
        for i, th in enumerate(cfg.threads):
            say(f"bench {p.name} threads={th}")
            r = run_isolated(str(p), th, cfg, with_accuracy=(i == 0), data_note=data_note)
            if "error" in r:  # an artifact that cannot load fails the same way at every thread count: said once
                r["error"] = _without_name(r["error"], p.name)
                results.append(r)
                break
            r["sha256"] = sha256_file(p)
            results.append(r)
    _relative_accuracy(results)
    _speedups(results)
    _confirm_slow(results, cfg.backend, say)
    return {"environment": environment(), "config": asdict(cfg), "results": results,
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def _without_name(message: str, name: str) -> str:
    """The error without a leading ``NAME: `` (the report and the CLI name the artifact themselves)."""
    return message[len(name) + 2:] if message.startswith(f"{name}: ") else message


MIN_INT8_SPEEDUP = 1.3  # an int8 artifact slower than this against its float sibling buys size, not speed


def _floats(results: list[dict]) -> list[dict]:
    """The float32 artifacts (float16 weights are not a reference: they are measured against one)."""
    return [r for r in results if r.get("format") in ("tflite_float", "onnx_float")
            or (r.get("format") is None and not r.get("quantized"))]


def _speedups(results: list[dict]) -> None:
    """Each int8 artifact's speed-up against its float sibling of the same run (same source model, runtime and
    thread count): p50 of the float over p50 of the int8, and a warning under MIN_INT8_SPEEDUP."""
    ok = [r for r in results if "error" not in r and r.get("latency_ms")]
    floats = _floats(ok)
    for r in ok:
        if not r.get("quantized") or r.get("format") == "tflite_fp16" or r in floats:
            continue
        sib = [f for f in floats if f.get("threads") == r.get("threads") and f.get("backend") == r.get("backend")
               and f.get("source_model_sha256") == r.get("source_model_sha256")]
        if not sib:
            continue
        speedup = sib[0]["latency_ms"]["p50"] / r["latency_ms"]["p50"]
        r["float_sibling"], r["speedup_vs_float"] = sib[0]["name"], round(speedup, 3)
        r["float_sibling_artifact"] = sib[0]["artifact"]
        warning = speed_warning(r["name"], sib[0]["name"], speedup, r["threads"])
        if warning:
            r["speed_warning"] = warning


def _confirm_slow(results: list[dict], backend: str | None, say: Callable[[str], None]) -> None:
    """A warning from two separate measurements (other processes, other moments of a shared machine) is checked side
    by side before it is given: the int8 artifact and its float sibling timed in alternating rounds (``speedup``),
    as export times them. That figure replaces the other; the warning stays only if it says so too."""
    for r in results:
        if not r.get("speed_warning"):
            continue
        say(f"checking {r['name']} against {r['float_sibling']} side by side (threads={r['threads']})")
        sp = speedup(r["artifact"], r["float_sibling_artifact"], threads=r["threads"], backend=backend)
        r["speedup_vs_float"], r["speedup_timing"] = sp["speedup_vs_float"], "side by side"
        warning = speed_warning(r["name"], r["float_sibling"], sp["speedup_vs_float"], r["threads"])
        if warning:
            r["speed_warning"] = warning
        else:
            del r["speed_warning"]


def speed_warning(name: str, sibling: str, speedup: float, threads: int) -> str | None:
    """The warning for an int8 artifact under MIN_INT8_SPEEDUP against its float sibling (None: fast enough)."""
    if speedup >= MIN_INT8_SPEEDUP:
        return None
    return (f"{name} is {speedup:.2f}x as fast as {sibling} at {threads} thread(s), under {MIN_INT8_SPEEDUP:g}x: "
            "on this machine int8 buys size, not speed")


def speedup(int8: str | Path, reference: str | Path, threads: int = 1, rounds: int = 9, invokes: int = 20,
            backend: str | None = None) -> dict:
    """How much faster ``int8`` runs than its float ``reference`` on this machine: both loaded side by side, timed
    in alternating rounds of ``invokes`` calls each (edgeflower.util.timing), the median of the per-round ratios."""
    import statistics

    from edgeflower.edge.classifier import Classifier, quantize
    from edgeflower.util import timing

    def timer(path):
        clf = Classifier(path, backend=backend, threads=threads, threshold=0.0)
        b = clf.backend
        b.set_input(quantize(np.full((1, *clf.input_size, 3), 128, np.uint8), b.input))
        for _ in range(5):
            b.invoke()

        def per_call_ms() -> float:
            t = time.perf_counter_ns()
            for _ in range(invokes):
                b.invoke()
            return (time.perf_counter_ns() - t) / 1e6 / invokes
        return per_call_ms

    v = timing.interleaved({"int8": timer(int8), "float": timer(reference)}, rounds)
    ratio = timing.median_ratio(v["float"], v["int8"])
    return {"float_sibling": Path(reference).name, "threads": threads, "p50_ms": statistics.median(v["int8"]),
            "float_p50_ms": statistics.median(v["float"]), "speedup_vs_float": round(ratio, 3), "rounds": rounds,
            "invokes_per_round": invokes}


def _relative_accuracy(results: list[dict]) -> None:
    """Drop of each artifact against the float artifact of the same source model (same runtime preferred)."""
    acc = [r for r in results if r.get("accuracy") is not None]
    floats = _floats(acc)
    for r in acc:
        same = [f for f in floats if f.get("source_model_sha256") == r.get("source_model_sha256")]
        pref = [f for f in same if f.get("backend") == r.get("backend")] or same
        if pref:
            r["float_reference"] = pref[0]["name"]
            r["drop_pts"] = round((pref[0]["accuracy"] - r["accuracy"]) * 100, 3)
    # carry accuracy to the other thread counts of the same artifact
    by_path = {r["artifact"]: r for r in acc}
    for r in results:
        a = by_path.get(r.get("artifact"))
        if a is not None and r is not a and "error" not in r:
            for k in ("accuracy", "drop_pts", "float_reference"):
                if k in a:
                    r[k] = a[k]


def render(report: dict) -> str:
    lines = ["| artifact | backend | thr | p50 ms | x float | p90 ms | p99 ms | e2e p50 ms | img/s | load ms | "
             "peak MB | size KiB | accuracy | drop pts |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['name']} | - | {r.get('threads', '-')} | error: {r['error']} ||||||||||| ")
            continue
        lat, e2e = r["latency_ms"], r.get("e2e_ms")
        acc = f"{r['accuracy'] * 100:.2f}%" if r.get("accuracy") is not None else "n/a"
        drop = f"{r['drop_pts']:+.2f}" if r.get("drop_pts") is not None else "-"
        speed = f"{r['speedup_vs_float']:.2f}x" if r.get("speedup_vs_float") else "-"
        lines.append(f"| {r['name']} | {r['backend']} | {r['threads']} | {lat['p50']:.2f} | {speed} | "
                     f"{lat['p90']:.2f} | {lat['p99']:.2f} | {e2e['p50'] if e2e else float('nan'):.2f} | "
                     f"{r['throughput_ips']:.0f} | "
                     f"{r['load_ms']:.0f} | {r['peak_rss_mb']:.0f} | {r['size_bytes'] / 1024:,.0f} | {acc} | {drop} |")
    notes = sorted({r["accuracy_note"] for r in report["results"] if r.get("accuracy_note")})
    warnings = [r["speed_warning"] for r in report["results"] if r.get("speed_warning")]
    return "\n".join(lines + [f"note: {n}" for n in notes] + [f"warning: {w}" for w in warnings]) + "\n"


def save(report: dict, json_out: str | os.PathLike | None, plot_out: str | os.PathLike | None,
         say: Callable[[str], None] = log.info) -> None:
    """Write the report as JSON and its plot (by default beside the JSON)."""
    from edgeflower.util.files import write_json

    if json_out:
        write_json(json_out, report)
        say(f"results written to {json_out}")
    png = plot_out or (str(Path(json_out).with_suffix(".png")) if json_out else None)
    if png:
        say(f"plot written to {png}" if plot(report, png) else
            "no plot (needs matplotlib and at least one artifact with accuracy)")


def plot(report: dict, path: str | Path) -> bool:
    """Latency against accuracy, one point per artifact and thread count. False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from edgeflower.util.files import atomic_path

    pts = [r for r in report["results"] if "error" not in r and r.get("accuracy") is not None]
    if not pts:
        return False
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    names = list(dict.fromkeys(r["name"] for r in pts))
    markers = {t: m for t, m in zip(sorted({r["threads"] for r in pts}), "os^Dv<>p")}
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for r in pts:  # one colour per artifact, one marker per thread count: a legend instead of crowded labels
        ax.scatter(r["latency_ms"]["p50"], r["accuracy"] * 100, s=60, marker=markers[r["threads"]],
                   color=colours[names.index(r["name"]) % len(colours)])
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="o", color=colours[i % len(colours)], label=n) for i, n in enumerate(names)]
    handles += [Line2D([], [], ls="", marker=m, color="grey", label=f"{t} thread{'s' if t > 1 else ''}")
                for t, m in markers.items()]
    ax.legend(handles=handles, fontsize=7, loc="best")
    ax.set_xlabel("p50 latency of the interpreter call (ms)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("latency vs accuracy")
    ax.grid(alpha=0.3)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)
    return True


def _main() -> None:
    a = json.loads(sys.argv[1])
    c = a["cfg"]
    c["artifacts"] = tuple(c["artifacts"])
    c["threads"] = tuple(c["threads"])
    try:
        r = measure(a["path"], a["threads"], BenchConfig(**c), a["acc"], a.get("data_note"))
    except EdgeflowerError as exc:
        r = {"artifact": a["path"], "name": Path(a["path"]).name, "threads": a["threads"], "error": str(exc)}
    sys.stdout.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    _main()
