"""The IMX500 side of `edgeflower export --formats imx500`, run as a script by the side environment's Python.

It imports neither edgeflower nor Keras 3: Sony's Model Compression Toolkit and converter need TensorFlow 2.15 and
Keras 2, so the main environment writes the trained network as a portable graph (graph.json: layers, their configs
and inputs; weights.npz) and arrays of photos, and this script:

1. rebuilds the graph in Keras 2, without training-only layers; Rescaling becomes plain arithmetic, relu6 a
   ReLU(6) layer and GlobalMaxPooling2D a max pooling over the whole feature map (the converter refuses all three),
   so the input stays raw pixels 0..255 as the sensor gives them;
2. quantizes it with MCT post-training quantization for the IMX500 target platform on the calibration photos;
3. runs the quantized model (MCT's simulation of the chip, not bit-exact) on the evaluation photos and writes every
   output, so that edgeflower's gate can judge it like any other artifact;
4. with --convert, runs Sony's converter (imxconv-tf, Java 17) and copies its memory report.

    python imx500_worker.py WORK [--convert]

WORK holds graph.json, weights.npz, calibration.npy and eval_*.npy; results go to WORK/out/.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

BASE_KWARGS = {"name", "trainable", "dtype"}
IDENTITY = {"Dropout", "RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomContrast",
            "RandomBrightness", "RandomCrop", "GaussianNoise", "GaussianDropout", "SpatialDropout2D"}


def _clean(cls, config: dict) -> dict:
    """Keep the arguments the Keras 2 class accepts; initializers and regularizers do not matter (weights are set)."""
    params = set(inspect.signature(cls.__init__).parameters)
    out = {}
    for k, v in config.items():
        if k.endswith(("_initializer", "_regularizer", "_constraint")) or k not in params | BASE_KWARGS:
            continue
        if k == "dtype":
            v = v["config"]["name"] if isinstance(v, dict) else v
        out[k] = v
    return out


def rebuild(graph: dict, weights: dict):
    import tensorflow as tf

    keras = tf.keras
    tensors = {}
    inputs = []
    for node in graph["nodes"]:
        cls_name, name, cfg = node["class_name"], node["name"], node["config"]
        if cls_name == "InputLayer":
            t = keras.Input(shape=tuple(cfg["shape"]), name=name)
            inputs.append(t)
            tensors[name] = t
            continue
        args = [tensors[i] for i in node["inputs"]]
        x = args[0] if len(args) == 1 else args
        if cls_name in IDENTITY:
            tensors[name] = x
            continue
        if cls_name == "Rescaling":  # the converter refuses Rescaling; the same arithmetic passes
            scale = np.asarray(cfg["scale"], np.float32)
            offset = np.asarray(cfg["offset"], np.float32)
            y = x * (float(scale) if scale.size == 1 else scale)
            tensors[name] = y + (float(offset) if offset.size == 1 else offset) if np.any(offset) else y
            continue
        if cls_name == "GlobalMaxPooling2D" and not cfg.get("keepdims"):  # unsupported; the same as a full window
            window = tuple(int(d) for d in x.shape[1:3])
            pooled = keras.layers.MaxPooling2D(window, name=f"{name}_window")(x)
            tensors[name] = keras.layers.Flatten(name=name)(pooled)
            continue
        if cls_name == "Activation" and cfg.get("activation") == "relu6":
            layer = keras.layers.ReLU(6.0, name=name)
        elif cls_name == "ReLU":
            layer = keras.layers.ReLU(**_clean(keras.layers.ReLU, cfg))
        else:
            cls = getattr(keras.layers, cls_name, None)
            if cls is None:
                sys.exit(f"imx500: the layer {name} ({cls_name}) has no Keras 2 equivalent for the IMX500 converter")
            layer = cls(**_clean(cls, cfg))
        tensors[name] = layer(x)
        if name in weights:
            layer.set_weights(weights[name])
    outputs = [tensors[o] for o in graph["outputs"]]
    return keras.Model(inputs, outputs)


def step(msg: str) -> None:
    """A progress line for edgeflower, which shows the lines marked so and logs the rest."""
    print(f"@@ {msg}", flush=True)


def _batches(x: np.ndarray, size: int = 16):
    for i in range(0, len(x), size):
        yield x[i:i + size].astype(np.float32)


def save_outputs(model, evals: dict[str, np.ndarray], out: Path, prefix: str) -> None:
    """Every output of ``model`` on each evaluation set, as PREFIX_NAME.npz (arr_0, arr_1, ... in output order)."""
    for name, x in evals.items():
        outs = [model.predict_on_batch(b) for b in _batches(x)]
        outs = [o if isinstance(o, list) else [o] for o in outs]
        np.savez(out / f"{prefix}_{name}.npz", *[np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]))])


def main() -> None:
    work = Path(sys.argv[1])
    convert = "--convert" in sys.argv[2:]
    out = work / "out"
    out.mkdir(exist_ok=True)
    graph = json.loads((work / "graph.json").read_text())
    npz = np.load(work / "weights.npz")
    weights: dict[str, list] = {}
    for key in sorted(npz.files, key=lambda k: (k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1]))):
        weights.setdefault(key.rsplit("/", 1)[0], []).append(npz[key])
    t0 = time.perf_counter()
    import model_compression_toolkit as mct
    from edgemdt_tpc import get_target_platform_capabilities

    step(f"rebuilding the network in Keras 2 ({len(graph['nodes'])} layers)")
    model = rebuild(graph, weights)
    evals = {p.stem[5:]: np.load(p) for p in sorted(work.glob("eval_*.npy"))}
    info = {"rebuilt_layers": len(model.layers), "steps": {}}
    # the rebuilt float model on the first evaluation set: proves the rebuild matches the trained model
    save_outputs(model, evals, out, "float")
    calib = np.load(work / "calibration.npy")

    def representative():
        for b in _batches(calib, 8):
            yield [b]

    step(f"quantizing with MCT for the IMX500 on {len(calib)} calibration photos")
    tpc = get_target_platform_capabilities(tpc_version="1.0", device_type="imx500")
    t = time.perf_counter()
    quantized, _ = mct.ptq.keras_post_training_quantization(model, representative, target_platform_capabilities=tpc)
    info["steps"]["quantize_s"] = round(time.perf_counter() - t, 1)
    path = out / "model_imx500.keras"
    mct.exporter.keras_export_model(model=quantized, save_model_path=str(path))
    import mct_quantizers

    step("simulating the quantized network on the evaluation photos")
    simulated = mct_quantizers.keras_load_quantized_model(str(path))
    t = time.perf_counter()
    save_outputs(simulated, evals, out, "quantized")
    info["steps"]["simulate_s"] = round(time.perf_counter() - t, 1)
    if convert:
        conv = out / "converted"
        shutil.rmtree(conv, ignore_errors=True)
        step("converting with imxconv-tf (a few minutes)")
        exe = Path(sys.executable).with_name("imxconv-tf")
        t = time.perf_counter()
        proc = subprocess.run([str(exe), "-i", str(path), "-o", str(conv), "--overwrite-output"],
                              capture_output=True, text=True)
        info["steps"]["convert_s"] = round(time.perf_counter() - t, 1)
        (out / "converter.log").write_text(proc.stdout + proc.stderr)
        info["converter_exit"] = proc.returncode
    info["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "info.json").write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
