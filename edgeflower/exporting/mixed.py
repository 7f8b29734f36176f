"""Accuracy-controlled int8 (TFLite and ONNX): keep only the layers that hurt accuracy most in float.

1. Calibrate once, so that every variant below is only a re-quantization of the same calibrated model: seconds,
   not minutes.
   - TFLite: the converter's calibration-only mode, then ``mlir_quantize`` with ``denylisted_nodes`` (what
     TFLite's QuantizationDebugger uses for selective quantization).
   - ONNX: onnxruntime's ``quantize_static`` with a calibration cache, then ``nodes_to_exclude`` (the layers
     kept in float) or ``nodes_to_quantize`` (one layer quantized alone).
2. Rank the layers by how much quantizing each one alone (every other layer in float) moves the class scores on a
   sample of the validation split, against the float model.
3. Return the worst layers to float one at a time until the validation accuracy drop against the float model is
   within the budget; the first variant that passes is the one with the fewest float layers along that order.

Each step's validation accuracy and one-thread latency is recorded, so the report says what every float layer
cost. The TFLite input and outputs stay integer (uint8 or int8, as the full-integer model); the ONNX graph keeps
its float input and outputs with QDQ pairs inside, as any int8 ONNX. The device code and the metadata are the
same as for any int8 artifact.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeflower.errors import ExportError
from edgeflower.exporting import convert
from edgeflower.exporting.gate import judge

SKIP_OPS = {"QUANTIZE", "DEQUANTIZE"}


@dataclass(frozen=True)
class MixedPrecisionOptions:
    """The full-integer options plus the search's bounds (``float_nodes`` is filled in by the search)."""
    input_type: str = "uint8"
    per_channel: bool = True
    max_float_layers: int = 12  # give up after this many layers back in float
    rank_images: int = 64  # validation images used to rank the layers
    float_nodes: tuple[str, ...] = ()


@dataclass(frozen=True)
class OnnxMixedPrecisionOptions(convert.OnnxInt8Options):
    """The int8 ONNX options plus the search's bounds."""
    max_float_layers: int = 12
    rank_images: int = 64


@dataclass
class MixedResult:
    artifact: bytes
    float_nodes: list[str]
    steps: list[dict] = field(default_factory=list)  # one per layer returned to float, in order
    ranking: list[dict] = field(default_factory=list)  # every layer's score when quantized alone
    passed_on_val: bool = False


class Calibrated:
    """A Keras model calibrated once for int8 TFLite, re-quantized with any set of layers kept in float."""

    suffix = ".tflite"

    def __init__(self, model, calibration: np.ndarray, opts: MixedPrecisionOptions):
        if len(calibration) == 0:
            raise ExportError("the calibration set is empty: int8 quantization needs representative images")
        tf, conv = convert._converter(model)  # noqa: SLF001 - the shared converter set-up
        self.tf, self.opts, self.n_outputs = tf, opts, len(model.outputs)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = convert.representative(calibration)
        conv.experimental_mlir_quantizer = True
        conv._experimental_calibrate_only = True  # noqa: SLF001 - as TFLite's QuantizationDebugger does
        try:
            with convert.quiet():
                self.calibrated = conv.convert()
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"int8 calibration failed: {convert._first(exc)}") from exc  # noqa: SLF001
        self.nodes = self._layers(self.quantize(()))

    def quantize(self, float_nodes) -> bytes:
        from tensorflow.lite.python import convert as tfl_convert

        io = self.tf.int8 if self.opts.input_type == "int8" else self.tf.uint8
        try:
            with convert.quiet():
                # fully_quantize=False, as the converter itself calls it: with True, uint8 input and output
                # come out as int8 (measured), unlike the full-integer artifact the device and other clients expect
                flat = tfl_convert.mlir_quantize(self.calibrated, disable_per_channel=not self.opts.per_channel,
                                                 fully_quantize=False, input_data_type=io, output_data_type=io,
                                                 denylisted_nodes=list(float_nodes) or None)
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"int8 quantization with {len(float_nodes)} float layers failed: "
                              f"{convert._first(exc)}") from exc  # noqa: SLF001
        return convert.name_tensors(flat, self.n_outputs)

    def write(self, path: Path, float_nodes=(), only=None) -> None:
        """The variant with ``float_nodes`` in float, or with only the node ``only`` quantized."""
        path.write_bytes(self.quantize([m for m in self.nodes if m != only] if only is not None else float_nodes))

    @staticmethod
    def layer(node: str) -> str:
        return layer_name(node)

    @staticmethod
    def _layers(tflite: bytes) -> list[str]:
        """The computing ops of the full-integer model, by output tensor name (what denylisted_nodes takes)."""
        from tensorflow.lite.python import schema_py_generated as schema
        from tensorflow.lite.tools import flatbuffer_utils

        m = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
        codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if isinstance(v, int)}
        sub, out = m.subgraphs[0], []
        for op in sub.operators:
            code = m.operatorCodes[op.opcodeIndex]
            name = codes.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
            if name in SKIP_OPS or not len(op.outputs):
                continue
            tname = sub.tensors[op.outputs[0]].name.decode()
            if tname not in out:
                out.append(tname)
        return out


