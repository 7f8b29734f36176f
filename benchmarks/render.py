"""Write the result tables of README.md and docs/ from benchmarks/results/*.json.

    python -m benchmarks render [--check] [--results DIR] [--root DIR]

A table sits between the markers ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` of a Markdown file
(README.md, docs/**/*.md); NAME is a key of SECTIONS. Each section is a table and at most a one-line caption with the
command that produced it; the text around the markers is written by hand. Errors, each one line: a result file that a
section reads is missing or lacks a key; a marker names no section; a section has no marker. ``--check`` writes
nothing and fails when a file is out of date.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARKER = re.compile(r"<!-- results:([\w-]+) -->")


class RenderError(Exception):
    """A one-line error that names the result file or the document at fault."""


class Result(dict):
    """A JSON object of one result file: a missing key is a RenderError that names the file."""

    file = "?"

    def __getitem__(self, key):
        try:
            return super().__getitem__(key)
        except KeyError:
            raise RenderError(f"{self.file} has no key {key!r}") from None


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


class Results:
    """The result files of one folder: ``results("study.json")`` is its JSON, or a RenderError."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def __call__(self, name: str) -> Result:
        path = self.folder / name
        label = _shown(path)
        if not path.is_file():
            raise RenderError(f"{label} is missing: run its benchmark first (python -m benchmarks list)")

        def hook(pairs: dict) -> Result:
            r = Result(pairs)
            r.file = label
            return r

        try:
            data = json.loads(path.read_text(), object_hook=hook)
        except json.JSONDecodeError as e:
            raise RenderError(f"{label} is not valid JSON: {e}") from None
        if not isinstance(data, Result):
            raise RenderError(f"{label} does not hold a JSON object")
        return data


# ---------------------------------------------------------------------------------------------------- table helpers


def table(head: list[str], align: str, rows: Iterable[list[object]]) -> str:
    """A Markdown table; ``align`` has one letter per column, l or r."""
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["|" + "|".join(f" {c} " if str(c) else " " for c in r) + "|" for r in rows]
    return "\n".join(lines)


def caption(command: str | list[str], d: Result | None = None, extra: str = "") -> str:
    """The line above a table: the command(s) that made it and, where the result records them, the date and machine
    (the package versions are in the result file)."""
    cmds = [command] if isinstance(command, str) else command
    text = "; ".join(f"`{c}`" for c in cmds) + (f"; {extra}" if extra else "")
    if d is not None:
        e = d["environment"]
        text += f"; measured {d['date']} on {e['cpu_model']} ({e['cpu_count']} cores)"
    return f"_{text}._"


def with_caption(cap: str, tab: str) -> str:
    return cap + "\n\n" + tab


def pct(v: float, digits: int = 2) -> str:
    return f"{v * 100:.{digits}f}%"


def yes(v: bool) -> str:
    return "yes" if v else "**no**"


def short(artifact: str) -> str:
    """runs/bench/RUN/export/FILE -> RUN/FILE; another export folder of the run: RUN/FOLDER/FILE."""
    p = Path(artifact)
    if p.parent.name != "export":
        return f"{p.parent.parent.name}/{p.parent.name}/{p.name}"
    return f"{p.parent.parent.name}/{p.name}"


def _flag(command: str, flag: str) -> str | None:
    m = re.search(rf"(?:^| ){re.escape(flag)} (\S+)", command)
    return m.group(1) if m else None


# ---------------------------------------------------------------------------------------------------- training


STUDY_COMMAND = "python -m benchmarks.study"  # study.json does not record it
TRAIN = "edgeflower train "


def seed_runs(r: Result) -> list[Result]:
    """A study row's runs, one per seed (a row trained once: the row itself)."""
    return list(r["seeds"].values()) if "seeds" in r else [r]


def over_seeds(r: Result, key: str) -> str:
    """'90.83%' for one run, 'mean% (low-high)' over several seeds."""
    v = [s[key] * 100 for s in seed_runs(r)]
    if len(v) == 1:
        return f"{v[0]:.2f}%"
    return f"{sum(v) / len(v):.2f}% ({min(v):.2f}-{max(v):.2f})"


