"""Make the small model, artifacts and images that scripts/pi-emulated-check.sh compares across machines.

    python scripts/pi_fixture.py OUT_DIR [--data DIR]

Trains the study's CNN at 32x32 on synthetic colour images (blue / green / red, as in the export tests: fast, and
no weights or dataset needed) and an EfficientNet-Lite0 head at 64 px on the same images (its ImageNet weights come
from edgeflower[lite]), exports float and int8 TFLite and ONNX of both without the accuracy gate (the point is
equality across machines, not accuracy), and copies a handful of real test photos (synthetic ones when the
dataset is not available). Real photos get varied colour "classes", so wrong int8 kernels cannot hide.

The fixture is reproducible: seeded data and weights, and TensorFlow's op determinism on. OUT_DIR/fingerprint.json
holds the sha256 of the trained weights, of every TFLite file, of what each ONNX graph computes (tf2onnx's internal
names vary from process to process, see onnx_graph_digest) and of the photos, so two builds can be compared and a
failure rerun on the same model.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COLOURS = {"blue": (40, 60, 200), "green": (40, 180, 60), "red": (210, 40, 40)}


def synthetic(root: Path, per_class: int = 30) -> None:
    for k, (c, colour) in enumerate(COLOURS.items()):
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng(1000 * k + i)
            arr = np.array(colour, np.float32) + rng.normal(0, 25, (32, 40, 3))
            arr[:, ::4] *= 0.8
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(root / c / f"{c}_{i:03d}.jpg", quality=95)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def onnx_graph_digest(model) -> str:
    """A hash of what an ONNX graph computes, blind to the names of its internal values and to node order.

    tf2onnx names folded constants from a counter run over sets of graph objects, so two builds of the same model
    differ in those names (and in the order of initializers) from process to process. The metadata is left out too:
    it names the source run's folder. Each value is hashed by its producer (op, attributes, the hashes of its inputs)
    or by its bytes (initializers); the digest covers the graph's named inputs and outputs.
    """
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    producer = {o: (n, k) for n in g.node for k, o in enumerate(n.output)}
    memo: dict[str, str] = {}

    def h(name: str) -> str:
        if name not in memo:
            if name in inits:
                a = inits[name]
                memo[name] = _sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes())
            elif name in producer:
                n, k = producer[name]
                attrs = b"".join(a.SerializeToString(deterministic=True)
                                 for a in sorted(n.attribute, key=lambda a: a.name))
                memo[name] = _sha256(f"{n.domain}:{n.op_type}:{k}:".encode() + attrs
                                     + ",".join(h(i) if i else "-" for i in n.input).encode())
            else:  # a graph input
                memo[name] = _sha256(f"input:{name}".encode())
        return memo[name]

    return _sha256(json.dumps({o.name: h(o.name) for o in g.output}, sort_keys=True).encode())


def tflite_model_digest(data: bytes) -> str:
    """A hash of what a .tflite computes: the flatbuffer without its metadata (the standard metadata and the
    associated edgeflower.json name the source run's folder)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    for m in model.metadata or []:
        model.buffers[m.buffer].data = None
    model.metadata = None
    return _sha256(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


def fingerprint(out: Path) -> dict:
    """sha256 of what decides the comparison: the trained weights, the artifacts and the photos."""
    import zipfile

    import onnx

    files = {f"{run.name}/model.weights.h5": _sha256(zipfile.ZipFile(run / "model.keras").read("model.weights.h5"))
             for run in sorted(out.glob("run*"))}
    for p in sorted((out / "export").iterdir()):
        if p.suffix == ".tflite":
            files[f"export/{p.name} (model)"] = tflite_model_digest(p.read_bytes())
        elif p.suffix == ".onnx":
            files[f"export/{p.name} (graph)"] = onnx_graph_digest(onnx.load(str(p)))
    for p in sorted((out / "images").iterdir()):
        files[f"images/{p.name}"] = _sha256(p.read_bytes())
    return {"fingerprint": _sha256(json.dumps(files, sort_keys=True).encode()), "files": files}


def main() -> None:
    os.environ["TF_DETERMINISTIC_OPS"] = "1"
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--data", default=None)
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--no-lite", action="store_true", help="leave out the EfficientNet-Lite0 artifacts")
    args = ap.parse_args()
    os.environ.setdefault("EDGEFLOWER_NO_PROGRESS", "1")
    import tensorflow as tf

    from edgeflower.data.source import resolve_data_dir
    from edgeflower.data.split import load_manifest, make_split, split_items, write_manifest
    from edgeflower.edge import Classifier
    from edgeflower.errors import DataError
    from edgeflower.exporting.pipeline import ExportConfig, export
    from edgeflower.training.loop import TrainConfig, train

    tf.config.experimental.enable_op_determinism()

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    synth = out / "synth"
    synthetic(synth)
    split = write_manifest(make_split(synth, test_supports={c: 6 for c in COLOURS}, show_progress=False),
                           out / "split.json")
    r = train(TrainConfig(model="cnn", data=str(synth), split=str(split), out=str(out / "run"), epochs=8,
                          input_size=32, batch_size=8, learning_rate=3e-3, patience=8, verbose=0, seed=42,
                          use_outliers=False))  # the fixture compares machines; the outlier set plays no part
    export(ExportConfig(target=str(r.run_dir), out=str(out / "export"), int8=True, onnx=True, calibration=30,
                        data=str(synth), split=str(split), max_drop=100.0, require_float_agreement=False))
    if not args.no_lite:
        # EfficientNet-Lite0 at 64 px (head on its ImageNet features): the backbone's depthwise and ReLU6 kernels
        # on arm64 too. Its four artifacts join the others as lite0_<name>.
        r = train(TrainConfig(model="efficientnet_lite0", data=str(synth), split=str(split), out=str(out / "run_lite0"),
                              epochs=6, input_size=64, batch_size=16, learning_rate=3e-3, verbose=0, seed=42,
                              augment=False, label_smoothing=0.0, use_outliers=False))
        tmp = out / "export_lite0"
        export(ExportConfig(target=str(r.run_dir), out=str(tmp), int8=True, onnx=True, calibration=30,
                            data=str(synth), split=str(split), max_drop=100.0, require_float_agreement=False))
        for p in sorted(tmp.iterdir()):
            if p.name.startswith("model"):  # the artifacts and their sidecars (model_int8.tflite.json, ...)
                p.rename(out / "export" / f"lite0_{p.name}")
        shutil.rmtree(tmp)
    try:
        root = resolve_data_dir(args.data, download=False)
        items = split_items(load_manifest(), "test")
        step = max(1, len(items) // args.images)
        for rel, _, _ in items[::step][: args.images]:
            shutil.copy(root / rel, out / "images" / rel.replace("/", "__"))
    except DataError as exc:
        print(f"no dataset ({exc}); using synthetic photos", file=sys.stderr)
        for c in COLOURS:
            for f in sorted((synth / c).iterdir())[:4]:
                shutil.copy(f, out / "images" / f"{c}__{f.name}")
    # the comparison is only worth something if the model tells the photos apart
    clf = Classifier(out / "export" / "model_int8.tflite")
    labels = {clf.classify(p).index for p in (out / "images").iterdir()}
    if len(labels) < 2:
        sys.exit(f"the fixture model predicts one class for every photo ({labels}); it cannot reveal wrong kernels")
    fp = fingerprint(out)
    (out / "fingerprint.json").write_text(json.dumps(fp, indent=1, sort_keys=True) + "\n")
    print(out, f"({len(labels)} distinct classes on {len(list((out / 'images').iterdir()))} photos; "
               f"fixture fingerprint {fp['fingerprint'][:16]})")


if __name__ == "__main__":
    main()
