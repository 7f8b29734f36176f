"""Converters. Each returns the artifact's bytes or writes to a given (temporary) path; no file is final here."""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from edgeflower.errors import ExportError
from edgeflower.util.deps import require

log = logging.getLogger(__name__)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The converters print pages of signatures to stdout; keep them in the debug log instead. Their C++ parts
    (the quantizer's "fully_quantize: 0, ...") write to the file descriptors: hidden too, unless -v."""
    from edgeflower.util.quiet import quiet_fds

    buf = io.StringIO()
    with quiet_fds(), contextlib.redirect_stdout(buf):
        yield
    if buf.getvalue():
        log.debug("converter output:\n%s", buf.getvalue()[-4000:])


@dataclass(frozen=True)
class TFLiteInt8Options:
    input_type: str = "uint8"  # or "int8"
    per_channel: bool = True
    float_output: bool = False  # dequantize the output inside the model (float32 output tensor)


def _converter(model):
    tf = require("tensorflow", "TFLite conversion")
    try:
        return tf, tf.lite.TFLiteConverter.from_keras_model(model)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"TensorFlow cannot trace the model for TFLite ({_first(exc)}); models with custom "
                          "layers need serializable TensorFlow ops") from exc


def _first(exc: Exception) -> str:
    lines = [ln for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:300]


# The names every artifact gives its tensors, in this order: class scores first, then the unknown similarity.
INPUT_NAME = "image"
OUTPUT_NAMES = ("probs", "similarity")


def name_tensors(tflite: bytes, n_outputs: int) -> bytes:
    """Put the outputs in the Keras model's order and name them ``probs`` (, ``similarity``).

    The TFLite converter lists a two-output model's subgraph outputs in another order than the model's (the
    similarity first), and names them ``StatefulPartitionedCall_1:1``; MediaPipe Tasks, the Task Library and a plain
    ``get_output_details()[0]`` loop read output 0 as the class scores. The signature keeps the model's order
    (``output_0`` is the model's first output), so the subgraph outputs are set to the signature's order, and the
    signature keys and tensor names become ``probs``/``similarity`` (input: ``image``). Nothing computed changes.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    if n_outputs > len(OUTPUT_NAMES):
        raise ExportError(f"the model has {n_outputs} outputs; edgeflower exports at most {len(OUTPUT_NAMES)}")
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    if len(model.subgraphs) != 1 or not model.signatureDefs or len(model.signatureDefs) != 1:
        raise ExportError("the converted TFLite model has more than one subgraph or signature")
    sub, sig = model.subgraphs[0], model.signatureDefs[0]
    keys = [o.name.decode() for o in sig.outputs]
    if sorted(keys) != [f"output_{i}" for i in range(n_outputs)]:
        raise ExportError(f"unexpected TFLite signature outputs {keys}: expected output_0 .. output_{n_outputs - 1}")
    outs = sorted(sig.outputs, key=lambda o: int(o.name.decode().split("_")[1]))
    if sorted(int(i) for i in sub.outputs) != sorted(o.tensorIndex for o in outs):
        raise ExportError("the TFLite signature does not list the subgraph's outputs")
    sub.outputs = np.array([o.tensorIndex for o in outs], dtype=np.int32)
    sig.outputs = outs
    for o, name in zip(outs, OUTPUT_NAMES):
        o.name = name.encode()
        sub.tensors[o.tensorIndex].name = name.encode()
    if len(sig.inputs) == 1:
        sig.inputs[0].name = INPUT_NAME.encode()
        sub.tensors[sig.inputs[0].tensorIndex].name = INPUT_NAME.encode()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _convert(conv, n_outputs: int, failure: str) -> bytes:
    """Run a configured TFLite converter quietly; its outputs in the model's order and named. A converter error
    becomes an ExportError that starts with ``failure``."""
    try:
        with quiet():
            return name_tensors(conv.convert(), n_outputs)
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - converter raises many types
        raise ExportError(failure.format(_first(exc))) from exc


def representative(calibration: np.ndarray):
    """The converter's representative dataset: one float32 image at a time."""
    def gen():
        for i in range(len(calibration)):
            yield [calibration[i:i + 1].astype(np.float32)]
    return gen


def tflite_float(model) -> bytes:
    tf, conv = _converter(model)
    return _convert(conv, len(model.outputs), "TFLite conversion failed: {}. Layers outside TFLite's builtin ops "
                    "(custom layers, tf.py_function) cannot be converted")


def tflite_fp16(model) -> bytes:
    """Float16 weights, float32 input, output and arithmetic (the weights are dequantized when loaded): about half
    the float file, with no calibration."""
    tf, conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_types = [tf.float16]
    return _convert(conv, len(model.outputs), "float16 TFLite conversion failed: {}")