def configurations(runs: Result) -> dict[str, tuple[Result, dict[str, Result]]]:
    """study.json's rows grouped by their command without ``--seed``: the first row of a group is the configuration,
    the others are repeats (another seed, or the same command again), keyed by what their name adds to its name."""
    out: dict[str, tuple[Result, dict[str, Result]]] = {}
    first: dict[str, str] = {}
    for name, r in runs.items():
        key = re.sub(r" --seed \d+", "", r["command"])
        if key not in first:
            first[key] = name
            out[name] = (r, {})
        else:
            base = first[key]
            out[base][1][name[len(base):] if name.startswith(base) else name] = r
    return out


def study(results: Results) -> str:
    d = results("study.json")
    rows = []
    for name, (r, repeats) in configurations(d["runs"]).items():
        again = ", ".join(f"{pct(x['test_accuracy'])} (`{k}`)" for k, x in repeats.items()) or "-"
        rows.append([name, f"`{r['command'].removeprefix(TRAIN)}`", f"**{over_seeds(r, 'test_accuracy')}**",
                     len(seed_runs(r)), over_seeds(r, "val_accuracy"), f"{r['macro_f1']:.3f}",
                     " + ".join(str(n) for n in r["epochs_run"].values()), f"{r['train_seconds'] / 60:.0f} min", again])
    return with_caption(caption(STUDY_COMMAND, d), table(
        ["configuration", f"`{TRAIN.strip()}` options", "test acc", "seeds", "val acc", "macro F1",
         "epochs (head + fine-tuning)", "train time", "repeats: test acc"], "llrrrrrrl", rows))


def _mean_val(r: Result) -> float:
    runs = seed_runs(r)
    return sum(s["val_accuracy"] for s in runs) / len(runs)


def summary(results: Results) -> str:
    """Per model, fine-tuning and input size, the configuration with the best validation accuracy."""
    d = results("study.json")
    best: dict[tuple, tuple[str, Result]] = {}
    for name, (r, _) in configurations(d["runs"]).items():
        key = (r["model"], _flag(r["command"], "--fine-tune") is not None, _flag(r["command"], "--input-size"))
        if key not in best or _mean_val(r) > _mean_val(best[key][1]):
            best[key] = (name, r)
    rows = []
    for (model, _, size), (name, r) in best.items():
        study_acc, ft = r["study_test_accuracy"], _flag(r["command"], "--fine-tune")
        rows.append([model, f"{ft} layers" if ft else "-", size or "default", over_seeds(r, "val_accuracy"),
                     f"**{over_seeds(r, 'test_accuracy')}**", len(seed_runs(r)),
                     "-" if study_acc is None else pct(study_acc), f"{r['train_seconds'] / 60:.0f} min", name])
    return with_caption(caption(STUDY_COMMAND, d), table(
        ["model", "backbone fine-tuned", "input", "val acc", "test acc (Keras float)", "seeds", "the study",
         "train time", "configuration"], "llrrrrrrl", rows))


def memory(results: Results) -> str:
    d = results("memory.json")

    def mib(b: float) -> str:
        return f"{b / 2**20:,.0f} MiB"

    rows = []
    for label, block in (("before", d["before"]), ("now", d)):
        base = block["runs"]["1x"]["peak_rss_bytes"]
        for name, r in block["runs"].items():
            rows.append([label, name, f"{r['photos']:,}", mib(r["decoded_cache_bytes"]),
                         f"**{mib(r['peak_rss_bytes'])}**", f"{r['peak_rss_bytes'] / base:.2f}x"])
    extra = (f"target <= {d['target']}x: {'met' if d['met'] else 'missed'} ({d['ratio']:.2f}x); "
             f"before: {d['before']['code']}")
    return with_caption(caption(d["command"], d, extra), table(
        ["code", "dataset", "photos", "decoded images on disk", "peak RSS of train", "ratio to 1x"], "llrrrr", rows))


# ---------------------------------------------------------------------------------------------------- export


