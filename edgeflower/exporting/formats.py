"""The export formats as a table of steps: adding one is one entry and its build function.

Each ``FormatSpec`` says what it needs (artifacts built before it, calibration images), how to build it, how to
write it with its metadata, the runtime that checks it, and the remedies ``--auto`` may try. A format whose
artifact this machine cannot run (the AI Camera's, simulated by Sony's tools) also supplies its evaluation; every
other one is evaluated by the edge runtime (``evaluate_on_device``). ``pipeline.export`` resolves the requested
formats and their dependencies, runs the builds in order, and evaluates, gates, describes and writes every requested
artifact through the same steps (docs/export.md#adding-a-format).
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
    """What a build, an evaluation and a write may use: the model to convert, the export's options, a scratch folder
    and the output folder, the calibration images (a stratified sample of the training split; ``sample`` draws
    others), the raw files of the artifacts built before it, and the photos every artifact is evaluated on."""
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
    out: Path | None = None  # the export's output folder
    test_x: Any = None  # the test images
    reference_test_pred: np.ndarray | None = None  # the Keras model's test answers
    # the trained model without the similarity output, its pooled-features layer (None under the confidence rule)
    # and the similarity's bank: what the AI Camera's build needs, which computes the similarity on the Pi
    source_model: Any = None
    feature_layer: str | None = None
    bank: np.ndarray | None = None
    bank_labels: np.ndarray | None = None
    neighbours: int = 2

    @property
    def size(self) -> int:
        """The model's input side in pixels."""
        return int(np.shape(self.test_x)[1])

    def float_val_probs(self) -> np.ndarray:
        """The float model's class scores on the validation images: the float TFLite or ONNX built before (the
        two agree to float32 rounding), else a float TFLite built here."""
        if self._float_val_probs is None:
            from edgeflower.edge.classifier import Classifier
            from edgeflower.exporting import convert

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


@dataclass
class Evaluation:
    """An artifact's answers on the test and validation photos, and what it says about itself."""
    probs: np.ndarray  # test probabilities (N, C)
    val_probs: np.ndarray
    sims: np.ndarray | None  # test similarities (artifacts with the similarity output)
    val_sims: np.ndarray | None
    tensors: dict  # the metadata's "input" and "output" entries (and any field the format adds)
    similarity_output: str | None = None  # the similarity output's name, when there is one
    problems: list[str] = field(default_factory=list)  # the format's own reasons to fail, besides the gate
    unknown: dict = field(default_factory=dict)  # what the format adds to the unknown rule's metadata

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(1)


Build = Callable[[BuildContext, Candidate, Path], dict]  # write the artifact to the path; its report options
Evaluate = Callable[[BuildContext, Path], Evaluation]
Write = Callable[[BuildContext, "FormatSpec", Path, Path, dict], tuple[int, str]]  # raw, final, meta -> size, sha256


@dataclass(frozen=True)
class FormatSpec:
    fmt: Format
    filename: str
    failed_filename: str  # a failed artifact is kept under a name nobody mistakes for a passing one
    runtime: str
    quantized: bool  # int8 tensors (the device quantizes the input itself)
    build: Build
    write: Write  # the raw file with its metadata under its final name, atomically
    needs: tuple[Format, ...] = ()  # built first; their raw files are in BuildContext.built
    calibration: bool = False  # needs calibration images
    exact: bool = True  # must agree with Keras on every test argmax (float32 arithmetic)
    remedies: Callable[[BuildContext], list[Candidate]] | None = None  # the candidates --auto tries, default first
    evaluate: Evaluate | None = None  # None: the edge runtime on this machine (evaluate_on_device)
    float_sibling: Format | None = None  # an int8 format: the float one it must be faster than (timed at export)

    def evaluation(self, ctx: BuildContext, path: Path) -> Evaluation:
        return (self.evaluate or evaluate_on_device)(ctx, path)


# ------------------------------------------------------------------ the shared evaluation and writes
def evaluate_on_device(ctx: BuildContext, path: Path) -> Evaluation:
    """The artifact through the edge runtime (``Classifier``), as a device will run it."""
    from edgeflower.edge.classifier import Classifier

    ctx.say(f"checking {path.name} on the test and validation images")
    clf = Classifier(path, threshold=0.0)
    probs, sims = clf.score_batch(ctx.test_x, desc=f"{path.name} on the test images")
    val_probs, val_sims = clf.score_batch(ctx.val_x, desc=f"{path.name} on the validation images")
    inp, outp, sim = clf.backend.input, clf.backend.output, clf.similarity_output
    tensors = {"input": _input_entry(ctx.size, inp.name, str(inp.dtype),
                                     {"scale": inp.scale, "zero_point": inp.zero_point} if inp.quantized else None),
               "output": {"name": outp.name, "dtype": str(outp.dtype), "kind": "probabilities",
                          "quantization": ({"scale": outp.scale, "zero_point": outp.zero_point} if outp.quantized
                                           else None)}}
    return Evaluation(probs=probs, val_probs=val_probs, sims=sims, val_sims=val_sims, tensors=tensors,
                      similarity_output=None if sim is None else sim.name)