def tflite_int8(model, calibration: np.ndarray, opts: TFLiteInt8Options = TFLiteInt8Options()) -> bytes:
    """Full-integer post-training quantization with ``calibration`` (uint8 images, N x H x W x 3)."""
    if len(calibration) == 0:
        raise ExportError("the calibration set is empty: int8 quantization needs representative images "
                          "(use --calibration N with N >= 1 and a non-empty training split)")
    tf, conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative(calibration)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8 if opts.input_type == "int8" else tf.uint8
    conv.inference_output_type = tf.float32 if opts.float_output else conv.inference_input_type
    if not opts.per_channel:
        conv._experimental_disable_per_channel = True  # noqa: SLF001 - the documented way to get per-tensor
    return _convert(conv, len(model.outputs), "int8 TFLite conversion failed: {}")


def onnx_float(model, path: Path, opset: int = 17) -> None:
    tf = require("tensorflow", "ONNX export")
    tf2onnx = require("tf2onnx", "ONNX export")
    onnx = require("onnx", "ONNX export")
    h, w = int(model.inputs[0].shape[1]), int(model.inputs[0].shape[2])
    sig = [tf.TensorSpec((None, h, w, 3), tf.float32, name="image")]
    try:
        with quiet():
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=sig, opset=opset)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"tf2onnx conversion failed: {_first(exc)}") from exc
    _name_onnx_outputs(proto, onnx)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"the converted ONNX model fails onnx.checker: {_first(exc)}") from exc
    onnx.save(proto, os.fspath(path))


def _name_onnx_outputs(proto, onnx) -> None:
    """Name the graph outputs ``probs`` (, ``similarity``) in the model's order, whatever the Keras layers were
    called (an Identity node renames one where needed)."""
    if len(proto.graph.output) > len(OUTPUT_NAMES):
        raise ExportError(f"the model has {len(proto.graph.output)} outputs; edgeflower exports at most "
                          f"{len(OUTPUT_NAMES)}")
    for out, name in zip(proto.graph.output, OUTPUT_NAMES):
        if out.name != name:
            proto.graph.node.append(onnx.helper.make_node("Identity", [out.name], [name], name=f"{name}_identity"))
            out.name = name


@dataclass(frozen=True)
class OnnxInt8Options:
    activation_type: str = "uint8"  # uint8 activations are the faster on x86 and ARM (see GUIDE.md)
    per_channel: bool = True
    exclude_last: bool = False  # keep the final classifier layer in float
    method: str = "minmax"  # or "percentile" / "entropy"
    # int8 weights. On x86 CPUs without VNNI, onnxruntime's uint8 x int8 kernels saturate with 8-bit weights; the
    # edge runtime turns on session.x64quantprecision for those (exact, slower) and not for 7-bit weights
    # (reduce_range), which cannot saturate: the export tries 7 bits first and keeps 8 when 7 lose the gate
    # (formats._onnx_int8_remedies; docs/studies/onnx-reduce-range.md: MobileNetV2 88.89% with 7 bits against
    # 90.56% with 8; uint8 weights are exact but 9x slower on x86 for EfficientNet-Lite0).
    weight_type: str = "int8"  # or "uint8"
    reduce_range: bool = False  # 7-bit weights


class _Reader:
    """onnxruntime CalibrationDataReader over uint8 images (fed as float32, as the float model expects)."""

    batch_size = 4

    def __init__(self, images: np.ndarray, input_name: str):
        self.images, self.name, self.batch, self.i = images, input_name, self.batch_size, 0

    def get_next(self):
        if self.i >= len(self.images):
            return None
        x = self.images[self.i:self.i + self.batch].astype(np.float32)
        self.i += self.batch
        return {self.name: x}

    def rewind(self):
        self.i = 0


def onnx_int8(float_path: Path, out_path: Path, calibration: np.ndarray, opts: OnnxInt8Options = OnnxInt8Options(),
              workdir: Path | None = None) -> None:
    """Static QDQ quantization with per-channel 8-bit int8 weights and uint8 activations (never dynamic
    quantization)."""
    if len(calibration) == 0:
        raise ExportError("the calibration set is empty: int8 quantization needs representative images")
    workdir = workdir or out_path.parent
    pre = workdir / (out_path.name + ".pre.onnx")
    try:
        src = onnx_preprocess(float_path, pre)
        onnx_quantize(src, out_path, calibration, opts)
    finally:
        _remove_onnx(pre)


def onnx_preprocess(float_path: Path, pre: Path) -> Path:
    """onnxruntime's quantization pre-processing (shape inference, graph optimisation) into ``pre``; the float
    model itself when it fails (it is an optimisation, not a requirement)."""
    require("onnxruntime.quantization", "ONNX int8 quantization")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(os.fspath(float_path), os.fspath(pre), skip_symbolic_shape=False)
        return pre
    except Exception as exc:  # noqa: BLE001
        log.warning("onnx quant_pre_process failed (%s); quantizing the unprocessed model", _first(exc))
        return float_path


