"""`edgeflower export`: convert, measure every artifact through the edge runtime, gate, and write atomically.

Flow per artifact: convert into a temporary file beside the output -> evaluate it on the frozen test set
(and the validation split, to calibrate the ``unknown`` threshold) with the edge Classifier -> embed
metadata -> rename onto its final name (passing) or its FAILED name (over the accuracy budget).
A crash at any point leaves earlier artifacts and any previous good export untouched.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeflower import __version__
from edgeflower.data.arrays import SplitArrays, load_split
from edgeflower.data.source import resolve_data_dir
from edgeflower.data.split import Manifest, load_manifest
from edgeflower.edge.classifier import Classifier
from edgeflower.edge.metadata import sidecar_path
from edgeflower.edge.preprocess import PREPROCESSING
from edgeflower.errors import AccuracyDropError, ExportError
from edgeflower.export import convert, ood, tflite_metadata
from edgeflower.export.formats import BuildContext, BuildOptions, Candidate, Format, FormatSpec, parse_formats, plan
from edgeflower.export.gate import Verdict, judge
from edgeflower.util.files import atomic_path, atomic_write_text, sha256_file, write_json
from edgeflower.util.metrics import calibrate_scores, calibrate_threshold, holding_budget, per_class_accuracy

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
    unknown: str = "similarity"  # "similarity": add the feature-similarity output (edgeflower.export.ood); "confidence"
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
class Evaluation:
    """An artifact run through the device runtime on the test and validation images."""
    probs: np.ndarray  # test probabilities (N, C)
    pred: np.ndarray  # test argmax
    accuracy: float  # test accuracy, no unknown
    val_probs: np.ndarray
    sims: np.ndarray | None  # test similarities (artifacts with the similarity output)
    val_sims: np.ndarray | None
    clf: Classifier | None  # None for the AI Camera: its network is simulated in the side environment


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
    return _Run(model_path=model_path, config=run_cfg, out=out, model=model, size=int(shape[1]), root=root,
                split_file=split_file, manifest=manifest, classes=classes)


def _load_data(cfg: ExportConfig, run: _Run, steps: list[tuple[FormatSpec, bool]],
               say: Callable[[str], None]) -> _Data:
    """The test and validation photos; the training photos where a build needs calibration images or the unknown
    rule a bank of features; the run's background photos as the last class."""
    say(f"loading data ({run.root})")
    test = load_split(run.root, run.manifest, "test", run.size, limit_per_class=cfg.limit_per_class)
    val = load_split(run.root, run.manifest, "val", run.size, limit_per_class=cfg.limit_per_class)
    unknown, feature_layer = _unknown_rule(cfg, run, say)
    calib, train = None, None
    needs_calibration = any(spec.calibration for spec, _ in steps)
    if needs_calibration or unknown == "similarity":
        train = load_split(run.root, run.manifest, "train", run.size, limit_per_class=cfg.limit_per_class)
    background = run.config.get("background")
    if background:  # the run's background photos, as the last class (edgeflower.data.background)
        from edgeflower.data.background import with_background

        parts = with_background({"test": test, "val": val, **({"train": train} if train is not None else {})},
                                background, run.size)
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
        "preprocessing": PREPROCESSING,
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
        build = BuildContext(model=model, opts=BuildOptions.of(cfg), tmp=tmp, say=say, calib=data.calib,
                             sample=lambda n, seed: stratified_sample(train, n, seed), val_x=data.val.x,
                             val_y=data.val.y, _float_val_probs=ref.val_probs)
        checker = _Checker(cfg=cfg, out=run.out, tmp=tmp, classes=run.classes, size=run.size, test=data.test,
                           val=data.val, ref_pred=ref.pred, ref_acc=ref.accuracy,
                           ref_val_pred=ref.val_probs.argmax(1), base_meta=base_meta, say=say)
        for spec, requested in steps:
            if spec.fmt is Format.IMX500:  # built, simulated and converted in a side environment
                results.append(checker.imx500(spec, run.model, data))
                continue
            candidates = spec.remedies(build) if spec.remedies else [Candidate("default")]
            if requested:
                res, raw = checker.search(spec, candidates, build)
                results.append(res)
            else:  # a dependency only (onnx_float for onnx_int8): built, neither checked nor written
                raw = tmp / ("dep_" + spec.filename)
                spec.build(build, candidates[0], raw)
            build.built[spec.fmt] = raw
    return results


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
        "rule": "gate.judge on the validation split (see edgeflower/export/gate.py)",
        "config": asdict(cfg),
        "seconds": seconds,
        "artifacts": [asdict(r) for r in results],
        "passed": all(r.passed for r in results),
    }
    write_json(run.out / "export_report.json", report)
    atomic_write_text(run.out / "export_report.md", render_table(report))
    return report