def export(results: Results) -> str:
    d = results("export.json")
    names = list(dict.fromkeys(a["name"] for e in d["exports"].values() for a in e["artifacts"]))
    rows = []
    for run, e in d["exports"].items():
        arts = {a["name"]: a for a in e["artifacts"]}
        cells = []
        for n in names:
            if n not in arts:
                cells.append("-")
                continue
            a = arts[n]
            drop = f" ({a['drop_pts']:+.2f})" if a["drop_pts"] else ""
            cells.append(f"{pct(a['accuracy'])}{drop}{'' if a['passed'] else ' **FAIL**'}")
        int8 = [a for a in e["artifacts"] if a["name"] == "model_int8.tflite"]
        size = f"{int8[0]['size_bytes'] / 2**20:.1f} MB" if int8 else "-"
        rows.append([run, pct(e["keras_test_accuracy"]), *cells, size, f"{e['wall_seconds']:.0f} s",
                     f"{e['peak_rss_mb']:,.0f} MB", e["exit_code"]])
    commands = sorted({re.sub(r"runs/bench/\S+", "runs/bench/RUN", e["command"]) for e in d["exports"].values()})
    return with_caption(caption(commands, d), table(
        ["run", "Keras test", *(f"{n} (drop, pts)" for n in names), "int8 TFLite size", "export time", "peak memory",
         "exit"], "l" + "r" * (len(names) + 5), rows))


def gate(results: Results) -> str:
    from edgeflower.exporting.gate import Z  # the margin the export ships with

    g = results("gate.json")

    def p(v: float | None) -> str:
        return "-" if v is None else pct(v, 1)

    rows = []
    for r in g["rows"]:
        o = r["old_rule_test"]
        rows.append([r["dataset"], r["artifact"], f"{r['val_photos']} / {r['test_photos']}",
                     f"{r['pool_drop_pts']:+.2f}", pct(r["pool_agreement"], 1), "old: test point estimate",
                     p(o["false_fail"]),
                     p(o["false_pass_plus1"]), p(o["false_pass_plus2"])])
        for z in g["z_values"]:
            v = r["rule_val"][f"{z:g}"]
            name = f"**{z:g} s.e. (shipped)**" if z == Z else f"{z:g} s.e."
            rows.append(["", "", "", "", "", name, p(v["false_fail"]), p(v["false_pass_plus1"]),
                         p(v["false_pass_plus2"])])
    extra = f"{g['rounds']} stratified bootstrap sets per figure, --max-drop {g['max_drop_pts']:g}"
    return with_caption(caption(g["command"], extra=extra), table(
        ["dataset", "artifact", "photos val / test", "pooled drop", "agreement", "rule", "false fail",
         "false pass +1 pt", "false pass +2 pts"], "llrrrlrrr", rows))


def clients(results: Results) -> str:
    d = results("clients.json")
    rows = []
    for run, r in d["runs"].items():
        for name, a in r.items():
            if name == "model":
                continue
            step = "" if a["output_step"] is None else f" (step {a['output_step']:.5f})"
            rows.append([f"{Path(run).name} ({r['model']})", name, pct(a["same_pixels"]["top1_agreement"], 1),
                         f"{a['same_pixels']['max_abs_score_difference']:.6f}{step}",
                         f"{a['mediapipe_resizes']['top1_changed']} of {a['images']}", pct(a["edgeflower_accuracy"]),
                         pct(a["mediapipe_resized_accuracy"])])
    return with_caption(caption(d["command"], d, d["note"]), table(
        ["run", "artifact", "same pixels: top-1 agree", "same pixels: max score diff",
         "MediaPipe resizes: top-1 changed", "accuracy, edgeflower", "accuracy, MediaPipe resizing"], "llrrrrr", rows))


def backbones(results: Results) -> str:
    d = results("backbones.json")
    rows = []
    for r in d["rows"]:
        lat, ratio = r["int8_p50_ms"], r["int8_p50_ratio_to_reference"]
        rows.append([Path(r["run"]).name, r["model"], f"{r['fine_tune_layers']} layers" if r["fine_tuned"] else "-",
                     r["input_size"], r["seed"], pct(r["val_accuracy"]), pct(r["keras_test_accuracy"]),
                     pct(r["float_tflite_accuracy"]), f"**{pct(r['int8_tflite_accuracy'])}**",
                     pct(r["int8_onnx_accuracy"]), f"{lat['1']:.2f} / {lat['2']:.2f}", f"{ratio['1']:.2f}x",
                     f"{r['int8_tflite_bytes'] / 2**20:.1f} MB", f"{r['train_seconds'] / 60:.0f} min"])
    return with_caption(caption([d["command"], *d["added"]], d, f"reference `{d['reference']}`"), table(
        ["run", "backbone", "fine-tuned", "input", "seed", "val acc", "Keras test", "float TFLite", "int8 TFLite",
         "int8 ONNX", "int8 p50 1 / 2 threads (ms)", "vs reference (1 thr)", "int8 size", "train time"],
        "lllrrrrrrrrrrr", rows))


