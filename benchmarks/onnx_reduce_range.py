"""int8 ONNX weight variants: 8-bit and 7-bit (``reduce_range``) int8 weights, and 8-bit uint8 weights.

    python benchmarks/onnx_reduce_range.py runs/bench/RUN [more runs...]

For each exported run, quantizes its float ONNX once per variant with the export's own calibration images
(everything else as `edgeflower export --int8`) and measures test accuracy two ways: with onnxruntime's
fused int8 kernels on this machine, and with every graph optimization off, which computes exactly what the QDQ
graph says (what arm64 computes; x86 without VNNI saturates int16 pair sums). Also the largest difference between
the two, the same with onnxruntime's session.x64quantprecision (what the edge runtime sets: uint8 x uint8 kernels
where int8 weights could saturate), and a one-thread p50 on one image each way (noisy on a shared machine: a
first look, not the bench). Writes benchmarks/results/onnx_reduce_range.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeflower._env import environment  # noqa: E402
from edgeflower._util import write_json  # noqa: E402


def _run(path: Path, x: np.ndarray, optimize: bool, precise: bool = False) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                     else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if precise:  # what edgeflower's edge runtime sets (edge/backends.py)
        opts.add_session_config_entry("session.x64quantprecision", "1")
    opts.intra_op_num_threads = 2
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    probs = [o for o in s.get_outputs() if o.shape[-1] != 1][0].name
    return np.concatenate([s.run([probs], {name: x[i:i + 16].astype(np.float32)})[0] for i in range(0, len(x), 16)])


def _p50(path: Path, x: np.ndarray, runs: int = 100, precise: bool = False) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    if precise:
        opts.add_session_config_entry("session.x64quantprecision", "1")
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {s.get_inputs()[0].name: x.astype(np.float32)}
    for _ in range(10):
        s.run(None, feed)
    ts = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        s.run(None, feed)
        ts.append((time.perf_counter_ns() - t) / 1e6)
    return float(np.median(ts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--results", default=str(ROOT / "benchmarks/results/onnx_reduce_range.json"))
    args = ap.parse_args()
    from edgeflower.data.arrays import load_split
    from edgeflower.data.source import resolve_data_dir
    from edgeflower.data.split import load_manifest
    from edgeflower.export import convert
    from edgeflower.export.pipeline import stratified_sample

    VARIANTS = {"uint8 x int8, 8-bit weights": convert.OnnxInt8Options(reduce_range=False),
                "uint8 x int8, 7-bit weights": convert.OnnxInt8Options(reduce_range=True),
                "uint8 x uint8, 8-bit weights": convert.OnnxInt8Options(reduce_range=False, weight_type="uint8")}

    out = {"command": "python benchmarks/onnx_reduce_range.py " + " ".join(sys.argv[1:]), "runs": {}}
    for run in map(Path, args.runs):
        cfg = json.loads((run / "config.json").read_text())
        rep = json.loads((run / "export" / "export_report.json").read_text())
        size, root = cfg["input_size"], resolve_data_dir(cfg["data_dir"])
        manifest = load_manifest(cfg.get("split"))
        test = load_split(root, manifest, "test", size)
        calib = stratified_sample(load_split(root, manifest, "train", size), rep["config"]["calibration"],
                                  rep["config"]["calibration_seed"])
        row = {}
        with tempfile.TemporaryDirectory() as tmp:
            for bits, opts in VARIANTS.items():
                q = Path(tmp) / f"{bits}.onnx"
                convert.onnx_int8(run / "export" / "model.onnx", q, calib, opts)
                fused, precise, exact = _run(q, test.x, True), _run(q, test.x, True, True), _run(q, test.x, False)
                row[bits] = {"x86_fused_accuracy": float((fused.argmax(1) == test.y).mean()),
                             "x86_fused_x64quantprecision_accuracy": float((precise.argmax(1) == test.y).mean()),
                             "qdq_exact_accuracy": float((exact.argmax(1) == test.y).mean()),
                             "max_abs_difference": float(np.abs(fused - exact).max()),
                             "max_abs_difference_x64quantprecision": float(np.abs(precise - exact).max()),
                             "labels_differ": int((fused.argmax(1) != exact.argmax(1)).sum()),
                             "labels_differ_x64quantprecision": int((precise.argmax(1) != exact.argmax(1)).sum()),
                             "p50_ms_1thread": _p50(q, test.x[:1]),
                             "p50_ms_1thread_x64quantprecision": _p50(q, test.x[:1], precise=True)}
                r = row[bits]
                print(f"{run.name} {bits}: x86 fused {r['x86_fused_accuracy'] * 100:.2f}% "
                      f"({r['labels_differ']} labels differ from the exact graph), with x64quantprecision "
                      f"{r['x86_fused_x64quantprecision_accuracy'] * 100:.2f}% "
                      f"({r['labels_differ_x64quantprecision']}),"
                      f" exact QDQ {r['qdq_exact_accuracy'] * 100:.2f}%; p50 {r['p50_ms_1thread']:.2f} / "
                      f"{r['p50_ms_1thread_x64quantprecision']:.2f} ms", flush=True)
        out["runs"][run.name] = {"keras_test_accuracy": rep["keras_test_accuracy"], "test_images": len(test), **row}
    out["environment"] = environment()
    out["date"] = time.strftime("%Y-%m-%d")
    write_json(args.results, out)


if __name__ == "__main__":
    main()