def layer_name(tensor: str) -> str:
    """A readable name for a fused op's output tensor, e.g. 'model/blocks_0_depthwise_conv_1/depthwise;...'
    -> 'blocks_0_depthwise_conv' (the Keras layer of its main op)."""
    parts = tensor.split(";")
    main = next((p for p in parts if any(k in p for k in ("conv", "MatMul", "depthwise", "Add", "Mean"))), parts[0])
    bits = main.split("/")
    name = bits[-2] if len(bits) >= 2 else bits[-1]
    return re.sub(r"_\d+$", "", name)


# ONNX ops that move or clip data: quantizing one alone only rounds a tensor its neighbours already round, and
# onnxruntime gives them the scale of their input; the search ranks the ops that compute.
ONNX_PASSIVE_OPS = {"Clip", "Relu", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Slice", "Split",
                    "Gather", "GatherElements", "Pad", "Resize", "MaxPool", "TopK", "Where", "CumSum", "Identity",
                    "Concat", "Min", "Max"}


class OnnxCalibrated:
    """A float ONNX model pre-processed and calibrated once, re-quantized with any set of nodes kept in float."""

    suffix = ".onnx"

    def __init__(self, float_path: Path, calibration: np.ndarray, opts: convert.OnnxInt8Options, workdir: Path):
        import onnx
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

        self.opts, self.calibration = opts, calibration
        self.src = convert.onnx_preprocess(float_path, workdir / "mixed_pre.onnx")
        self.cache = workdir / "mixed_calibration.json"
        convert.onnx_quantize(self.src, workdir / "mixed_full.onnx", calibration, opts, cache=self.cache)
        model = onnx.load(str(self.src))
        keep_float = set(convert.always_float_nodes(model))
        if opts.exclude_last:
            keep_float |= set(convert._classifier_layer(model))  # noqa: SLF001
        quantizable = (set(QDQRegistry) | set(QLinearOpsRegistry)) - ONNX_PASSIVE_OPS
        self.nodes = [n.name for n in model.graph.node if n.op_type in quantizable and n.name not in keep_float]
        self._names = {n.name: _onnx_layer(n) for n in model.graph.node}

    def write(self, path: Path, float_nodes=(), only=None) -> None:
        convert.onnx_quantize(self.src, path, self.calibration, self.opts, float_nodes=float_nodes,
                              only_nodes=[only] if only is not None else None, cache=self.cache)

    def layer(self, node: str) -> str:
        return self._names.get(node, node)


def _onnx_layer(node) -> str:
    """The Keras layer an ONNX node comes from, e.g. '.../blocks_0_depthwise_conv_1/depthwise' ->
    'blocks_0_depthwise_conv'. tf2onnx names some fused convolutions 'Conv__331'; their weight's name
    ('.../conv_stem_1/convolution/merged_input:0') still says the layer."""
    for text in [node.name, *node.input[1:], *node.output]:
        bits = text.split("/")
        for part in reversed(bits[:-1]):  # the innermost Keras layer (they end in _<n> in a traced graph)
            if re.search(r"_\d+$", part):
                return re.sub(r"_\d+$", "", part)
    return node.name


def _probs(path: Path, images: np.ndarray) -> np.ndarray:
    from edgeflower.edge.classifier import Classifier

    return Classifier(path, threshold=0.0).predict_batch(images)


def _p50_ms(path: Path, image: np.ndarray, runs: int = 30) -> float:
    from edgeflower.edge.classifier import Classifier

    clf = Classifier(path, threshold=0.0, threads=1)
    for _ in range(3):
        clf.scores(image)
    return float(np.median([clf.scores(image)[2] for _ in range(runs)]))


