"""`edgeflower export`: convert, measure every artifact through the edge runtime, gate, and write atomically.

Flow per artifact, the same steps for every format of the table (export/formats.py): build into a scratch folder
beside the output -> evaluate it on the frozen test set and the validation split (the edge Classifier, or the
format's own evaluation) -> gate it on validation (gate.judge) -> calibrate its ``unknown`` rule (export/unknown.py)
-> write it with its metadata under its final name (passing) or its FAILED name (over the accuracy budget).
A crash at any point leaves earlier artifacts and any previous good export untouched.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeflower.data.arrays import SplitArrays, load_split
from edgeflower.data.source import resolve_data_dir
from edgeflower.data.split import Manifest, load_manifest
from edgeflower.edge.preprocess import preprocessing, resize_of
from edgeflower.errors import AccuracyDropError, ExportError
from edgeflower.exporting import ood, tflite_metadata
from edgeflower.exporting.formats import (
    FORMATS,
    BuildContext,
    BuildOptions,
    Candidate,
    Evaluation,
    Format,
    FormatSpec,
    parse_formats,
    plan,
)
from edgeflower.exporting.gate import Verdict, judge
from edgeflower.exporting.report import render_table
from edgeflower.exporting.unknown import calibrate as calibrate_unknown
from edgeflower.util.files import atomic_write_text, sha256_file, write_json
from edgeflower.util.metrics import per_class_accuracy
from edgeflower.util.version import __version__

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportConfig:
    target: str  # run directory or .keras file
    out: str | None = None  # default: RUN_DIR/export
    int8: bool = False
    onnx: bool = True
    calibration: int = 300
    calibration_seed: int = 0
    max_drop: float = 1.0  # percentage points
    input_type: str = "uint8"  # TFLite int8 input: uint8 raw pixels or int8
    onnx_activation: str = "uint8"
    auto: bool = False
    data: str | None = None
    split: str | None = None
    limit_per_class: int | None = None  # tests and quick runs only: evaluate on a slice
    # accuracy budget (points) for the unknown threshold on val: half the 1-point target, because a threshold
    # calibrated to cost exactly 1 point on val costs more than that on the test set about half the time
    # (sampling noise of a ~1% share on 360 images: about +-0.5 points)
    unknown_budget_pts: float = 0.5
    # at most this share of validation split-halves may cost new photos over 1 point (else the budget shrinks)
    unknown_max_share: float = 0.25
    require_float_agreement: bool = True
    # "similarity": add the feature-similarity output (edgeflower.exporting.ood); or "confidence"
    unknown: str = "similarity"
    unknown_neighbours: int = ood.DEFAULT_NEIGHBOURS  # the similarity is to the k-th nearest training photo
    # ... of the predicted class (one similarity per class in the output); False: of any class (one value)
    unknown_per_class: bool = True
    # the artifacts to export (Format values, e.g. ("tflite_float", "onnx_int8")); None: from int8 and onnx
    formats: tuple[str, ...] | None = None
    mixed_precision: bool = False  # int8 over budget: return the layers that hurt most to float (also --auto)


def requested_formats(cfg: ExportConfig) -> list[Format]:
    """--formats, or the shorthands: float TFLite always, int8 TFLite with --int8, float ONNX unless --no-onnx,
    int8 ONNX with both."""
    if cfg.formats:
        return parse_formats(",".join(cfg.formats) if not isinstance(cfg.formats, str) else cfg.formats)
    out = [Format.TFLITE_FLOAT]
    if cfg.int8:
        out.append(Format.TFLITE_INT8)
    if cfg.onnx:
        out.append(Format.ONNX_FLOAT)
        if cfg.int8:
            out.append(Format.ONNX_INT8)
    return out


@dataclass
class ArtifactResult:
    name: str
    format: str
    path: str
    passed: bool
    size_bytes: int
    sha256: str
    accuracy: float
    reference_accuracy: float
    drop_pts: float
    max_drop_pts: float
    argmax_agreement: float
    per_class_delta_pts: dict[str, float]
    changed: list[dict]
    confidence_threshold: float  # the confidence rule (0: off, as on artifacts with the similarity rule)
    seconds: float
    unknown: dict = field(default_factory=dict)  # the unknown rule, its calibration on val and its effect on test
    options: dict = field(default_factory=dict)
    reason: str = ""
    attempts: list[dict] = field(default_factory=list)
    predictions: dict[str, str] = field(default_factory=dict)  # test image -> predicted class (no unknown)
    gate: dict = field(default_factory=dict)  # the decision on the validation split (gate.Verdict)
    remedy: str = "default"  # the candidate that was kept
    speed: dict = field(default_factory=dict)  # an int8 artifact against its float sibling (bench.speedup)


def _check_out_dir(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the output directory {out}: {exc.strerror}; pass a writable --out") from exc
    if not os.access(out, os.W_OK):
        raise ExportError(f"the output directory {out} is not writable: pass a writable --out")


def stratified_sample(a: SplitArrays, n: int, seed: int) -> np.ndarray:
    """Up to ``n`` images with every class represented in proportion (the representative dataset)."""
    if n <= 0:
        raise ExportError(f"--calibration must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    idx = []
    classes = np.unique(a.y)
    for c in classes:
        members = np.nonzero(a.y == c)[0]
        k = max(1, round(n * len(members) / len(a.y)))
        idx.extend(rng.choice(members, size=min(k, len(members)), replace=False).tolist())
    idx = np.array(sorted(idx)[: max(n, len(classes))])
    return a.x[idx]


@dataclass
class _Run:
    """The model to export and what its run says about it: where its data, split and classes are."""
    model_path: Path
    config: dict  # the run's config.json ({} for a bare .keras file)
    out: Path
    model: Any  # the Keras float model
    size: int  # input side in pixels
    resize: str  # how the run's photos reached that size (edgeflower.edge.preprocess.RESIZE_FILTERS)
    root: Path  # the data folder
    split_file: str | None  # None: the packaged split
    manifest: Manifest
    classes: list[str]


@dataclass
class _Data:
    """The photos the export reads, and the unknown rule the model allows."""
    test: SplitArrays
    val: SplitArrays
    train: SplitArrays | None  # loaded only for calibration images or the similarity's bank
    calib: np.ndarray | None  # the default calibration images (int8 formats)
    background: dict | None  # the run's background class (train --background)
    unknown: str  # "similarity" or "confidence"
    feature_layer: Any  # the model's pooled features (None without a global pooling layer)
    bank: np.ndarray | None = None  # the similarity's normalized training features (the similarity rule)
    bank_labels: np.ndarray | None = None  # their classes (the per-class score), else None


@dataclass
class _Reference:
    """The Keras float model's answers: what every artifact is compared with."""
    pred: np.ndarray  # test answers
    accuracy: float  # test accuracy
    val_probs: np.ndarray  # what every decision compares with (gate.judge)


