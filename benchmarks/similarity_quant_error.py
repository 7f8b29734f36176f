"""Where does the int8 error of the `unknown` similarity come from: the quantized backbone, or the similarity head?

    python benchmarks/similarity_quant_error.py runs/bench/mobilenet_v2_ft_all_240_cos_mix [--data DIR]

Uses the run's exported float ONNX model (RUN/export/model.onnx). Quantizes it again the way `export --int8` does
(same calibration sample), once as shipped and once with the similarity head (L2 normalization, bank MatMul,
top-k) left in float, and compares both similarity outputs with the float model's on the validation photos
(and the shipped int8 TFLite with the float TFLite). If the head were the problem, keeping it in float would
shrink the difference. Writes
benchmarks/results/similarity_quant_error.json. A few minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeflower._env import environment  # noqa: E402
from edgeflower._util import write_json  # noqa: E402
from edgeflower.data.arrays import load_split  # noqa: E402
from edgeflower.data.source import resolve_data_dir  # noqa: E402
from edgeflower.data.split import load_manifest  # noqa: E402
from edgeflower.edge import Classifier  # noqa: E402
from edgeflower.export import convert  # noqa: E402
from edgeflower.export.pipeline import ExportConfig, stratified_sample  # noqa: E402


def _diff(name: str, sims: np.ndarray, ref: np.ndarray) -> dict:
    d = sims - ref
    print(f"{name}: similarity - float similarity on {len(d)} val photos: mean {d.mean():+.4f}, sd {d.std():.4f}, "
          f"max |d| {np.abs(d).max():.3f}", flush=True)
    return {"mean_diff": float(d.mean()), "sd_diff": float(d.std()), "max_abs_diff": float(np.abs(d).max()),
            "correlation": float(np.corrcoef(sims, ref)[0, 1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--data", default=None)
    ap.add_argument("--results", default=str(ROOT / "benchmarks/results/similarity_quant_error.json"))
    args = ap.parse_args()
    import onnx
    import onnxruntime.quantization as q

    float_path = Path(args.run) / "export" / "model.onnx"
    graph = onnx.load(os.fspath(float_path)).graph
    head = [n.name for n in graph.node if "ood_" in n.name or n.op_type == "TopK"]
    if not head:
        sys.exit(f"{float_path} has no similarity head")
    root = resolve_data_dir(args.data, download=False)
    man = load_manifest()
    size = Classifier(float_path).input_size[0]
    defaults = ExportConfig(target=args.run)
    calib = stratified_sample(load_split(root, man, "train", size), defaults.calibration, defaults.calibration_seed)
    val = load_split(root, man, "val", size)
    _, ref = Classifier(float_path).score_batch(val.x)
    res = {"command": "python benchmarks/similarity_quant_error.py " + " ".join(sys.argv[1:]), "run": args.run,
           "similarity_head_nodes": head, "val_images": len(val), "variants": {}}
    real = q.quantize_static
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("int8 as shipped", []), ("int8, similarity head in float", head)):
            path = Path(tmp) / f"{len(res['variants'])}.onnx"

            def quantize(*a, nodes_to_exclude=(), _extra=extra, **k):
                return real(*a, nodes_to_exclude=list(nodes_to_exclude) + _extra, **k)

            q.quantize_static = quantize
            try:
                convert.onnx_int8(float_path, path, calib)
            finally:
                q.quantize_static = real
            _, sims = Classifier(path).score_batch(val.x)
            res["variants"][name] = {"size_bytes": path.stat().st_size, **_diff(name, sims, ref)}
    # the shipped TFLite pair, for comparison (full-integer TFLite cannot keep the head in float)
    tfl = Path(args.run) / "export"
    if (tfl / "model_int8.tflite").is_file() and (tfl / "model_float.tflite").is_file():
        _, f = Classifier(tfl / "model_float.tflite").score_batch(val.x)
        _, i8 = Classifier(tfl / "model_int8.tflite").score_batch(val.x)
        res["tflite_int8_vs_float"] = _diff("TFLite int8 against float TFLite", i8, f)
    res["environment"] = environment()
    res["date"] = time.strftime("%Y-%m-%d")
    write_json(args.results, res)


if __name__ == "__main__":
    main()