def imx500(results: Results) -> str:
    d = results("imx500.json")
    e, m, g = d["export"], d["export"]["memory"], d["export"]["gate"]
    steps = ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in e["steps"].items())
    return with_caption(caption(d["command"], d), table(
        ["run", "chip memory", "export time", "val drop (pts), less 1 s.e.", "gate", "simulated test", "Keras test",
         "int8 TFLite test"], "lrlrlrrr",
        [[Path(d["run"]).parent.name, f"{m['memory_used_mb']:.2f} of {m['chip_mb']:g} MB",
          f"{e['seconds']:.0f} s ({steps})", f"{g['drop_pts']:+.2f}, {g['drop_lower_pts']:+.2f}", yes(e["passed"]),
          f"**{pct(e['simulated_test_accuracy'])}**", pct(e["keras_test_accuracy"]),
          pct(d["int8_tflite_test_accuracy"])]]))


def imx500_unknown(results: Results) -> str:
    d = results("imx500.json")
    rows = [[name, r["photos"], pct(r["imx500_unknown"], 1), pct(r["int8_tflite_unknown"], 1)]
            for name, r in d["unknown"].items()]
    return table(["photos without the run's classes", "photos", "answered `unknown`: AI Camera (simulated)",
                  "int8 TFLite"], "lrrr", rows)


# ---------------------------------------------------------------------------------------------------- device


EDGE_RESULTS = ("edge.json", "edge_mobilenet_v2.json")  # make main's EfficientNet-Lite0, then MobileNetV2


def _model_name(d: Result) -> str:
    return d.get("model") or d["export_dir"]


def latency(results: Results) -> str:
    rows, commands, d = [], [], None
    for name in EDGE_RESULTS:
        d = results(name)
        commands.append(d["command"])
        for r in d["bench"]["results"]:
            lat = r["latency_ms"]
            speed = f"{r['speedup_vs_float']:.2f}x" if r.get("speedup_vs_float") else "-"
            rows.append([_model_name(d), f"{r['name']} ({r['backend']})", r["threads"], f"{lat['p50']:.2f}", speed,
                         f"{lat['p90']:.2f}", f"{lat['p99']:.2f}", f"{r['e2e_ms']['p50']:.2f}",
                         f"{r['throughput_ips']:.0f}", f"{r['peak_rss_mb']:.0f}",
                         "n/a" if r["accuracy"] is None else pct(r["accuracy"])])
    return with_caption(caption(commands, d), table(
        ["model", "artifact", "threads", "p50 ms", "x float", "p90 ms", "p99 ms", "e2e p50 ms", "img/s", "peak MB",
         "accuracy"], "llrrrrrrrrr", rows))


def preprocessing(results: Results) -> str:
    """edge.json's preprocessing alone, in every resize (the artifact's is the one it uses)."""
    rows = []
    for name in EDGE_RESULTS:
        d = results(name)
        pre = d["preprocessing"]
        for resize, t in pre["by_resize"].items():
            rows.append([_model_name(d), resize + (" (the artifact's)" if resize == pre["resize"] else ""),
                         f"{t['frame_320x240_ms_p50']:.2f}", f"{t['frame_640x480_ms_p50']:.2f}",
                         f"{t['jpeg_decode_resize_ms_p50']:.2f}", f"{t['jpeg_decode_resize_ms_p90']:.2f}"])
    return table(["model", "resize", "320x240 frame ms", "640x480 frame ms", "test JPEG p50 ms", "test JPEG p90 ms"],
                 "llrrrr", rows)