def _remove_onnx(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".data")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def always_float_nodes(model) -> list[str]:
    """Nodes that every int8 ONNX keeps in float. The unknown score's L2 normalization: quantizing x^2 and 1/|x|
    per tensor loses the small feature vectors (measured: similarities off by up to 0.4); it is a few vector
    ops, the bank MatMul after it is quantized as usual."""
    from edgeflower.exporting.ood import NORMALIZE_LAYER

    return [n.name for n in model.graph.node if NORMALIZE_LAYER in n.name]


def onnx_quantize(src: Path, out_path: Path, calibration: np.ndarray | None, opts: OnnxInt8Options,
                  float_nodes=(), only_nodes=None, cache: Path | None = None) -> None:
    """Quantize the pre-processed float model ``src``: every quantizable node but ``float_nodes`` (and those
    ``always_float_nodes`` names), or only ``only_nodes`` when given. With ``cache`` the activation ranges are
    computed from ``calibration`` once, saved there, and read back by later calls (onnxruntime's
    ``calibration_cache_path``): re-quantizing with other float nodes takes seconds instead of a calibration
    pass. Pass ``calibration`` anyway: onnxruntime before 1.32 has no cache and calibrates every time."""
    q = require("onnxruntime.quantization", "ONNX int8 quantization")
    onnx = require("onnx", "ONNX int8 quantization")
    if cache is not None and "calibration_cache_path" not in inspect.signature(q.quantize_static).parameters:
        cache = None  # onnxruntime before 1.32: every call calibrates again (slower, the same ranges)
    cached = cache is not None and cache.is_file()
    if not cached and (calibration is None or len(calibration) == 0):
        raise ExportError("the calibration set is empty: int8 quantization needs representative images")
    try:
        model = onnx.load(os.fspath(src))
        input_name = model.graph.input[0].name
        exclude = always_float_nodes(model) + list(float_nodes)
        if opts.exclude_last:
            exclude += _classifier_layer(model)
        method = {"minmax": q.CalibrationMethod.MinMax, "percentile": q.CalibrationMethod.Percentile,
                  "entropy": q.CalibrationMethod.Entropy}[opts.method]
        act = q.QuantType.QUInt8 if opts.activation_type == "uint8" else q.QuantType.QInt8
        extra = {"ActivationSymmetric": opts.activation_type == "int8"}
        reader = None
        if not cached:
            # Calibration keeps every intermediate activation of the batches it has seen; merging the ranges
            # every few batches keeps MobileNetV2's peak memory near 1 GB instead of 7+ GB. onnxruntime fails
            # ("No data is collected") when the batch count is a multiple of that number, so pick one that is
            # not.
            n_batches = -(-len(calibration) // _Reader.batch_size)
            extra["CalibMaxIntermediateOutputs"] = next(k for k in range(2, n_batches + 2) if n_batches % k)
            reader = _Reader(calibration, input_name)
        kw = {"calibration_cache_path": os.fspath(cache)} if cache is not None else {}
        with quiet():
            q.quantize_static(
                os.fspath(src), os.fspath(out_path), reader,
                quant_format=q.QuantFormat.QDQ, activation_type=act,
                weight_type=q.QuantType.QUInt8 if opts.weight_type == "uint8" else q.QuantType.QInt8,
                per_channel=opts.per_channel, reduce_range=opts.reduce_range, calibrate_method=method,
                nodes_to_quantize=list(only_nodes) if only_nodes is not None else None,
                nodes_to_exclude=exclude, extra_options=extra, **kw,
            )
    except ExportError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"onnxruntime static quantization failed: {_first(exc)}") from exc


def _classifier_layer(model) -> list[str]:
    """Names of the Softmax nodes and of the MatMul/Gemm/Conv that feeds each (through Add/Reshape/...).

    Walking back from the Softmax finds the classifier even when other layers (the unknown score's feature
    bank) come later in the graph."""
    producer = {o: n for n in model.graph.node for o in n.output}
    names = []
    for sm in (n for n in model.graph.node if n.op_type == "Softmax"):
        names.append(sm.name)
        frontier, seen = [sm], 0
        while frontier and seen < 8:
            node = frontier.pop()
            seen += 1
            for i in node.input:
                p = producer.get(i)
                if p is None:
                    continue
                if p.op_type in ("MatMul", "Gemm", "Conv"):
                    names.append(p.name)
                    frontier = []
                    break
                frontier.append(p)
    if len(names) == 0:
        ops = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm", "Conv")]
        names = [ops[-1].name] if ops else []
    return names


def embed_onnx_metadata(path: Path, out: Path, metadata: dict) -> None:
    """Copy ``path`` to ``out`` with edgeflower's metadata in ``metadata_props``."""
    import json

    onnx = require("onnx", "ONNX metadata")
    from edgeflower.edge.metadata import METADATA_KEY

    model = onnx.load(os.fspath(path))
    props = {p.key: p.value for p in model.metadata_props}
    props[METADATA_KEY] = json.dumps(metadata, sort_keys=True)
    props["labels"] = json.dumps(metadata.get("labels", []))
    del model.metadata_props[:]
    for k, v in props.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    onnx.save(model, os.fspath(out))