def search(model, calibration: np.ndarray, opts: MixedPrecisionOptions, val_x, val_y: np.ndarray,
           float_probs_val: np.ndarray, max_drop_pts: float, workdir: Path,
           say: Callable[[str], None] = lambda m: None) -> MixedResult:
    """The accuracy-controlled search for int8 TFLite (module docstring). ``float_probs_val``: the float model's
    class scores on ``val_x``, the reference for both the ranking and the drop."""
    return search_variants(Calibrated(model, calibration, opts), opts, val_x, val_y, float_probs_val,
                           max_drop_pts, workdir, say)


def search_onnx(float_onnx: Path, calibration: np.ndarray, opts: OnnxMixedPrecisionOptions, val_x, val_y,
                float_probs_val: np.ndarray, max_drop_pts: float, workdir: Path,
                say: Callable[[str], None] = lambda m: None) -> MixedResult:
    """The same search for int8 ONNX, from the float ONNX file."""
    if len(calibration) == 0:
        raise ExportError("the calibration set is empty: int8 quantization needs representative images")
    return search_variants(OnnxCalibrated(float_onnx, calibration, opts, workdir), opts, val_x, val_y,
                           float_probs_val, max_drop_pts, workdir, say)


def search_variants(cal, opts, val_x, val_y: np.ndarray, float_probs_val: np.ndarray, max_drop_pts: float,
                    workdir: Path, say: Callable[[str], None] = lambda m: None) -> MixedResult:
    """``cal``: a calibrated model (``Calibrated`` or ``OnnxCalibrated``) with its ``nodes``, ``write`` and
    ``layer``; ``opts``: its ``max_float_layers`` and ``rank_images``."""
    t0 = time.perf_counter()
    ref_pred = float_probs_val.argmax(1)
    n = len(val_y)
    # the ranking sample: evenly spread over the validation split (its order is by class)
    pick = np.unique(np.linspace(0, n - 1, min(opts.rank_images, n)).round().astype(int))
    sample, ref_sample = np.asarray(val_x[pick]), float_probs_val[pick]
    path = workdir / ("mixed_try" + cal.suffix)
    ranking: list[dict] = []

    def rank() -> None:
        say(f"accuracy-controlled int8: ranking {len(cal.nodes)} layers, each quantized alone, on {len(pick)} "
            "validation images")
        for node in cal.nodes:
            cal.write(path, only=node)
            err = float(np.abs(_probs(path, sample) - ref_sample).sum(1).mean())
            ranking.append({"layer": cal.layer(node), "tensor": node, "score_change": err})
        ranking.sort(key=lambda r: -r["score_change"])

    image = np.asarray(val_x[:1])
    float_nodes: list[str] = []
    steps, best = [], None
    for k in range(0, min(opts.max_float_layers, len(cal.nodes)) + 1):
        if k:
            if not ranking:  # only when the all-int8 model is over budget
                rank()
            float_nodes.append(ranking[k - 1]["tensor"])
        cal.write(path, float_nodes=float_nodes)
        raw = path.read_bytes()
        pred = _probs(path, np.asarray(val_x)).argmax(1)
        verdict = judge(ref_pred == val_y, pred == val_y, ref_pred, pred, max_drop_pts)  # the export's one rule
        acc, drop = verdict.accuracy, verdict.drop_pts
        step = {"float_layers": k, "layer": ranking[k - 1]["layer"] if k else None,
                "tensor": float_nodes[-1] if k else None, "val_accuracy": acc,
                "val_drop_pts": drop, "val_drop_lower_pts": verdict.drop_lower_pts, "passed": verdict.passed,
                "p50_ms_1_thread": _p50_ms(path, image)}
        steps.append(step)
        say(f"accuracy-controlled int8: {k} layer(s) in float, validation drop {drop:.2f} pts "
            f"({'passes' if verdict.passed else 'fails'} the gate's rule)")
        if best is None or acc > best[1]:
            best = (raw, acc, list(float_nodes))
        if verdict.passed:
            return MixedResult(raw, list(float_nodes), steps, ranking, passed_on_val=True)
    say(f"accuracy-controlled int8: still over budget with {len(float_nodes)} layers in float "
        f"({time.perf_counter() - t0:.0f} s); keeping the best")
    return MixedResult(best[0], best[2], steps, ranking, passed_on_val=False)