def _latency_measured(d: Result) -> dict[str, str]:
    """edge.json's figure behind each of its targets."""
    r, pre, h = d["ratios"], d["preprocessing"], d["harness_overhead"]
    e2e, small = d["e2e_vs_invoke_int8_1thread"], d["e2e_vs_invoke_int8_1thread_320x240"]
    jpegs = d.get("e2e_vs_invoke_int8_1thread_jpegs")

    def ratio(x: dict) -> str:
        return f"{x['ratio']:.2f}x ({x['e2e_ms_p50']:.2f} / {x['invoke_ms_p50']:.2f} ms, {x['frame']})"

    onnx = f"{r['onnx_int8_over_float_p50_1thread']:.2f}x (1 thread)"
    measured = {
        "tflite_int8_over_float_p50 <= 0.55": f"{r['tflite_int8_over_float_p50_1thread']:.2f}x (1 thread)",
        "harness_overhead < 2%": f"{h['ratio']:.3f}x a bare invoke loop",
        "frame_preprocess < 2 ms": f"{pre['frame_640x480_ms_p50']:.2f} ms p50 (640x480 frame)",
        "jpeg_decode_resize < 5 ms": f"{pre['jpeg_decode_resize_ms_p50']:.2f} ms p50 (dataset JPEG)",
        "e2e <= 1.5x invoke": f"{ratio(e2e)}; {small['ratio']:.2f}x with a {small['frame']} stream",
        "e2e <= 1.15x invoke (320x240 frames)": ratio(small),
        "classify rss < 150 MB": f"{d['classify_rss_mb_int8']:.0f} MB (int8)",
        "classify == export predictions": ", ".join(f"{k} {v['identical']}/{v['images']}"
                                                    for k, v in d["classify_matches_export"].items()),
    }
    if jpegs:
        measured["e2e <= 1.25x invoke (dataset JPEGs)"] = ratio(jpegs)
    for t in d["targets"]:
        if t.startswith("onnx_int8_over_float_p50 <= "):
            measured[t] = onnx
    return measured


def latency_targets(results: Results) -> str:
    rows = []
    for name in EDGE_RESULTS:
        d = results(name)
        measured = _latency_measured(d)
        for target, met in d["targets"].items():
            if target not in measured:
                raise RenderError(f"{d.file}: no figure known for the target {target!r} (add it to render.py)")
            rows.append([_model_name(d), target, measured[target], yes(met)])
    return table(["model", "target", "measured", "met"], "llll", rows)


def sinks(results: Results) -> str:
    d = results("sinks.json")
    rows, commands, met = [], [], []
    for every, sc in d["scenarios"].items():
        commands.append(sc["command"])
        met.append(f"every {every}: {'met' if sc['met'] else 'missed'}")
        for name, c in sc["configs"].items():
            st = "; ".join(f"{x['sent']} / {x['failed']} / {x['dropped']} / {x['queued']}"
                           for x in c["sink_stats_last_round"]) or "-"
            q1, q3 = c["ratio_quartiles"]
            rows.append([every, name, f"{c['median_fps']:.1f}", f"{c['median_ratio_to_off']:.3f}x ({q1:.2f}-{q3:.2f})",
                         f"{c['median_cpu_ms_per_frame']:.2f} ms", f"{c['median_cpu_ratio_to_off']:.3f}x",
                         f"{c['max_close_s']:.2f} s", st])
    sc = next(iter(d["scenarios"].values()))
    extra = (f"{sc['frames_per_run']} frames per run, {sc['rounds']} interleaved rounds, {sc['threads']} inference "
             f"thread; at most {sc['target_max_slowdown'] * 100:g}% slower: " + ", ".join(met))
    return with_caption(caption(commands, sc, extra), table(
        ["label change every (frames)", "sinks", "frames per second (median)",
         "against off: median of per-round ratios (quartiles)", "CPU per frame (median)", "CPU against off",
         "closing took (max)", "last round: sent / failed / dropped / still queued"], "rlrrrrrl", rows))


def _soak_env(d: Result) -> str:
    e = d["environment"]
    return f"{e['cpus']} cores, {e['machine']}, Python {e['python']}, descriptor limit {e['fd_limit']}"


def soak_loop(results: Results) -> str:
    d = results("soak_loop.json")
    rows = []
    for r in d["runs"]:
        p10, p50, p90 = r["fps_p10_p50_p90"]
        idle = f" ({r['idle_connections']} idle connections + a slow client)" if "idle_connections" in r else ""
        rows.append([r["config"] + idle, f"{r['frames']:,}", f"{p10:,.0f} / {p50:,.0f} / {p90:,.0f}",
                     f"{r['rss_mb_first']} -> {r['rss_mb_last']}", f"{r['rss_growth_mb_per_million_frames']:+.3f}",
                     r["threads_max"], r["fds_max"]])
    extra = (f"{_soak_env(d)}; whole-run FPS with the idle connections against the page alone: "
             f"{d['fps_ratio_idle_connections_to_serve'] * 100:.0f}%")
    return with_caption(caption(d["command"], extra=extra), table(
        ["configuration", "frames", "FPS (p10 / p50 / p90 of 20k-frame windows)", "RSS first -> last (MB)",
         "RSS growth per million frames (MB)", "threads", "descriptors"], "lrrrrrr", rows))


