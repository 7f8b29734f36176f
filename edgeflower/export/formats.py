"""The export formats as a table of steps: adding one is one entry and its build function.

Each ``FormatSpec`` says what it needs (artifacts built before it, calibration images), how to build it, the
runtime that checks it, and the remedies ``--auto`` may try. ``pipeline.export`` resolves the requested formats
and their dependencies, runs the builds in order, and checks and gates every requested artifact the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeflower.errors import ExportError


class Format(str, Enum):
    TFLITE_FLOAT = "tflite_float"
    TFLITE_FP16 = "tflite_fp16"
    TFLITE_INT8 = "tflite_int8"
    ONNX_FLOAT = "onnx_float"
    ONNX_INT8 = "onnx_int8"
    IMX500 = "imx500"  # the Raspberry Pi AI Camera: built and simulated in a side environment (export/imx500.py)


@dataclass(frozen=True)
class BuildOptions:
    """The export options a build or its remedies read: the fields of ``pipeline.ExportConfig`` of the same names
    (this module cannot import pipeline, which imports it)."""
    max_drop: float  # percentage points: the accuracy-controlled remedy's budget on the validation split
    input_type: str  # TFLite int8 input: "uint8" or "int8"
    onnx_activation: str  # ONNX int8 activations: "uint8" or "int8"
    calibration: int  # calibration images
    calibration_seed: int
    auto: bool  # try the remedies when the default fails
    mixed_precision: bool  # try the accuracy-controlled remedy (layers back to float)

    @classmethod
    def of(cls, cfg: Any) -> BuildOptions:
        """The options from any object with these attributes (an ExportConfig)."""
        return cls(**{f.name: getattr(cfg, f.name) for f in fields(cls)})


@dataclass
class BuildContext:
    """What a build may use: the model to convert, the export's options, a scratch folder, the calibration
    images (a stratified sample of the training split; ``sample`` draws others) and the raw files of the
    artifacts built before it."""
    model: Any
    opts: BuildOptions
    tmp: Path
    say: Callable[[str], None]
    calib: np.ndarray | None = None
    sample: Callable[[int, int], np.ndarray] | None = None  # (n, seed) -> calibration images
    built: dict[Format, Path] = field(default_factory=dict)
    val_x: Any = None  # the validation images and labels (the accuracy-controlled remedy's budget is on val)
    val_y: np.ndarray | None = None
    _float_val_probs: np.ndarray | None = None

    def float_val_probs(self) -> np.ndarray:
        """The float model's class scores on the validation images: the float TFLite or ONNX built before (the
        two agree to float32 rounding), else a float TFLite built here."""
        if self._float_val_probs is None:
            from edgeflower.edge.classifier import Classifier
            from edgeflower.export import convert

            path = self.built.get(Format.TFLITE_FLOAT) or self.built.get(Format.ONNX_FLOAT)
            if path is None:
                path = self.tmp / "reference_float.tflite"
                path.write_bytes(convert.tflite_float(self.model))
            self._float_val_probs = Classifier(path, threshold=0.0).predict_batch(self.val_x)
        return self._float_val_probs


@dataclass(frozen=True)
class Candidate:
    """One way to build an artifact: a label for the report, the converter's options, the calibration images."""
    label: str
    options: Any = None
    calib: np.ndarray | None = None


@dataclass(frozen=True)
class FormatSpec:
    fmt: Format
    filename: str
    failed_filename: str  # a failed artifact is kept under a name nobody mistakes for a passing one
    runtime: str
    quantized: bool  # int8 tensors (the device quantizes the input itself)
    build: Callable[[BuildContext, Candidate, Path], dict]  # write the artifact to the path; its report options
    needs: tuple[Format, ...] = ()  # built first; their raw files are in BuildContext.built
    calibration: bool = False  # needs calibration images
    exact: bool = True  # must agree with Keras on every test argmax (float32 arithmetic)
    remedies: Callable[[BuildContext], list[Candidate]] | None = None  # the candidates --auto tries, default first