def _input_entry(size: int, name: str, dtype: str, quantization: dict | None) -> dict:
    return {"name": name, "size": [size, size], "shape": [1, size, size, 3], "dtype": dtype, "layout": "NHWC",
            "quantization": quantization}


def _write_file(ctx: BuildContext, spec: FormatSpec, raw: Path, final: Path, meta: dict) -> tuple[int, str]:
    """Embed the metadata into a staged copy of the raw file (TFLite Model Metadata, or ONNX metadata_props), then
    write the sidecar and the artifact atomically. Returns the artifact's size and sha256 (also in the sidecar)."""
    import shutil

    from edgeflower.edge.metadata import sidecar_path
    from edgeflower.exporting import convert, tflite_metadata
    from edgeflower.util.files import atomic_path, sha256_file, write_json

    staged = ctx.tmp / ("meta_" + spec.filename)
    if spec.runtime == "onnxruntime":
        convert.embed_onnx_metadata(raw, staged, meta)
    else:  # standard TFLite Model Metadata, labels and edgeflower's fields inside the file
        tflite_metadata.embed_tflite_metadata(raw, staged, meta)
    size, digest = staged.stat().st_size, sha256_file(staged)
    meta["sha256"], meta["size_bytes"] = digest, size
    # sidecar first, then the artifact: a reader that finds the artifact also finds its metadata
    write_json(sidecar_path(final), meta)
    with atomic_path(final, suffix=final.suffix) as dst:
        shutil.copyfile(staged, dst)
    return size, digest


# ------------------------------------------------------------------ builds
def _tflite_float(ctx: BuildContext, cand: Candidate, path: Path) -> dict:
    from edgeflower.exporting import convert

    ctx.say("converting to float TFLite")
    path.write_bytes(convert.tflite_float(ctx.model))
    return {}


def _tflite_fp16(ctx: BuildContext, cand: Candidate, path: Path) -> dict:
    from edgeflower.exporting import convert

    ctx.say("converting to float16 TFLite")
    path.write_bytes(convert.tflite_fp16(ctx.model))
    return {"weights": "float16"}


def _int8_options(cand: Candidate) -> dict:
    return {**asdict(cand.options), "calibration_images": len(cand.calib), "remedy": cand.label}


def _tflite_int8(ctx: BuildContext, cand: Candidate, path: Path) -> dict:
    from edgeflower.exporting import convert, mixed

    if isinstance(cand.options, mixed.MixedPrecisionOptions):  # the accuracy-controlled remedy
        res = mixed.search(ctx.model, cand.calib, cand.options, ctx.val_x, ctx.val_y, ctx.float_val_probs(),
                           ctx.opts.max_drop, ctx.tmp, ctx.say)
        path.write_bytes(res.artifact)
        return _mixed_options(cand, res)
    path.write_bytes(convert.tflite_int8(ctx.model, cand.calib, cand.options))
    return _int8_options(cand)


def _tflite_int8_remedies(ctx: BuildContext) -> list[Candidate]:
    from edgeflower.exporting.convert import TFLiteInt8Options
    from edgeflower.exporting.mixed import MixedPrecisionOptions

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
    from edgeflower.exporting import convert

    ctx.say("converting to float ONNX (tf2onnx, opset 17)")
    convert.onnx_float(ctx.model, path)
    return {"opset": 17}


def _mixed_options(cand: Candidate, res) -> dict:
    return {**_int8_options(cand), "float_nodes": res.float_nodes, "float_layers": len(res.float_nodes),
            "passed_on_val": res.passed_on_val, "steps": res.steps, "ranking": res.ranking[:10]}


def _onnx_int8(ctx: BuildContext, cand: Candidate, path: Path) -> dict:
    from edgeflower.exporting import convert, mixed

    if isinstance(cand.options, mixed.OnnxMixedPrecisionOptions):  # the accuracy-controlled remedy
        res = mixed.search_onnx(ctx.built[Format.ONNX_FLOAT], cand.calib, cand.options, ctx.val_x, ctx.val_y,
                                ctx.float_val_probs(), ctx.opts.max_drop, ctx.tmp, ctx.say)
        path.write_bytes(res.artifact)
        return _mixed_options(cand, res)
    convert.onnx_int8(ctx.built[Format.ONNX_FLOAT], path, cand.calib, cand.options, workdir=ctx.tmp)
    return _int8_options(cand)


def _onnx_int8_remedies(ctx: BuildContext) -> list[Candidate]:
    from edgeflower.exporting.convert import OnnxInt8Options
    from edgeflower.exporting.mixed import OnnxMixedPrecisionOptions

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
    """Quantized by Sony's MCT and converted by the IMX500 converter in a side environment (export/imx500.py),
    in the folder of ``path``."""
    from edgeflower.exporting import imx500

    ctx.say(f"imx500: quantizing (MCT) and converting (Sony's converter) in {imx500.env_dir()}; minutes")
    res = imx500.run_worker(ctx.source_model, ctx.feature_layer, cand.calib, {"test": ctx.test_x, "val": ctx.val_x},
                            path.parent, say=ctx.say, log_path=ctx.out / "imx500.log")
    return {"tool": "model-compression-toolkit PTQ, edge-mdt-tpc imx500 1.0, imxconv-tf",
            "requirement": imx500.REQUIREMENT, "calibration_images": len(cand.calib), **res.info["steps"]}