def export(cfg: ExportConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Run the whole export; returns the report. Raises AccuracyDropError after writing everything if any
    artifact failed the gate."""
    say = progress or (lambda msg: log.info(msg))
    t_start = time.perf_counter()
    steps = plan(requested_formats(cfg))  # a bad --formats fails before anything loads
    run = _load_run(cfg)
    data = _load_data(cfg, run, steps, say)
    ref = _reference(run, data, say)
    model, unknown_meta = _with_unknown_output(cfg, run, data, say)
    base_meta = _base_meta(cfg, run, data, ref, unknown_meta)
    results = _build_and_check(cfg, run, data, ref, model, base_meta, steps, say)
    _speeds(results, say)
    report = _write_report(cfg, run, data, ref, results, time.perf_counter() - t_start)
    failures = [asdict(r) for r in results if not r.passed]
    if failures:
        raise AccuracyDropError(failures, report)
    return report


def _load_run(cfg: ExportConfig) -> _Run:
    """The run's model, output folder, data folder, split and classes; checked before any photo loads."""
    from edgeflower.keras_io import load_keras_model, resolve_run

    model_path, run_cfg = resolve_run(cfg.target)
    run_cfg = run_cfg or {}
    out = Path(cfg.out) if cfg.out else (model_path.parent / "export")
    _check_out_dir(out)
    tflite_metadata.available()  # before minutes of work: the TFLite metadata needs MediaPipe's writers
    model = load_keras_model(model_path)
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[-1] != 3 or shape[1] is None or shape[1] != shape[2]:
        raise ExportError(f"{model_path}: expected a square RGB image input (None, S, S, 3), got {shape}")
    root = resolve_data_dir(cfg.data or run_cfg.get("data_dir"))
    split_file = cfg.split or run_cfg.get("split")
    manifest = load_manifest(split_file)
    classes = list(run_cfg.get("classes") or manifest.classes)
    n_out = int(model.outputs[0].shape[-1])
    if n_out != len(classes):
        raise ExportError(f"{model_path} has {n_out} outputs but the split has {len(classes)} classes {classes}")
    return _Run(model_path=model_path, config=run_cfg, out=out, model=model, size=int(shape[1]),
                resize=resize_of(run_cfg), root=root,
                split_file=split_file, manifest=manifest, classes=classes)


def _load_data(cfg: ExportConfig, run: _Run, steps: list[tuple[FormatSpec, bool]],
               say: Callable[[str], None]) -> _Data:
    """The test and validation photos; the training photos where a build needs calibration images or the unknown
    rule a bank of features; the run's background photos as the last class."""
    say(f"loading data ({run.root})")

    def split(name: str) -> SplitArrays:
        return load_split(run.root, run.manifest, name, run.size, limit_per_class=cfg.limit_per_class,
                          resize=run.resize)

    test, val = split("test"), split("val")
    unknown, feature_layer = _unknown_rule(cfg, run, say)
    calib, train = None, None
    needs_calibration = any(spec.calibration for spec, _ in steps)
    if needs_calibration or unknown == "similarity":
        train = split("train")
    background = run.config.get("background")
    if background:  # the run's background photos, as the last class (edgeflower.data.background)
        from edgeflower.data.background import with_background

        parts = with_background({"test": test, "val": val, **({"train": train} if train is not None else {})},
                                background, run.size, run.resize)
        test, val, train = parts["test"], parts["val"], parts.get("train")
    if needs_calibration:
        calib = stratified_sample(train, cfg.calibration, cfg.calibration_seed)
    return _Data(test=test, val=val, train=train, calib=calib, background=background, unknown=unknown,
                 feature_layer=feature_layer)


def _unknown_rule(cfg: ExportConfig, run: _Run, say: Callable[[str], None]) -> tuple[str, Any]:
    """--unknown, or the confidence rule for a model without pooled features; and the pooling layer."""
    if cfg.unknown not in ("similarity", "confidence"):
        raise ExportError(f"unknown rule {cfg.unknown!r}: expected 'similarity' or 'confidence'")
    unknown = cfg.unknown
    feature_layer = ood.feature_layer(run.model)
    if unknown == "similarity" and feature_layer is None:
        say(f"{run.model_path.name} has no global pooling layer: the unknown answer falls back to the confidence rule")
        unknown = "confidence"
    return unknown, feature_layer


def _reference(run: _Run, data: _Data, say: Callable[[str], None]) -> _Reference:
    """The Keras float model on the test and validation photos."""
    from edgeflower.keras_io import predict_probs

    say("evaluating the Keras float model (reference) on the test and validation images")
    probs = predict_probs(run.model, data.test.x)
    pred = probs.argmax(1)
    return _Reference(pred=pred, accuracy=float((pred == data.test.y).mean()),
                      val_probs=predict_probs(run.model, data.val.x))


def _with_unknown_output(cfg: ExportConfig, run: _Run, data: _Data, say: Callable[[str], None]) -> tuple[Any, dict]:
    """The model to convert (with the similarity output under the similarity rule) and the rule's metadata."""
    if data.unknown != "similarity":
        return run.model, {"method": "confidence"}
    train = data.train
    say(f"unknown score: features of the {len(train)} training images")
    # the bank holds the flower photos only: the similarity says "like a training flower"
    flowers = train.y != len(run.classes) - 1 if data.background else slice(None)  # (no copy of the images without one)
    bank = ood.compute_bank(run.model, train.x[flowers])
    k = cfg.unknown_neighbours
    per_class = bool(cfg.unknown_per_class)
    model = ood.with_similarity(run.model, bank, k, train.y[flowers] if per_class else None)
    data.bank, data.bank_labels = bank, (train.y[flowers] if per_class else None)
    of = " of the predicted class" if per_class else ""
    return model, {"method": ood.METHOD_PER_CLASS if per_class else ood.METHOD,
                   "feature_layer": data.feature_layer.name, "neighbours": k, "per_class": per_class,
                   "bank_size": int(bank.shape[0]), "feature_dims": int(bank.shape[1]),
                   "description": f"cosine similarity of the pooled features to the {ood.ordinal(k)} training "
                                  f"photo{of}; unknown below similarity_threshold (calibrated on the validation "
                                  "split)" + ("; the similarity output holds one value per class (in the order "
                                              "of the labels, without a background class) and the answer reads "
                                              "the top class's" if per_class else "")}


def _base_meta(cfg: ExportConfig, run: _Run, data: _Data, ref: _Reference, unknown_meta: dict) -> dict:
    """The metadata every artifact of this export shares."""
    return {
        "edgeflower_version": __version__,
        "labels": run.classes,
        "preprocessing": preprocessing(run.resize),
        "source_run": str(Path(cfg.target).resolve()),
        "source_model_sha256": sha256_file(run.model_path),
        "model": run.config.get("model"),
        "split_manifest_sha256": run.manifest.sha256,
        # where the test photos are (bench finds them from here; a run on your own photos has its own split.json)
        "data_dir": str(Path(run.root).resolve()),
        "split": str(Path(run.split_file).resolve()) if run.split_file else None,
        "keras_test_accuracy": ref.accuracy,
        "unknown": unknown_meta,
        "background_class": data.background["class"] if data.background else None,
    }


def _build_and_check(cfg: ExportConfig, run: _Run, data: _Data, ref: _Reference, model, base_meta: dict,
                     steps: list[tuple[FormatSpec, bool]], say: Callable[[str], None]) -> list[ArtifactResult]:
    """Build every format in the plan's order in a scratch folder beside the output; check, gate and write each
    requested one (a dependency only is built, neither checked nor written)."""
    results: list[ArtifactResult] = []
    train = data.train
    with tempfile.TemporaryDirectory(prefix=".export.", dir=run.out) as tmpdir:
        tmp = Path(tmpdir)
        ctx = BuildContext(model=model, opts=BuildOptions.of(cfg), tmp=tmp, say=say, calib=data.calib,
                           sample=lambda n, seed: stratified_sample(train, n, seed), val_x=data.val.x,
                           val_y=data.val.y, _float_val_probs=ref.val_probs, out=run.out, test_x=data.test.x,
                           reference_test_pred=ref.pred, source_model=run.model,
                           feature_layer=data.feature_layer.name if data.bank is not None else None,
                           bank=data.bank, bank_labels=data.bank_labels, neighbours=cfg.unknown_neighbours)
        gate = _Gate(cfg=cfg, run=run, data=data, ref=ref, base_meta=base_meta)
        for spec, requested in steps:
            default = Candidate("default", calib=data.calib if spec.calibration else None)
            candidates = spec.remedies(ctx) if spec.remedies else [default]
            if requested:
                res, raw = _search(gate, ctx, spec, candidates)
                results.append(res)
            else:  # a dependency only (onnx_float for onnx_int8): built, neither checked nor written
                raw = _scratch(tmp, "dep", spec)
                spec.build(ctx, candidates[0], raw)
            ctx.built[spec.fmt] = raw
    return results


def _speeds(results: list[ArtifactResult], say: Callable[[str], None]) -> None:
    """Each int8 artifact against its float sibling of this export, timed here at one thread (bench.speedup), with
    bench's warning when it is not MIN_INT8_SPEEDUP times faster: int8 that buys size and no speed is said."""
    from edgeflower.benchmarking import speed_warning, speedup

    written = {r.format: r for r in results}
    for r in results:
        sibling = FORMATS[Format(r.format)].float_sibling
        f = written.get(sibling.value) if sibling else None
        if f is None:
            continue
        say(f"timing {r.name} against {f.name} (one thread)")
        r.speed = speedup(r.path, f.path, threads=1)
        warning = speed_warning(r.name, f.name, r.speed["speedup_vs_float"], 1)
        if warning:
            r.speed["warning"] = warning
            say(f"warning: {warning}")


def _write_report(cfg: ExportConfig, run: _Run, data: _Data, ref: _Reference, results: list[ArtifactResult],
                  seconds: float) -> dict:
    """export_report.json and its Markdown table; returns the report."""
    report = {
        "edgeflower_version": __version__,
        "source": str(run.model_path),
        "out": str(run.out),
        "keras_test_accuracy": ref.accuracy,
        "test_images": len(data.test),
        "max_drop_pts": cfg.max_drop,
        "validation_images": len(data.val),
        "rule": "gate.judge on the validation split (see edgeflower/exporting/gate.py)",
        "config": asdict(cfg),
        "seconds": seconds,
        "artifacts": [asdict(r) for r in results],
        "passed": all(r.passed for r in results),
    }
    write_json(run.out / "export_report.json", report)
    atomic_write_text(run.out / "export_report.md", render_table(report))
    return report


@dataclass
class _Gate:
    """What every artifact is checked against: the options, the run, its photos, the Keras model's answers and the
    metadata every artifact shares."""
    cfg: ExportConfig
    run: _Run
    data: _Data
    ref: _Reference
    base_meta: dict


def _scratch(tmp: Path, prefix: str, spec: FormatSpec) -> Path:
    """A build's path in the scratch folder, in a folder of its own (a package's files stay together)."""
    path = tmp / prefix / spec.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _search(g: _Gate, ctx: BuildContext, spec: FormatSpec, candidates: list[Candidate]) -> tuple[ArtifactResult, Path]:
    """Build and evaluate the candidates in order until one passes the rule (``_decide``); keep the best on the
    validation split if none does. Returns the result and the raw (metadata-free) file that later builds may read."""
    attempts, best = [], None
    for i, cand in enumerate(candidates):
        if cand.calib is not None and spec.remedies is not None:
            ctx.say(f"quantizing {spec.filename} ({cand.label}, {len(cand.calib)} calibration images)")
        t = time.perf_counter()
        path = _scratch(ctx.tmp, f"try{i}", spec)
        options = spec.build(ctx, cand, path)
        ev = spec.evaluation(ctx, path)
        verdict, reason = _decide(g, spec, ev)
        if spec.remedies is not None:
            attempts.append({"remedy": cand.label, "options": asdict(cand.options) if cand.options else {},
                             **({"float_layers": options["float_nodes"]} if "float_nodes" in options else {}),
                             "calibration_images": len(cand.calib) if cand.calib is not None else 0,
                             "val_accuracy": verdict.accuracy, "val_drop_pts": verdict.drop_pts,
                             "val_drop_lower_pts": verdict.drop_lower_pts, "agreement": verdict.agreement,
                             "accuracy": _accuracy(g, ev), "drop_pts": _drop_pts(g, ev), "passed": not reason,
                             "seconds": time.perf_counter() - t})
        if not reason or best is None or verdict.accuracy > best[3].accuracy:
            best = (path, t, options, verdict, reason, ev, cand.label)
        if not reason:
            break
    path, t, options, verdict, reason, ev, label = best
    if label != "default" and not reason:
        ctx.say(f"{spec.filename}: passed with the remedy '{label}'")
    res = _finish(g, ctx, spec, path, t, options, ev, verdict, reason)
    res.remedy = label
    res.attempts = attempts if (g.cfg.auto or g.cfg.mixed_precision) else []
    return res, path


def _decide(g: _Gate, spec: FormatSpec, ev: Evaluation) -> tuple[Verdict, str]:
    """The one rule (gate.judge) on the validation split; for float artifacts, agreement with Keras on every test
    answer; and the format's own problems. Returns the verdict and the reason it fails ("" when it passes)."""
    val, ref_val_pred = g.data.val, g.ref.val_probs.argmax(1)
    val_pred = ev.val_probs.argmax(1)
    verdict = judge(ref_val_pred == val.y, val_pred == val.y, ref_val_pred, val_pred, g.cfg.max_drop)
    reasons = [verdict.reason] if verdict.reason else []
    if spec.exact and g.cfg.require_float_agreement:
        differ = int((ev.pred != g.ref.pred).sum())
        if differ:
            reasons.append(f"float artifact disagrees with Keras on {differ} test images")
    return verdict, "; ".join(reasons + ev.problems)


def _accuracy(g: _Gate, ev: Evaluation) -> float:
    return float((ev.pred == g.data.test.y).mean())


def _drop_pts(g: _Gate, ev: Evaluation) -> float:
    """The accuracy drop on the test split: reported, never decided on."""
    return (g.ref.accuracy - _accuracy(g, ev)) * 100


def _finish(g: _Gate, ctx: BuildContext, spec: FormatSpec, raw: Path, t0: float, options: dict, ev: Evaluation,
            verdict: Verdict, reason: str) -> ArtifactResult:
    """Write the kept candidate with its metadata under its final name (its FAILED name when it failed the gate);
    its result for the report."""
    passed = not reason
    unknown, conf_thr = calibrate_unknown(ev, g.data.test, g.data.val, g.run.classes, g.base_meta["unknown"],
                                          g.base_meta.get("background_class"), g.cfg.unknown_budget_pts,
                                          g.cfg.unknown_max_share)
    acc, drop = _accuracy(g, ev), _drop_pts(g, ev)
    meta = {**g.base_meta, "format": spec.fmt.value, "runtime": spec.runtime, **ev.tensors,
            "quantized": spec.quantized, "quantization_options": options, "test_accuracy": acc,
            "test_images": len(g.data.test), "drop_pts": drop, "passed_gate": passed,
            "gate": verdict.to_dict(), "confidence_threshold": conf_thr, "unknown": unknown}
    final = g.run.out / (spec.filename if passed else spec.failed_filename)
    size, digest = spec.write(ctx, spec, raw, final, meta)
    if not passed:
        ctx.say(f"FAILED {spec.filename}: {reason} (kept as {final.relative_to(g.run.out)})")
    test, classes, ref_pred, pred = g.data.test, g.run.classes, g.ref.pred, ev.pred
    ref_pc, pc = per_class_accuracy(ref_pred, test.y, classes), per_class_accuracy(pred, test.y, classes)
    return ArtifactResult(
        name=spec.filename, format=spec.fmt.value, path=str(final), passed=passed, size_bytes=size, sha256=digest,
        accuracy=acc, reference_accuracy=g.ref.accuracy, drop_pts=drop,
        max_drop_pts=g.cfg.max_drop, argmax_agreement=float((pred == ref_pred).mean()),
        per_class_delta_pts={c: (pc[c] - ref_pc[c]) * 100 for c in classes},
        changed=[{"path": test.paths[i], "true": classes[test.y[i]], "keras": classes[ref_pred[i]],
                  "artifact": classes[pred[i]]} for i in np.nonzero(pred != ref_pred)[0]],
        confidence_threshold=conf_thr, unknown=unknown, seconds=time.perf_counter() - t0, options=options,
        reason=reason, predictions={p: classes[int(i)] for p, i in zip(test.paths, pred)}, gate=verdict.to_dict())