# ------------------------------------------------------------------ builds
def _tflite_float(ctx: BuildContext, cand: Candidate, path: Path) -> dict:
    from edgeflower.export import convert

    ctx.say("converting to float TFLite")
    path.write_bytes(convert.tflite_float(ctx.model))
    return {}


def _tflite_fp16(ctx: BuildContext, cand: Candidate, path: Path) -> dict:
    from edgeflower.export import convert

    ctx.say("converting to float16 TFLite")
    path.write_bytes(convert.tflite_fp16(ctx.model))
    return {"weights": "float16"}


def _int8_options(cand: Candidate) -> dict:
    return {**asdict(cand.options), "calibration_images": len(cand.calib), "remedy": cand.label}


def _tflite_int8(ctx: BuildContext, cand: Candidate, path: Path) -> dict:
    from edgeflower.export import convert, mixed

    if isinstance(cand.options, mixed.MixedPrecisionOptions):  # the accuracy-controlled remedy
        res = mixed.search(ctx.model, cand.calib, cand.options, ctx.val_x, ctx.val_y, ctx.float_val_probs(),
                           ctx.opts.max_drop, ctx.tmp, ctx.say)
        path.write_bytes(res.artifact)
        return _mixed_options(cand, res)
    path.write_bytes(convert.tflite_int8(ctx.model, cand.calib, cand.options))
    return _int8_options(cand)


def _tflite_int8_remedies(ctx: BuildContext) -> list[Candidate]:
    from edgeflower.export.convert import TFLiteInt8Options
    from edgeflower.export.mixed import MixedPrecisionOptions

    it = ctx.opts.input_type
    base = TFLiteInt8Options(input_type=it)
    out = [Candidate("default", base, ctx.calib)]
    if ctx.opts.auto:
        n, seed = ctx.opts.calibration, ctx.opts.calibration_seed
        out += [Candidate("more calibration images", base, ctx.sample(n * 3, seed)),
                Candidate("other calibration sample", base, ctx.sample(n, seed + 1)),
                Candidate("per-tensor weights", TFLiteInt8Options(it, per_channel=False), ctx.calib),
                Candidate("float output", TFLiteInt8Options(it, float_output=True), ctx.calib)]
    if ctx.opts.auto or ctx.opts.mixed_precision:  # last: it costs latency, the others do not
        out.append(Candidate("layers in float (accuracy-controlled)", MixedPrecisionOptions(input_type=it),
                             ctx.calib))
    return out


def _onnx_float(ctx: BuildContext, cand: Candidate, path: Path) -> dict:
    from edgeflower.export import convert

    ctx.say("converting to float ONNX (tf2onnx, opset 17)")
    convert.onnx_float(ctx.model, path)
    return {"opset": 17}


def _mixed_options(cand: Candidate, res) -> dict:
    return {**_int8_options(cand), "float_nodes": res.float_nodes, "float_layers": len(res.float_nodes),
            "passed_on_val": res.passed_on_val, "steps": res.steps, "ranking": res.ranking[:10]}


def _onnx_int8(ctx: BuildContext, cand: Candidate, path: Path) -> dict:
    from edgeflower.export import convert, mixed

    if isinstance(cand.options, mixed.OnnxMixedPrecisionOptions):  # the accuracy-controlled remedy
        res = mixed.search_onnx(ctx.built[Format.ONNX_FLOAT], cand.calib, cand.options, ctx.val_x, ctx.val_y,
                                ctx.float_val_probs(), ctx.opts.max_drop, ctx.tmp, ctx.say)
        path.write_bytes(res.artifact)
        return _mixed_options(cand, res)
    convert.onnx_int8(ctx.built[Format.ONNX_FLOAT], path, cand.calib, cand.options, workdir=ctx.tmp)
    return _int8_options(cand)