def _imx500_evaluation(ctx: BuildContext, path: Path) -> Evaluation:
    """MCT's simulation of the quantized network on this machine: a simulation of the chip, not bit-exact. The
    similarity is what the Pi computes from the sensor's pooled features and the bank."""
    from edgeflower.edge.backends import PROBS, SIMILARITY
    from edgeflower.edge.classifier import select_similarity
    from edgeflower.exporting import imx500

    res = imx500.read_result(path.parent, ("test", "val"))
    differ = int((res.rebuilt["test"][0].argmax(1) != ctx.reference_test_pred).sum())
    if differ:
        raise ExportError(f"imx500: the Keras 2 rebuild of the network disagrees with the trained model on "
                          f"{differ} test photos")
    (probs, *feats), (val_probs, *val_feats) = res.quantized["test"], res.quantized["val"]
    similarity = ctx.bank is not None
    sims = val_sims = None
    if similarity:
        def sim(p, f):
            return select_similarity(p, imx500.similarity(f, ctx.bank, ctx.bank_labels, ctx.neighbours))

        sims, val_sims = sim(probs, feats[0]), sim(val_probs, val_feats[0])
    memory = imx500.memory_figures(res.memory)
    problems = []
    if not memory.get("fits", False):
        used = f"{memory['memory_used_mb']:.2f} MB of {memory['chip_mb']:g} MB" if memory else "no memory report"
        problems.append(f"does not fit the IMX500 ({used})")
    tensors = {"input": _input_entry(ctx.size, "image", "uint8", None),
               "output": {"name": PROBS, "dtype": "float32", "kind": "probabilities", "quantization": None},
               "sensor_outputs": [PROBS, "features"] if similarity else [PROBS], "simulated": True,
               "imx500_memory": memory}
    return Evaluation(probs=probs, val_probs=val_probs, sims=sims, val_sims=val_sims, tensors=tensors,
                      similarity_output=SIMILARITY if similarity else None, problems=problems,
                      unknown={"bank": "bank.npz", "computed_on": "the Pi, from the sensor's pooled features"}
                      if similarity else {})


def _write_imx500(ctx: BuildContext, spec: FormatSpec, raw: Path, final: Path, meta: dict) -> tuple[int, str]:
    """The package folder (packerOut.zip, labels, metadata, bank), moved into place whole; a package of an earlier
    export under the other name (passed / FAILED) is removed."""
    import shutil

    from edgeflower.exporting import imx500
    from edgeflower.util.files import sha256_file

    dest = final.parent
    for name in (spec.filename, spec.failed_filename):
        if ctx.out / Path(name).parent != dest:
            shutil.rmtree(ctx.out / Path(name).parent, ignore_errors=True)
    imx500.write_package(raw.parent / "out", dest, meta, ctx.bank, ctx.bank_labels)
    if meta["passed_gate"]:
        memory = meta["imx500_memory"]
        ctx.say(f"imx500: {memory['memory_used_mb']:.2f} MB of the chip's {memory['chip_mb']:g} MB; package it on "
                f"the Pi with `imx500-package -i {final.name} -o .` in {dest}")
    return final.stat().st_size, sha256_file(final)


# ------------------------------------------------------------------ the table (in the reports' order)
FORMATS: dict[Format, FormatSpec] = {s.fmt: s for s in (
    FormatSpec(Format.TFLITE_FLOAT, "model_float.tflite", "model_float.FAILED.tflite", "litert", False,
               _tflite_float, _write_file),
    FormatSpec(Format.TFLITE_INT8, "model_int8.tflite", "model_int8.FAILED.tflite", "litert", True,
               _tflite_int8, _write_file, calibration=True, exact=False, remedies=_tflite_int8_remedies,
               float_sibling=Format.TFLITE_FLOAT),
    FormatSpec(Format.TFLITE_FP16, "model_fp16.tflite", "model_fp16.FAILED.tflite", "litert", False,
               _tflite_fp16, _write_file, exact=False),
    FormatSpec(Format.ONNX_FLOAT, "model.onnx", "model.FAILED.onnx", "onnxruntime", False, _onnx_float, _write_file),
    FormatSpec(Format.ONNX_INT8, "model_int8.onnx", "model_int8.FAILED.onnx", "onnxruntime", True,
               _onnx_int8, _write_file, needs=(Format.ONNX_FLOAT,), calibration=True, exact=False,
               remedies=_onnx_int8_remedies, float_sibling=Format.ONNX_FLOAT),
    FormatSpec(Format.IMX500, "imx500/packerOut.zip", "imx500.FAILED/packerOut.zip", "imx500", True, _imx500,
               _write_imx500, calibration=True, exact=False, evaluate=_imx500_evaluation),
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
