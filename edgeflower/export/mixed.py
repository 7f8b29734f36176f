"""Accuracy-controlled int8 TFLite: keep only the layers that hurt accuracy most in float.

1. Calibrate once (the converter's calibration-only mode), so that every variant below is only a re-quantization
   of the same calibrated model (``mlir_quantize`` with ``denylisted_nodes``, what TFLite's QuantizationDebugger
   uses for selective quantization): seconds, not minutes.
2. Rank the layers by how much quantizing each one alone (every other layer in float) moves the class scores on a
   sample of the validation split, against the float model.
3. Return the worst layers to float one at a time until the validation accuracy drop against the float model is
   within the budget; the first variant that passes is the one with the fewest float layers along that order.

Each step's validation accuracy and one-thread latency is recorded, so the report says what every float layer
cost. The input and outputs stay integer (uint8 or int8, as the full-integer model), so the device code and the
metadata are the same as for any int8 artifact.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgeflower.errors import ExportError
from edgeflower.export import convert

SKIP_OPS = {"QUANTIZE", "DEQUANTIZE"}


@dataclass(frozen=True)
class MixedPrecisionOptions:
    """The full-integer options plus the search's bounds (``float_nodes`` is filled in by the search)."""
    input_type: str = "uint8"
    per_channel: bool = True
    max_float_layers: int = 12  # give up after this many layers back in float
    rank_images: int = 64  # validation images used to rank the layers
    float_nodes: tuple[str, ...] = ()


@dataclass
class MixedResult:
    tflite: bytes
    float_nodes: list[str]
    steps: list[dict] = field(default_factory=list)  # one per layer returned to float, in order
    ranking: list[dict] = field(default_factory=list)  # every layer's score when quantized alone
    passed_on_val: bool = False


class Calibrated:
    """A model calibrated once, re-quantized with any set of layers kept in float."""

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
                flat = tfl_convert.mlir_quantize(self.calibrated, disable_per_channel=not self.opts.per_channel,
                                                 fully_quantize=True, input_data_type=io, output_data_type=io,
                                                 denylisted_nodes=list(float_nodes) or None)
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"int8 quantization with {len(float_nodes)} float layers failed: "
                              f"{convert._first(exc)}") from exc  # noqa: SLF001
        return convert.name_tensors(flat, self.n_outputs)

    @staticmethod
    def _layers(tflite: bytes) -> list[str]:
        """The computing ops of the full-integer model, by output tensor name (what denylisted_nodes takes)."""
        from tensorflow.lite.tools import flatbuffer_utils

        from tensorflow.lite.python import schema_py_generated as schema

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
    """The accuracy-controlled search (module docstring). ``float_probs_val``: the float model's class scores on
    ``val_x``, the reference for both the ranking and the drop."""
    t0 = time.perf_counter()
    cal = Calibrated(model, calibration, opts)
    ref_acc = float((float_probs_val.argmax(1) == val_y).mean())
    n = len(val_y)
    # the ranking sample: evenly spread over the validation split (its order is by class)
    pick = np.unique(np.linspace(0, n - 1, min(opts.rank_images, n)).round().astype(int))
    sample, ref_sample = np.asarray(val_x[pick]), float_probs_val[pick]
    path = workdir / "mixed_try.tflite"
    ranking: list[dict] = []

    def rank() -> None:
        say(f"accuracy-controlled int8: ranking {len(cal.nodes)} layers, each quantized alone, on {len(pick)} "
            "validation images")
        for node in cal.nodes:
            path.write_bytes(cal.quantize([m for m in cal.nodes if m != node]))
            err = float(np.abs(_probs(path, sample) - ref_sample).sum(1).mean())
            ranking.append({"layer": layer_name(node), "tensor": node, "score_change": err})
        ranking.sort(key=lambda r: -r["score_change"])

    image = np.asarray(val_x[:1])
    float_nodes: list[str] = []
    steps, best = [], None
    for k in range(0, min(opts.max_float_layers, len(cal.nodes)) + 1):
        if k:
            if not ranking:  # only when the all-int8 model is over budget
                rank()
            float_nodes.append(ranking[k - 1]["tensor"])
        flat = cal.quantize(float_nodes)
        path.write_bytes(flat)
        acc = float((_probs(path, np.asarray(val_x)).argmax(1) == val_y).mean())
        drop = (ref_acc - acc) * 100
        step = {"float_layers": k, "layer": ranking[k - 1]["layer"] if k else None,
                "tensor": float_nodes[-1] if k else None, "val_accuracy": acc,
                "val_drop_pts": drop, "p50_ms_1_thread": _p50_ms(path, image)}
        steps.append(step)
        say(f"accuracy-controlled int8: {k} layer(s) in float, validation drop {drop:.2f} pts")
        if best is None or acc > best[1]:
            best = (flat, acc, list(float_nodes))
        if drop <= max_drop_pts + 1e-9:
            return MixedResult(flat, list(float_nodes), steps, ranking, passed_on_val=True)
    say(f"accuracy-controlled int8: still over budget with {len(float_nodes)} layers in float "
        f"({time.perf_counter() - t0:.0f} s); keeping the best")
    return MixedResult(best[0], best[2], steps, ranking, passed_on_val=False)