# below every cosine similarity: a flower that the background class takes is answered unknown at any threshold
NEVER_KEPT = -2.0


def answer_without(probs: np.ndarray, background: int | None) -> np.ndarray:
    """The top class of each row with the background class's score ignored: the answer without any unknown."""
    if background is None:
        return probs.argmax(1)
    keep = np.array([i for i in range(probs.shape[1]) if i != background])
    return keep[probs[:, keep].argmax(1)]


def similarity_with_background(probs: np.ndarray, sims: np.ndarray, background: int | None) -> np.ndarray:
    """The similarity as the unknown budget sees it: a photo whose top class is the background scores NEVER_KEPT,
    so that calibrating the threshold at a budget counts the flowers the background takes as already spent."""
    if background is None:
        return sims
    return np.where(probs.argmax(1) == background, NEVER_KEPT, sims)


@dataclass
class _Checker:
    """Checks each built artifact through the device runtime, gates it, writes it with its metadata."""
    cfg: ExportConfig
    out: Path
    tmp: Path
    classes: list[str]
    size: int
    test: SplitArrays
    val: SplitArrays
    ref_pred: np.ndarray
    ref_acc: float
    ref_val_pred: np.ndarray
    base_meta: dict
    say: Callable[[str], None]

    def search(self, spec: FormatSpec, candidates: list[Candidate],
               build: BuildContext) -> tuple[ArtifactResult, Path]:
        """Build the candidates in order until one passes the rule (``decide``); keep the best on the validation
        split if none does. Returns the result and the raw (metadata-free) file that later builds may read."""
        attempts, best, best_path = [], None, None
        for i, cand in enumerate(candidates):
            if cand.calib is not None:
                self.say(f"quantizing {spec.filename} ({cand.label}, {len(cand.calib)} calibration images)")
            t = time.perf_counter()
            path = self.tmp / f"try{i}_{spec.filename}"
            options = spec.build(build, cand, path)
            ev = self._evaluate(path)
            verdict, reason = self.decide(spec, ev)
            test_drop = self._drop_pts(ev)
            if spec.remedies is not None:
                attempts.append({"remedy": cand.label, "options": asdict(cand.options) if cand.options else {},
                                 **({"float_layers": options["float_nodes"]} if "float_nodes" in options else {}),
                                 "calibration_images": len(cand.calib) if cand.calib is not None else 0,
                                 "val_accuracy": verdict.accuracy, "val_drop_pts": verdict.drop_pts,
                                 "val_drop_lower_pts": verdict.drop_lower_pts, "agreement": verdict.agreement,
                                 "accuracy": ev.accuracy, "drop_pts": test_drop, "passed": not reason,
                                 "seconds": time.perf_counter() - t})
            if not reason or best is None or verdict.accuracy > best[1][1].accuracy:
                best, best_path = (options, (ev, verdict, reason), t, cand.label), path
            if not reason:
                break
        options, (ev, verdict, reason), t, label = best
        if label != "default" and not reason:
            self.say(f"{spec.filename}: passed with the remedy '{label}'")
        res = self._finish(spec, best_path, t, options, ev, verdict, reason)
        res.remedy = label
        res.attempts = attempts if (self.cfg.auto or self.cfg.mixed_precision) else []
        return res, best_path

    def decide(self, spec: FormatSpec, ev: Evaluation) -> tuple[Verdict, str]:
        """The one rule (gate.judge) on the validation split, and for float artifacts agreement with Keras on
        every test answer. Returns the verdict and the reason it fails ("" when it passes)."""
        val_pred = ev.val_probs.argmax(1)
        verdict = judge(self.ref_val_pred == self.val.y, val_pred == self.val.y, self.ref_val_pred, val_pred,
                        self.cfg.max_drop)
        reason = verdict.reason
        if spec.exact and self.cfg.require_float_agreement:
            differ = int((ev.pred != self.ref_pred).sum())
            if differ:
                reason = (reason + "; " if reason else "") + \
                    f"float artifact disagrees with Keras on {differ} test images"
        return verdict, reason

    def _evaluate(self, path: Path) -> Evaluation:
        self.say(f"checking {path.name} on the test and validation images")
        clf = Classifier(path, threshold=0.0)
        probs, sims = clf.score_batch(self.test.x, desc=f"{path.name} on the test images")
        pred = probs.argmax(1)
        val_probs, val_sims = clf.score_batch(self.val.x, desc=f"{path.name} on the validation images")
        return Evaluation(probs=probs, pred=pred, accuracy=float((pred == self.test.y).mean()), val_probs=val_probs,
                          sims=sims, val_sims=val_sims, clf=clf)

    def _unknown(self, ev: Evaluation, similarity_output: str | None) -> tuple[dict, float]:
        """The artifact's unknown rule: metadata entry and the confidence threshold the device should apply."""
        meta = dict(self.base_meta["unknown"])
        correct = ev.pred == self.test.y
        # background photos (train --background) are right when answered unknown, by either rule; they take no part
        # in calibrating the similarity threshold, which bounds what it costs on flowers
        bg = self.base_meta.get("background_class")
        bg_test = self.test.y == self.classes.index(bg) if bg else np.zeros(len(self.test), bool)
        flower_val = self.val.y != self.classes.index(bg) if bg else np.ones(len(self.val), bool)
        if ev.sims is None:
            if meta.get("method") != "confidence":
                raise ExportError("the converted artifact lost the similarity output")
            budget = self.cfg.unknown_budget_pts / 100
            conf_thr = calibrate_threshold(ev.val_probs, self.val.y, budget)["threshold"]
            kept = ev.probs.max(1) >= conf_thr
            meta.update(confidence_threshold=conf_thr)
        else:
            # the same rule as the confidence threshold, on the similarity score. With a background class, the
            # budget covers both rules: a flower whose top class is the background is answered unknown whatever its
            # similarity (scored below any similarity), and "correct" is the top of the other classes
            bg_index = self.classes.index(bg) if bg else None
            val_correct = (answer_without(ev.val_probs, bg_index) == self.val.y)[flower_val]
            val_sims = similarity_with_background(ev.val_probs, ev.val_sims, bg_index)[flower_val]
            asked = self.cfg.unknown_budget_pts / 100
            # the budget holds on the validation photos; on new ones it is a median, with a spread measured on the
            # validation split alone (calibrated on one half, measured on the other). A small split spreads more:
            # its budget shrinks until new photos pay over 1 point as rarely as on flower_photos (holding_budget)
            budget, spread = holding_budget(val_correct, val_sims, self.val.y[flower_val], asked,
                                            max_share=self.cfg.unknown_max_share)
            cal = calibrate_scores(val_correct, val_sims, budget)
            cal["split_half"] = spread
            cal["budget_asked"] = asked
            conf_thr = 0.0  # the similarity rule replaces the confidence one (--threshold adds it back)
            kept = ev.sims >= cal["threshold"]
            meta.update(similarity_threshold=cal["threshold"], similarity_output=similarity_output,
                        calibration=cal, confidence_threshold=conf_thr)
        right = np.where(bg_test, correct | ~kept, correct & kept)
        meta["test"] = {"accuracy_with_unknown": float(right.mean()),
                        "answered_unknown": float((~kept)[~bg_test].mean()),
                        "budget_pts": budget * 100}
        if bg:
            meta["test"]["background_answered_unknown"] = float(right[bg_test].mean()) if bg_test.any() else None
            flowers = ~bg_test
            # the flowers without any unknown answer (the top of the classes alone), and those the background took
            meta["test"]["flower_accuracy_without_rejection"] = float(
                (answer_without(ev.probs, self.classes.index(bg)) == self.test.y)[flowers].mean())
            meta["test"]["flower_accuracy_with_unknown"] = float(right[flowers].mean())
            meta["test"]["flowers_answered_background"] = float(
                (ev.pred == self.classes.index(bg))[flowers].mean())
        return meta, conf_thr

    def _drop_pts(self, ev: Evaluation) -> float:
        """The accuracy drop on the test split: reported, never decided on."""
        return (self.ref_acc - ev.accuracy) * 100

    def _finish(self, spec: FormatSpec, raw: Path, t0: float, options: dict, ev: Evaluation, verdict: Verdict,
                reason: str) -> ArtifactResult:
        """Write the kept candidate with its metadata under its final name (its FAILED name when it failed the
        gate); its result for the report."""
        passed = not reason
        sim = ev.clf.similarity_output
        unknown, conf_thr = self._unknown(ev, None if sim is None else sim.name)
        meta = self._metadata(spec, ev, options, verdict, passed, unknown, conf_thr)
        acc, pred, drop = ev.accuracy, ev.pred, self._drop_pts(ev)
        del ev  # release the interpreter before the file moves
        final = self.out / (spec.filename if passed else spec.failed_filename)
        size, digest = self._write_artifact(spec, raw, final, meta)
        if not passed:
            self.say(f"FAILED {spec.filename}: {reason} (kept as {final.name})")
        return self._result(spec, final, size, digest, acc, pred, drop, verdict, reason, unknown, conf_thr, t0,
                            options)

    def _result(self, spec: FormatSpec, final: Path, size: int, digest: str, acc: float, pred: np.ndarray,
                drop: float, verdict: Verdict, reason: str, unknown: dict, conf_thr: float, t0: float,
                options: dict) -> ArtifactResult:
        """An artifact's entry in the report: its figures on the test split beside the verdict on validation."""
        ref_pc = per_class_accuracy(self.ref_pred, self.test.y, self.classes)
        pc = per_class_accuracy(pred, self.test.y, self.classes)
        changed = [{"path": self.test.paths[i], "true": self.classes[self.test.y[i]],
                    "keras": self.classes[self.ref_pred[i]], "artifact": self.classes[pred[i]]}
                   for i in np.nonzero(pred != self.ref_pred)[0]]
        return ArtifactResult(
            name=spec.filename, format=spec.fmt.value, path=str(final), passed=not reason, size_bytes=size,
            sha256=digest, accuracy=acc, reference_accuracy=self.ref_acc, drop_pts=drop,
            max_drop_pts=self.cfg.max_drop, argmax_agreement=float((pred == self.ref_pred).mean()),
            per_class_delta_pts={c: (pc[c] - ref_pc[c]) * 100 for c in self.classes}, changed=changed,
            confidence_threshold=conf_thr, unknown=unknown, seconds=time.perf_counter() - t0, options=options,
            reason=reason,
            predictions={p: self.classes[int(i)] for p, i in zip(self.test.paths, pred)},
            gate=verdict.to_dict(),
        )

    def imx500(self, spec: FormatSpec, model, data: _Data) -> ArtifactResult:
        """The AI Camera's package: quantized by Sony's MCT and converted by the IMX500 converter in a side
        environment (export/imx500.py). MCT's simulation of the quantized network on this machine is checked and
        gated like every other artifact; it is a simulation of the chip, not bit-exact."""
        from edgeflower.edge.backends import SIMILARITY
        from edgeflower.edge.classifier import select_similarity
        from edgeflower.export import imx500

        t0 = time.perf_counter()
        similarity = data.bank is not None
        self.say(f"imx500: quantizing (MCT) and converting (Sony's converter) in {imx500.env_dir()}; minutes")
        res = imx500.run_worker(model, data.feature_layer.name if similarity else None, data.calib,
                                {"test": self.test.x, "val": self.val.x}, self.tmp / "imx500", say=self.say,
                                log_path=self.out / "imx500.log")
        differ = int((res.rebuilt["test"][0].argmax(1) != self.ref_pred).sum())
        if differ:
            raise ExportError(f"imx500: the Keras 2 rebuild of the network disagrees with the trained model on "
                              f"{differ} test photos")
        (probs, *feats), (val_probs, *val_feats) = res.quantized["test"], res.quantized["val"]
        sims = val_sims = None
        if similarity:
            k = self.base_meta["unknown"]["neighbours"]
            sims = select_similarity(probs, imx500.similarity(feats[0], data.bank, data.bank_labels, k))
            val_sims = select_similarity(val_probs, imx500.similarity(val_feats[0], data.bank, data.bank_labels, k))
        pred = probs.argmax(1)
        ev = Evaluation(probs=probs, pred=pred, accuracy=float((pred == self.test.y).mean()), val_probs=val_probs,
                        sims=sims, val_sims=val_sims, clf=None)
        verdict, reason = self.decide(spec, ev)
        memory = imx500.memory_figures(res.memory)
        if not memory.get("fits", False):
            used = f"{memory['memory_used_mb']:.2f} MB of {memory['chip_mb']:g} MB" if memory else "no memory report"
            reason = (reason + "; " if reason else "") + f"does not fit the IMX500 ({used})"
        unknown, conf_thr = self._unknown(ev, SIMILARITY)
        if similarity:
            unknown.update(bank="bank.npz", computed_on="the Pi, from the sensor's pooled features")
        options = {"tool": "model-compression-toolkit PTQ, edge-mdt-tpc imx500 1.0, imxconv-tf",
                   "requirement": imx500.REQUIREMENT, "calibration_images": len(data.calib), **res.info["steps"]}
        meta = {**self.base_meta, "format": spec.fmt.value, "runtime": "imx500",
                "input": {"name": "image", "size": [self.size, self.size], "shape": [1, self.size, self.size, 3],
                          "dtype": "uint8", "layout": "NHWC", "quantization": None},
                "output": {"name": "probs", "dtype": "float32", "kind": "probabilities", "quantization": None},
                "sensor_outputs": ["probs", "features"] if similarity else ["probs"],
                "quantized": True, "quantization_options": options, "simulated": True,
                "test_accuracy": ev.accuracy, "test_images": len(self.test), "drop_pts": self._drop_pts(ev),
                "passed_gate": not reason, "gate": verdict.to_dict(), "confidence_threshold": conf_thr,
                "unknown": unknown, "imx500_memory": memory}
        dest = self.out / Path(spec.filename if not reason else spec.failed_filename).parent
        shutil.rmtree(self.out / Path(spec.failed_filename if not reason else spec.filename).parent,
                      ignore_errors=True)  # a package of an earlier export under the other name
        imx500.write_package(res, dest, meta, data.bank, data.bank_labels)
        final = dest / "packerOut.zip"
        if not reason:
            self.say(f"imx500: {memory['memory_used_mb']:.2f} MB of the chip's {memory['chip_mb']:g} MB; package "
                     f"it on the Pi with `imx500-package -i {final.name} -o .` in {dest}")
        else:
            self.say(f"FAILED imx500: {reason} (kept in {dest})")
        return self._result(spec, final, final.stat().st_size, sha256_file(final), ev.accuracy, pred,
                            self._drop_pts(ev), verdict, reason, unknown, conf_thr, t0, options)

    def _metadata(self, spec: FormatSpec, ev: Evaluation, options: dict, verdict: Verdict, passed: bool,
                  unknown: dict, conf_thr: float) -> dict:
        """What the artifact carries about itself: the export's shared fields, its tensors, its figures and rules."""
        inp, outp = ev.clf.backend.input, ev.clf.backend.output
        return {
            **self.base_meta,
            "format": spec.fmt.value,
            "runtime": spec.runtime,
            "input": {"name": inp.name, "size": [self.size, self.size], "shape": [1, self.size, self.size, 3],
                      "dtype": str(inp.dtype), "layout": "NHWC",
                      "quantization": {"scale": inp.scale, "zero_point": inp.zero_point} if inp.quantized else None},
            "output": {"name": outp.name, "dtype": str(outp.dtype), "kind": "probabilities",
                       "quantization": ({"scale": outp.scale, "zero_point": outp.zero_point} if outp.quantized
                                        else None)},
            "quantized": spec.quantized,
            "quantization_options": options,
            "test_accuracy": ev.accuracy,
            "test_images": len(self.test),
            "drop_pts": self._drop_pts(ev),
            "passed_gate": passed,
            "gate": verdict.to_dict(),
            "confidence_threshold": conf_thr,
            "unknown": unknown,
        }

    def _write_artifact(self, spec: FormatSpec, raw: Path, final: Path, meta: dict) -> tuple[int, str]:
        """Embed the metadata into a staged copy of the raw file, then write the sidecar and the artifact
        atomically. Returns the artifact's size and sha256 (also added to the sidecar)."""
        staged = self.tmp / ("meta_" + spec.filename)
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