def soak_classify(results: Results) -> str:
    d = results("soak_classify.json")
    rows = []
    for r in d["runs"]:
        p10, p50, p90 = r["fps_p10_p50_p90"]
        rows.append([f"{r['frames']:,}", f"{r['rss_mb_first']} -> {r['rss_mb_last']}",
                     f"{r['rss_growth_mb_per_million_frames']:+.2f}", r["threads_max"], r["fds_max"],
                     f"{p10:.0f} / {p50:.0f} / {p90:.0f}", r["returncode"]])
    return with_caption(caption(d["command"], extra=_soak_env(d)), table(
        ["frames", "RSS first -> last (MB)", "RSS growth per million frames (MB)", "threads", "descriptors",
         "FPS p10 / p50 / p90 (5 s windows)", "exit"], "rrrrrrr", rows))


def soak_stills(results: Results) -> str:
    d = results("soak_stills.json")
    rows = [[f"{s['format']}, {s['pixels']}", s["seconds"], s["peak_rss_mb"]] for s in d["rows"]]
    extra = f"{_soak_env(d)}; `python` with edgeflower imported: {d['import_rss_mb']} MB"
    return with_caption(caption(d["command"], extra=extra),
                        table(["image", "seconds", "peak RSS (MB)"], "lrr", rows))


# ---------------------------------------------------------------------------------------------------- unknown

UNKNOWN = "unknown_edu.json"  # the current sets: wallpapers, GCompris and Tux Paint photos


def unknown(results: Results) -> str:
    u = results(UNKNOWN)

    def share(block: Result) -> str:
        return f"{block['rejected'] * 100:.0f}% of {block['images']}"

    rows = []
    for a in u["artifacts"]:
        nat = a["non_flower_rejected_by_category"]["nature"]
        rows.append([short(a["artifact"]), a["rule"], f"{a['similarity_threshold']:.3f}",
                     pct(a["development"]["rejected"], 1), pct(a["held_out"]["rejected"], 1),
                     f"**{pct(a['non_flower_rejected'], 1)}**", f"{nat['rejected'] * 100:.0f}% of {nat['images']}",
                     share(a["near"]), share(a["near_cutout"]), share(a["cutout_control"]),
                     f"{pct(a['test_accuracy_without_rejection'])} -> {pct(a['test_accuracy_with_rejection'])} "
                     f"(-{a['test_drop_pts']:.2f})", "met" if a["target_met"] else "missed"])
    paths = {a["artifact"] for a in u["artifacts"]}  # each is a row of the table
    words = u["command"].split()
    kept = [w for w in words if w not in paths]
    command = " ".join(kept[:2] + ["ARTIFACT..."] + kept[2:]) if len(kept) < len(words) else u["command"]
    return with_caption(caption(command, u), table(
        ["artifact", "score", "threshold", "development", "held-out", "all non-flower", "nature", "other species",
         "other species, cut-outs", "cut-out roses (control)", "test acc without -> with `unknown`", "target"],
        "llrrrrrrrrll", rows))


def unknown_sets(results: Results) -> str:
    u = results(UNKNOWN)
    rows = []
    for name, photos in u["sets"].items():
        count = Counter(o["package"].split()[0] for o in photos)  # "scikit-image 0.26.0" -> scikit-image
        rows.append([name, len(photos), ", ".join(f"{c} from {p}" for p, c in count.items())])
    return table(["set", "photos", "from"], "lrl", rows)


def unknown_categories(results: Results) -> str:
    u = results(UNKNOWN)
    arts = [a for a in u["artifacts"] if a["artifact"].endswith("model_int8.tflite")]
    cats = sorted({c for a in arts for c in a["non_flower_rejected_by_category"]})
    rows = []
    for a in arts:
        bc = a["non_flower_rejected_by_category"]
        rows.append([short(a["artifact"]), *(f"{bc[c]['rejected'] * 100:.0f}% ({bc[c]['images']})" if c in bc else "-"
                                             for c in cats)])
    return table(["int8 TFLite", *cats], "l" + "r" * len(cats), rows)