def _onnx_int8_remedies(ctx: BuildContext) -> list[Candidate]:
    from edgeflower.export.convert import OnnxInt8Options
    from edgeflower.export.mixed import OnnxMixedPrecisionOptions

    act = ctx.opts.onnx_activation
    other = "int8" if act == "uint8" else "uint8"
    base = OnnxInt8Options(activation_type=act)
    # 7-bit weights first: they cannot saturate x86's fast kernels, so the device runs them without
    # x64quantprecision (Lite0 0.44x float instead of 0.83x, one thread); 8-bit weights when 7 bits lose the gate
    out = [Candidate("default", OnnxInt8Options(activation_type=act, reduce_range=True), ctx.calib),
           Candidate("8-bit weights", base, ctx.calib)]
    if ctx.opts.auto:
        out += [Candidate("more calibration images", base,
                          ctx.sample(ctx.opts.calibration * 3, ctx.opts.calibration_seed)),
                Candidate("percentile calibration", OnnxInt8Options(act, method="percentile"), ctx.calib),
                Candidate(f"{other} activations", OnnxInt8Options(other), ctx.calib),
                Candidate("per-tensor weights", OnnxInt8Options(act, per_channel=False), ctx.calib),
                Candidate("final layer in float", OnnxInt8Options(act, exclude_last=True), ctx.calib)]
    if ctx.opts.auto or ctx.opts.mixed_precision:  # last: it costs latency, the others do not
        out.append(Candidate("layers in float (accuracy-controlled)", OnnxMixedPrecisionOptions(activation_type=act),
                             ctx.calib))
    return out


def _imx500(ctx: BuildContext, cand: Candidate, path: Path) -> dict:
    raise AssertionError("the IMX500 package is built and checked by pipeline._Checker.imx500")


# ------------------------------------------------------------------ the table (in the reports' order)
FORMATS: dict[Format, FormatSpec] = {s.fmt: s for s in (
    FormatSpec(Format.TFLITE_FLOAT, "model_float.tflite", "model_float.FAILED.tflite", "litert", False,
               _tflite_float),
    FormatSpec(Format.TFLITE_INT8, "model_int8.tflite", "model_int8.FAILED.tflite", "litert", True,
               _tflite_int8, calibration=True, exact=False, remedies=_tflite_int8_remedies),
    FormatSpec(Format.TFLITE_FP16, "model_fp16.tflite", "model_fp16.FAILED.tflite", "litert", False,
               _tflite_fp16, exact=False),
    FormatSpec(Format.ONNX_FLOAT, "model.onnx", "model.FAILED.onnx", "onnxruntime", False, _onnx_float),
    FormatSpec(Format.ONNX_INT8, "model_int8.onnx", "model_int8.FAILED.onnx", "onnxruntime", True,
               _onnx_int8, needs=(Format.ONNX_FLOAT,), calibration=True, exact=False, remedies=_onnx_int8_remedies),
    FormatSpec(Format.IMX500, "imx500/packerOut.zip", "imx500.FAILED/packerOut.zip", "imx500", True, _imx500,
               calibration=True, exact=False),
)}


def parse_formats(text: str) -> list[Format]:
    """'tflite_float,onnx_int8' -> formats; a one-line error naming the known ones."""
    out = []
    for name in filter(None, (t.strip() for t in text.split(","))):
        try:
            out.append(Format(name))
        except ValueError:
            raise ExportError(f"unknown export format {name!r}: choose from "
                              f"{', '.join(f.value for f in FORMATS)}") from None
    if not out:
        raise ExportError(f"--formats is empty: choose from {', '.join(f.value for f in FORMATS)}")
    return out


def plan(requested: list[Format]) -> list[tuple[FormatSpec, bool]]:
    """The builds to run, in the table's order, with their dependencies first: (spec, requested?). A dependency
    that was not requested is built as an intermediate file and neither checked nor written."""
    want = set(requested)
    need = set(want)
    todo = list(want)
    while todo:
        for dep in FORMATS[todo.pop()].needs:
            if dep not in need:
                need.add(dep)
                todo.append(dep)
    order = [f for f in FORMATS if f in need]
    for f in order:  # the table's order must put each dependency first
        assert all(order.index(d) < order.index(f) for d in FORMATS[f].needs), f
    return [(FORMATS[f], f in want) for f in order]