def render_table(report: dict) -> str:
    """export_report.md: the gate's rule, one table row per artifact, then each one's unknown rule and details."""
    lines = [
        f"# Export report: {report['source']}",
        "",
        f"Keras float test accuracy: {report['keras_test_accuracy'] * 100:.2f}% on {report['test_images']} images. "
        f"The gate decides on the {report.get('validation_images', '?')} validation images: an artifact fails when "
        f"its drop is clearly over --max-drop {report['max_drop_pts']:g} (more than one standard error of the paired "
        "drop over it) or it changes clearly over 10% of the answers; float artifacts must also agree with Keras "
        "on every test answer. The test figures are reported, not decided on.",
        "",
        "| artifact | format | size (KiB) | val drop (pts) | less 1 s.e. | test acc | test drop (pts) | "
        "test agree | passed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines += [_table_row(a) for a in report["artifacts"]]
    lines.append("")
    for a in report["artifacts"]:
        lines += _unknown_lines(a)
    lines.append("")
    for a in report["artifacts"]:
        lines += _detail_lines(a)
    return "\n".join(lines) + "\n"


def _table_row(a: dict) -> str:
    g = a.get("gate") or {}
    remedy = "" if a.get("remedy", "default") == "default" else f" ({a['remedy']})"
    return (f"| {Path(a['path']).name} | {a['format']} | {a['size_bytes'] / 1024:,.0f} | "
            f"{g.get('drop_pts', float('nan')):+.2f} | {g.get('drop_lower_pts', float('nan')):+.2f} | "
            f"{a['accuracy'] * 100:.2f}% | {a['drop_pts']:+.2f} | {a['argmax_agreement'] * 100:.2f}% | "
            f"{'yes' + remedy if a['passed'] else 'NO: ' + a['reason']} |")


def _unknown_lines(a: dict) -> list[str]:
    """The artifact's unknown rule, what it does on the test photos, and its budget on new photos."""
    u = a.get("unknown") or {}
    if "test" not in u:
        return []
    rule = (f"similarity to the {ood.ordinal(u.get('neighbours', 1))} training photo"
            f"{' of the predicted class' if u.get('per_class') else ''} "
            f">= {u['similarity_threshold']:.4f}"
            if "similarity_threshold" in u else f"confidence >= {u.get('confidence_threshold', 0):.4f}")
    lines = [f"- unknown, {Path(a['path']).name}: {rule} (calibrated on val); test photos answered unknown "
             f"{u['test']['answered_unknown'] * 100:.1f}%, test accuracy counting them wrong "
             f"{u['test']['accuracy_with_unknown'] * 100:.2f}%"
             + (f"; background photos answered unknown {u['test']['background_answered_unknown'] * 100:.1f}%"
                if u["test"].get("background_answered_unknown") is not None else "")]
    t = u["test"]
    if t.get("flower_accuracy_without_rejection") is not None:
        lines.append(f"  - the test photos of the classes: {t['flower_accuracy_without_rejection'] * 100:.2f}% without "
                     f"any unknown answer -> {t['flower_accuracy_with_unknown'] * 100:.2f}% counting unknown as wrong "
                     f"({t['flowers_answered_background'] * 100:.1f}% taken by the background class)")
    sh = (u.get("calibration") or {}).get("split_half")
    if sh:
        asked = (u.get("calibration") or {}).get("budget_asked")
        if asked is not None and abs(asked * 100 - sh["budget_pts"]) > 1e-9:
            lines.append(f"  - the {asked * 100:g}-point budget was lowered to {sh['budget_pts']:.2g}: with "
                         f"{u['calibration']['n']} validation photos, it went over {sh['limit_pts']:g} point "
                         "on new photos too often")
        lines.append(f"  - the {sh['budget_pts']:.2g}-point budget on new photos (validation split halves, "
                     f"{sh['rounds']} splits): median {sh['median_pts']:.2f} points, 90th percentile "
                     f"{sh['p90_pts']:.2f}; over {sh['limit_pts']:g} point in {sh['share_over_limit'] * 100:.0f}% "
                     "of the splits")
    return lines


def _detail_lines(a: dict) -> list[str]:
    """The artifact's hash, per-class deltas, changed answers, the remedies tried and the float layers' costs."""
    deltas = ", ".join(f"{c} {d:+.1f}" for c, d in a["per_class_delta_pts"].items())
    lines = [f"- {Path(a['path']).name}: sha256 `{a['sha256'][:16]}...`, per-class delta (pts): {deltas}"]
    for ch in a["changed"][:10]:
        lines.append(f"  - changed: {ch['path']} (true {ch['true']}): Keras {ch['keras']} -> {ch['artifact']}")
    for at in a.get("attempts", []):
        lines.append(f"  - tried {at['remedy']}: validation drop {at['val_drop_pts']:+.2f} pts (less one s.e. "
                     f"{at['val_drop_lower_pts']:+.2f}), test {at['accuracy'] * 100:.2f}% "
                     f"({'pass' if at['passed'] else 'fail'})")
    steps = (a.get("options") or {}).get("steps")
    if steps:  # the accuracy-controlled remedy: what each layer returned to float bought and cost
        base = steps[0]["p50_ms_1_thread"]
        for st in steps[1:]:
            lines.append(f"  - float layer {st['float_layers']}: `{st['layer']}`: validation drop "
                         f"{st['val_drop_pts']:+.2f} pts, one-thread p50 {st['p50_ms_1_thread']:.2f} ms "
                         f"({st['p50_ms_1_thread'] / base:.2f}x of all-int8)")
    return lines
