"""Which MCT quantization of a run's network loses least on the AI Camera, judged on the validation split.

    python -m benchmarks.imx500_quantizers capture RUN WORK          # main environment: the worker's inputs
    SIDE/bin/python benchmarks/imx500_quantizers.py variant WORK NAME [EPOCHS]   # side environment, one at a time
    python -m benchmarks.imx500_quantizers score WORK                # writes benchmarks/results/imx500_quantizers.json

`capture` runs `export RUN --formats imx500` up to the side process and keeps what it would hand over (graph,
weights, the 300 calibration photos, the val and test photos) with the labels and Keras's answers. `variant`
quantizes that network one way for the IMX500 target platform (TPC 1.0) and saves MCT's simulated outputs on val
and test. `score` compares each with Keras: the choice is made on val (the gate's figures); test is reported.
Each variant takes 2 to 7 minutes on 2 cores (GPTQ with Hessian weights: hours).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def capture(run: str, dest: Path) -> None:
    from edgeflower.export import imx500, pipeline

    class Captured(Exception):
        pass

    orig, orig_worker = pipeline._Checker.imx500, imx500.run_worker

    def imx(self, spec, model, data):
        def keep(model, feature_layer, calibration, evals, work, **kw):
            try:  # writes the inputs, then fails at once: /bin/true writes no results
                orig_worker(model, feature_layer, calibration, evals, work, convert=False, python=Path("/bin/true"))
            except Exception:
                pass
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(work, dest)
            np.savez(dest / "labels.npz", test_y=self.test.y, val_y=self.val.y, ref_pred=self.ref_pred,
                     ref_val_pred=self.ref_val_pred)
            raise Captured()

        imx500.run_worker = keep
        return orig(self, spec, model, data)

    pipeline._Checker.imx500 = imx
    try:
        pipeline.export(pipeline.ExportConfig(target=run, out=str(dest) + ".export", formats=("imx500",)), print)
    except Captured:
        print("captured", sorted(p.name for p in dest.iterdir()))


def variant(work: Path, name: str, epochs: int) -> None:
    import importlib.util

    # the export's own rebuild and output loop, loaded by path: the side environment has no edgeflower
    spec = importlib.util.spec_from_file_location(
        "imx500_worker", Path(__file__).resolve().parents[1] / "edgeflower" / "export" / "imx500_worker.py")
    w = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(w)
    import mct_quantizers
    import model_compression_toolkit as mct
    from edgemdt_tpc import get_target_platform_capabilities

    out = work / "variants" / name
    out.mkdir(parents=True, exist_ok=True)
    graph = json.loads((work / "graph.json").read_text())
    npz = np.load(work / "weights.npz")
    weights: dict[str, list] = {}
    for key in sorted(npz.files, key=lambda k: (k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1]))):
        weights.setdefault(key.rsplit("/", 1)[0], []).append(npz[key])
    model = w.rebuild(graph, weights)
    calib = np.load(work / "calibration.npy")
    evals = {n: np.load(work / f"eval_{n}.npy") for n in ("val", "test")}

    def representative():
        for b in w._batches(calib, 8):
            yield [b]

    tpc = get_target_platform_capabilities(tpc_version="1.0", device_type="imx500")
    qc = mct.core.QuantizationConfig
    err = mct.core.QuantizationErrorMethod
    configs = {"ptq": qc(), "second_moment": qc(weights_second_moment_correction=True),
               "act_noclipping": qc(activation_error_method=err.NOCLIPPING), "gptq": qc(), "gptq_hessian": qc()}
    core = mct.core.CoreConfig(quantization_config=configs[name])
    t = time.perf_counter()
    if name.startswith("gptq"):
        hessian = name == "gptq_hessian"
        cfg = mct.gptq.get_keras_gptq_config(n_epochs=epochs, use_hessian_based_weights=hessian,
                                             use_hessian_sample_attention=hessian)
        q, _ = mct.gptq.keras_gradient_post_training_quantization(model, representative, cfg, core_config=core,
                                                                  target_platform_capabilities=tpc)
    else:
        q, _ = mct.ptq.keras_post_training_quantization(model, representative, core_config=core,
                                                        target_platform_capabilities=tpc)
    seconds = time.perf_counter() - t
    mct.exporter.keras_export_model(model=q, save_model_path=str(out / "model.keras"))
    w.save_outputs(mct_quantizers.keras_load_quantized_model(str(out / "model.keras")), evals, out, "quantized")
    (out / "info.json").write_text(json.dumps({"quantize_s": round(seconds, 1), "epochs": epochs}))


def score(work: Path) -> dict:
    lab = np.load(work / "labels.npz")
    rows = []
    for d in sorted((work / "variants").iterdir()):
        if not (d / "quantized_test.npz").is_file():
            continue
        row = {"variant": d.name, **json.loads((d / "info.json").read_text())}
        for split, y, ref in (("val", lab["val_y"], lab["ref_val_pred"]), ("test", lab["test_y"], lab["ref_pred"])):
            pred = np.load(d / f"quantized_{split}.npz")["arr_0"].argmax(1)
            lost = int(((ref == y) & (pred != y)).sum())
            gained = int(((ref != y) & (pred == y)).sum())
            row[split] = {"photos": len(y), "keras_accuracy": float((ref == y).mean()),
                          "accuracy": float((pred == y).mean()), "drop_pts": 100 * (lost - gained) / len(y),
                          "lost": lost, "gained": gained, "changed": int((pred != ref).sum())}
        rows.append(row)
    return {"command": "python -m benchmarks.imx500_quantizers score WORK (after capture and each variant)",
            "chosen_on": "val", "variants": rows}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["capture"]:
        capture(argv[1], Path(argv[2]))
    elif argv[:1] == ["variant"]:
        variant(Path(argv[1]), argv[2], int(argv[3]) if len(argv) > 3 else 0)
    elif argv[:1] == ["score"]:
        from benchmarks import RESULTS
        from edgeflower._env import environment
        from edgeflower._util import write_json

        result = {**score(Path(argv[1])), "environment": environment()}
        write_json(RESULTS / "imx500_quantizers.json", result)
        for r in result["variants"]:
            print(r["variant"], {s: {k: r[s][k] for k in ("accuracy", "drop_pts", "changed")} for s in ("val", "test")})
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