OUTLIERS = "outliers.json"  # the outlier set's held-out part (benchmarks/outliers.py)


def _of(block: Result) -> str:
    return "-" if block["unknown"] is None else f"{block['unknown'] * 100:.1f}% of {block['images']}"


def _artifact_command(d: Result) -> str:
    """The result's command with its artifact paths folded into ARTIFACT... (each is a row of the table)."""
    paths = {a["artifact"] for a in d["artifacts"]}
    words = d["command"].split()
    kept = [w for w in words if w not in paths]
    return " ".join(kept[:3] + ["ARTIFACT..."] + kept[3:]) if len(kept) < len(words) else d["command"]


def run_name(artifact: str) -> str:
    """runs/main/train/export/FILE -> main/FILE: the run folder, above train/ and export/."""
    parts = [p for p in Path(artifact).parts[:-1] if p not in ("train", "export")]
    return f"{parts[-1] if parts else '.'}/{Path(artifact).name}"


def outliers(results: Results) -> str:
    """Per artifact: the held-out part answered unknown (all, nature, unseen species), the flowers' cost."""
    d = results(OUTLIERS)
    rows = []
    for a in d["artifacts"]:
        h, f, ok = a["heldout"], a["flowers"], a["target_met"]
        rows.append([run_name(a["artifact"]), f"**{_of(h['non_flower'])}**", _of(h["by_category"]["nature"]),
                     _of(h["other_flowers_unseen_species"]), _of(a["val"]["non_flower"]),
                     f"{pct(f['accuracy_without_rejection'])} -> {pct(f['accuracy_with_unknown'])} "
                     f"(-{f['cost_pts']:.2f})", pct(f["answered_unknown_by_background"], 1),
                     "met" if all(ok.values()) else "missed: " + ", ".join(k for k, v in ok.items() if not v)])
    t = d["artifacts"][0]["targets"] if d["artifacts"] else {}
    targets = (f"targets: held-out non-flower >= {t.get('non_flower', 0):.0%}, nature >= {t.get('nature', 0):.0%}, "
               f"unseen species >= {t.get('unseen_species', 0):.0%}, cost <= {t.get('cost_pts', 0):g} point")
    return with_caption(caption(_artifact_command(d), d, targets), table(
        ["artifact", "held-out non-flower", "held-out nature", "other species never trained on",
         "validation outliers (not unseen)", "flower test acc without -> with `unknown`", "flowers to background",
         "target"], "lrrrrlrl", rows))


def outliers_categories(results: Results) -> str:
    """Per category of the held-out part (and the validation part beside, for the int8 TFLite rows)."""
    d = results(OUTLIERS)
    arts = [a for a in d["artifacts"] if a["artifact"].endswith(".tflite")]
    cats = sorted({c for a in arts for c in a["heldout"]["by_category"]})
    rows = []
    for a in arts:
        for part in ("heldout", "val"):
            bc = a[part]["by_category"]
            rows.append([run_name(a["artifact"]), {"heldout": "held out", "val": "validation"}[part],
                         *(_of(bc[c]) if c in bc else "-" for c in cats)])
    return table(["artifact", "part", *cats], "ll" + "r" * len(cats), rows)


def outliers_species(results: Results) -> str:
    """Other-species flowers of the held-out part, per species, for the int8 TFLite rows."""
    d = results(OUTLIERS)
    arts = [a for a in d["artifacts"] if a["artifact"].endswith("int8.tflite")]
    seen = set(d["split"]["seen_species"])
    species = sorted({s for a in arts for s in a["heldout"]["other_flowers_by_species"]})
    rows = [[run_name(a["artifact"]), *(_of(a["heldout"]["other_flowers_by_species"][s])
                                     if s in a["heldout"]["other_flowers_by_species"] else "-" for s in species)]
            for a in arts]
    return table(["int8 TFLite", *(s + ("" if s not in seen else " (seen)") for s in species)],
                 "l" + "r" * len(species), rows)


def outliers_split(results: Results) -> str:
    d = results(OUTLIERS)
    sp = d["split"]
    c = sp["counts"]
    return table(["part", "photos", "what"], "lrl", [
        ["train", c["train"], "trains the background class"],
        ["val", c["val"], "early stopping, the thresholds, every choice of method"],
        ["held out", c["heldout"], "sources " + ", ".join(s.split("/")[0] for s in sp["held_out_sources"])
         + "; Caltech categories " + ", ".join(sp["held_out_caltech_categories"])
         + "; species " + ", ".join(sp["held_out_species"])]])


def outlier_heads(results: Results) -> str:
    """The head variants for the outlier photos, on validation (a settled study)."""
    d = results("outlier_heads.json")
    rows = [[name, ", ".join(f"{k} {v}" for k, v in v["options"].items()) or "make main's head",
             pct(v["val_flower_accuracy"]), pct(v["val_flowers_to_background"]),
             pct(v["val_outliers_to_background"], 1), len(v["seeds"])] for name, v in d["variants"].items()]
    return with_caption(caption(d["command"], d), table(
        ["variant", "options", "val flowers (top of the classes)", "val flowers to background",
         "val outliers to background", "seeds"], "llrrrr", rows))


# ---------------------------------------------------------------------------------------------------- documents

Section = Callable[[Results], str]
SECTIONS: dict[str, Section] = {
    "summary": summary, "study": study, "memory": memory,
    "export": export, "gate": gate, "clients": clients, "backbones": backbones,
    "imx500": imx500, "imx500_unknown": imx500_unknown,
    "latency": latency, "latency_targets": latency_targets, "preprocessing": preprocessing, "sinks": sinks,
    "soak_loop": soak_loop, "soak_classify": soak_classify, "soak_stills": soak_stills,
    "unknown": unknown, "unknown_sets": unknown_sets, "unknown_categories": unknown_categories,
    "outliers": outliers, "outliers_categories": outliers_categories, "outliers_species": outliers_species,
    "outliers_split": outliers_split, "outlier_heads": outlier_heads,
}


def documents(root: Path) -> list[Path]:
    """The Markdown files that may hold markers: README.md and docs/**/*.md."""
    return [p for p in [root / "README.md", *sorted((root / "docs").rglob("*.md"))] if p.is_file()]


def render_text(text: str, where: str, results: Results, sections: dict[str, Section]) -> tuple[str, set]:
    """``text`` with every marked section rendered again, and the names of those sections."""
    out, pos, seen = [], 0, set()
    for m in MARKER.finditer(text):
        if m.start() < pos:
            continue
        name = m.group(1)
        if name not in sections:
            raise RenderError(f"{where}: marker results:{name} names no section of benchmarks/render.py")
        end = text.find(f"<!-- /results:{name} -->", m.end())
        if end < 0:
            raise RenderError(f"{where}: marker results:{name} is not closed")
        out += [text[pos:m.end()], "\n", sections[name](results), "\n"]
        pos = end
        seen.add(name)
    return "".join(out) + text[pos:], seen


def render_docs(results_dir: Path = RESULTS, root: Path = ROOT,
                sections: dict[str, Section] | None = None) -> dict[Path, str]:
    """The new text of every document under ``root`` that holds markers, from the results in ``results_dir``
    (``sections``: SECTIONS)."""
    sections = SECTIONS if sections is None else sections
    results = Results(results_dir)
    new, seen = {}, set()
    for path in documents(Path(root)):
        text = path.read_text()
        if not MARKER.search(text):
            continue
        new[path], names = render_text(text, _shown(path), results, sections)
        seen |= names
    missing = [n for n in sections if n not in seen]
    if missing:
        raise RenderError(f"no document has a marker for the section(s) {', '.join(missing)}")
    return new


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks render", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS, help="the result files (default: benchmarks/results)")
    ap.add_argument("--root", type=Path, default=ROOT, help="the folder with README.md and docs/ (default: the repo)")
    ap.add_argument("--check", action="store_true", help="write nothing; fail when a document is out of date")
    args = ap.parse_args(argv)
    try:
        new = render_docs(args.results, args.root)
    except RenderError as e:
        print(f"render: {e}", file=sys.stderr)
        return 2
    stale = [p for p, text in new.items() if p.read_text() != text]
    for p in stale:
        if args.check:
            print(f"render: {_shown(p)} is out of date: run python -m benchmarks render", file=sys.stderr)
        else:
            p.write_text(new[p])
            print(f"wrote {_shown(p)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
