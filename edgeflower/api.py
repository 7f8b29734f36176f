"""edgeflower as a library: what every command does, as functions with typed results.

    import edgeflower
    run = edgeflower.train("my_photos", out="runs/mine")
    report = run.export(int8=True)                      # raises AccuracyDropError when an artifact fails the gate
    clf = edgeflower.Classifier.load(report.path("model_int8.tflite"))
    print(clf.classify("photo.jpg").label)

The command line (edgeflower/cli) is a layer over exactly these functions: it parses options, calls one of them and
prints what it returns (an import contract forbids it anything else). Heavy imports happen inside the functions, so
``import edgeflower`` loads neither TensorFlow nor a runtime. Progress is quiet by default: messages go to the
``edgeflower`` logger and no progress bar is drawn; pass ``progress=print`` (any callable taking a line) to get the
messages and the bars, as the command line does. Errors are the typed ones of ``edgeflower.errors``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from edgeflower.errors import AccuracyDropError, EdgeflowerError, RunDirError

log = logging.getLogger("edgeflower")

Progress = Callable[[str], None]


@contextlib.contextmanager
def _reporting(progress: Progress | None) -> Iterator[Progress]:
    """The callable a step reports to: ``progress`` with the bars on, or the logger with the bars off."""
    if progress is not None:
        yield progress
        return
    from edgeflower.util.progress import bars_off

    with bars_off():
        yield log.info


# ---------------------------------------------------------------------------------------------------- train
@dataclass
class Run:
    """A training run's folder: the model, its configuration and its metrics on the split."""
    path: Path
    config: dict
    metrics: dict
    history: dict = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Run:
        """A run folder written by ``train`` (config.json, metrics.json, model.keras)."""
        p = Path(path)
        try:
            config = json.loads((p / "config.json").read_text())
            metrics = json.loads((p / "metrics.json").read_text())
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{p} is not a run folder of `edgeflower train` (config.json and metrics.json): "
                              f"{exc}") from None
        return cls(p, config, metrics)

    @property
    def test_accuracy(self) -> float:
        return float(self.metrics["test"]["accuracy"])

    @property
    def classes(self) -> list[str]:
        return list(self.config.get("classes", []))

    def export(self, int8: bool = False, progress: Progress | None = None, **options: Any) -> ExportReport:
        """``export(self.path, ...)``: the artifacts in ``self.path / "export"`` unless ``out=`` says otherwise."""
        return export(self.path, int8=int8, progress=progress, **options)

    def evaluate(self, subset: str = "test", **options: Any) -> dict:
        """The metrics of the run's model on one part of its split (``evaluate``)."""
        return evaluate(self.path, subset=subset, **options)

    def to_dict(self) -> dict:
        return {"path": str(self.path), "config": self.config, "metrics": self.metrics}


def model_names() -> list[str]:
    """The models ``train`` builds (``model=``)."""
    from edgeflower.training.models import MODELS

    return list(MODELS)


def train(data: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
          model: str = "efficientnet_lite0", progress: Progress | None = None, **options: Any) -> Run:
    """Train ``model`` on ``data`` (one folder per class; None: flower_photos) into the run folder ``out``.

    ``options`` are the fields of ``edgeflower.training.loop.TrainConfig`` (``epochs``, ``augment``, ``fine_tune``,
    ``input_size``, ``outliers``, ``use_outliers``, ``force``, ...); unset ones take the recommended recipe.
    """
    from edgeflower.training.loop import TrainConfig, train as run_train

    if progress is None and options.get("verbose") is None:
        options["verbose"] = 0  # no Keras epoch lines either
    cfg = TrainConfig(model=model, data=None if data is None else str(data), out=None if out is None else str(out),
                      **options)
    with _reporting(progress) as say:
        r = run_train(cfg, say=say)
    return Run(Path(r.run_dir), r.config, r.metrics, r.history)


def evaluate(target: str | os.PathLike, subset: str = "test", data: str | None = None, split: str | None = None,
             limit_per_class: int | None = None) -> dict:
    """The metrics (accuracy, loss, macro-F1, per class) of a saved model (a run folder or .keras) on ``subset``."""
    from edgeflower.training.loop import evaluate as run_evaluate

    return run_evaluate(str(target), split=subset, data=data, manifest_path=split, limit_per_class=limit_per_class)


# ---------------------------------------------------------------------------------------------------- export
@dataclass
class Artifact:
    """One exported file and the gate's verdict on it (the rows of export_report.md)."""
    name: str
    format: str
    path: Path
    passed: bool
    accuracy: float  # on the test photos, without unknown
    drop_pts: float  # against the Keras float model, on the test photos (reported)
    val_drop_pts: float  # on the validation photos (what the gate decides on)
    size_bytes: int
    reason: str  # why it failed ("" when it passed)
    speedup_vs_float: float | None  # an int8 artifact against its float sibling, timed at export
    unknown: dict = field(repr=False)

    @classmethod
    def from_dict(cls, a: dict) -> Artifact:
        return cls(name=a["name"], format=a["format"], path=Path(a["path"]), passed=a["passed"],
                   accuracy=a["accuracy"], drop_pts=a["drop_pts"], val_drop_pts=(a.get("gate") or {}).get("drop_pts",
                                                                                                       float("nan")),
                   size_bytes=a["size_bytes"], reason=a.get("reason", ""),
                   speedup_vs_float=(a.get("speed") or {}).get("speedup_vs_float"), unknown=a.get("unknown") or {})


@dataclass
class ExportReport:
    """What ``export`` wrote (export_report.json as a typed object; ``to_dict()`` gives the JSON)."""
    out: Path
    passed: bool
    keras_test_accuracy: float
    artifacts: list[Artifact]
    seconds: float
    raw: dict = field(repr=False)

    @classmethod
    def from_dict(cls, report: dict) -> ExportReport:
        return cls(out=Path(report["out"]), passed=report["passed"], keras_test_accuracy=report["keras_test_accuracy"],
                   artifacts=[Artifact.from_dict(a) for a in report["artifacts"]], seconds=report["seconds"],
                   raw=report)

    def artifact(self, name: str) -> Artifact:
        for a in self.artifacts:
            if a.name == name or a.path.name == name:
                return a
        raise KeyError(f"no artifact {name!r} in this export: {', '.join(a.name for a in self.artifacts)}")

    def path(self, name: str) -> Path:
        """The file of the artifact ``name`` (e.g. "model_int8.tflite")."""
        return self.artifact(name).path

    def render(self) -> str:
        """export_report.md's text."""
        from edgeflower.exporting.report import render_table

        return render_table(self.raw)

    def to_dict(self) -> dict:
        return self.raw


def export(target: str | os.PathLike, int8: bool = False, progress: Progress | None = None,
           **options: Any) -> ExportReport:
    """Export a run folder (or .keras file) to float and int8 TFLite/ONNX, each through the gate.

    ``options`` are the fields of ``edgeflower.exporting.pipeline.ExportConfig`` (``formats``, ``max_drop``, ``out``,
    ``auto``, ``onnx``, ``calibration``, ...). An artifact over the accuracy budget raises ``AccuracyDropError``
    after everything is written; its ``export_report`` attribute holds the ``ExportReport``.
    """
    from edgeflower.exporting.pipeline import ExportConfig, export as run_export

    if isinstance(options.get("formats"), str):
        options["formats"] = tuple(f.strip() for f in options["formats"].split(","))
    cfg = ExportConfig(target=str(target), int8=int8, **{k: v for k, v in options.items() if v is not None})
    with _reporting(progress) as say:
        try:
            return ExportReport.from_dict(run_export(cfg, progress=say))
        except AccuracyDropError as exc:
            exc.export_report = ExportReport.from_dict(exc.report) if exc.report is not None else None
            raise


# ---------------------------------------------------------------------------------------------------- bench
@dataclass
class BenchResult:
    """One artifact at one thread count (``error`` set, figures None, when it could not be measured)."""
    name: str
    threads: int
    p50_ms: float | None
    p90_ms: float | None
    e2e_p50_ms: float | None
    throughput_ips: float | None
    peak_rss_mb: float | None
    accuracy: float | None
    speedup_vs_float: float | None
    error: str | None = None
    warning: str | None = None

    @classmethod
    def from_dict(cls, r: dict) -> BenchResult:
        lat, e2e = r.get("latency_ms") or {}, r.get("e2e_ms") or {}
        return cls(name=r["name"], threads=r.get("threads"), p50_ms=lat.get("p50"), p90_ms=lat.get("p90"),
                   e2e_p50_ms=e2e.get("p50"), throughput_ips=r.get("throughput_ips"),
                   peak_rss_mb=r.get("peak_rss_mb"), accuracy=r.get("accuracy"),
                   speedup_vs_float=r.get("speedup_vs_float"), error=r.get("error"), warning=r.get("speed_warning"))


@dataclass
class BenchReport:
    results: list[BenchResult]
    raw: dict = field(repr=False)

    def render(self) -> str:
        """The table ``edgeflower bench`` prints."""
        from edgeflower.benchmarking import render

        return render(self.raw)

    def save(self, json_path: str | os.PathLike | None = None, plot_path: str | os.PathLike | None = None,
             progress: Progress | None = None) -> None:
        """The report as JSON, and its plot (by default beside the JSON; needs matplotlib)."""
        from edgeflower.benchmarking import save

        save(self.raw, json_path, plot_path, say=progress or log.info)

    def to_dict(self) -> dict:
        return self.raw


def bench(artifacts: list[str | os.PathLike] | str | os.PathLike, threads: tuple[int, ...] = (1, 2, 4),
          progress: Progress | None = None, **options: Any) -> BenchReport:
    """Latency, throughput, memory, size and accuracy of exported artifacts, each (artifact, thread count) in a
    fresh process. ``options`` are the fields of ``edgeflower.benchmarking.BenchConfig`` (``runs``, ``warmup``,
    ``data``, ``accuracy``, ``backend``, ...). An artifact that cannot be measured gets a result with ``error`` set."""
    from edgeflower.benchmarking import BenchConfig, bench as run_bench

    paths = [artifacts] if isinstance(artifacts, (str, os.PathLike)) else list(artifacts)
    cfg = BenchConfig(artifacts=tuple(str(p) for p in paths), threads=tuple(threads), **options)
    with _reporting(progress) as say:
        report = run_bench(cfg, progress=say)
    return BenchReport([BenchResult.from_dict(r) for r in report["results"]], report)


# ---------------------------------------------------------------------------------------------------- data
def check_data(data: str | os.PathLike | None = None, progress: Progress | None = None) -> dict:
    """Decode every image of a dataset: counts, unreadable files, conversions, duplicates, near-duplicates (the
    folder is ``data``, else $EDGEFLOWER_DATA, the cache, or a download of flower_photos)."""
    from edgeflower.data.check import check_dataset
    from edgeflower.data.source import resolve_data_dir

    root = resolve_data_dir(None if data is None else str(data))
    with _reporting(progress):
        return {"root": str(root), **check_dataset(root).to_dict()}  # bars as _reporting says


def split_data(data: str | os.PathLike | None = None, seed: int | None = None,
               out: str | os.PathLike | None = None) -> dict:
    """Make the split of a dataset (70:20:10, duplicates kept together). With ``out``, write it there (your own
    dataset); without, check that it is the frozen flower_photos split (an EdgeflowerError names the differences)."""
    from edgeflower.data.source import resolve_data_dir
    from edgeflower.data.split import SEED, diff_manifests, load_manifest, make_split, write_manifest

    m = make_split(resolve_data_dir(None if data is None else str(data)), seed=SEED if seed is None else seed)
    result = {"counts": m["counts"], "excluded": len(m["excluded"]), "written": None, "frozen_sha256": None}
    if out:
        write_manifest(m, str(out))
        return {**result, "written": str(out)}
    frozen = load_manifest()
    diffs = diff_manifests(m, frozen.raw)
    if diffs:
        raise EdgeflowerError("the regenerated split differs from the frozen one: " + "; ".join(diffs)
                              + ". Your data differs from flower_photos; use --out to make your own manifest")
    return {**result, "frozen_sha256": frozen.sha256}


def clean_data(out: str | os.PathLike = "runs/clean", progress: Progress | None = None, **options: Any) -> dict:
    """Flag duplicates, photos filed under two classes, likely mislabeled and off-topic photos; writes a report, a
    contact sheet and an exclusion list (``train(exclude=...)``) in ``out``. ``options``: ``CleanConfig``'s fields."""
    from edgeflower.clean import CleanConfig, clean

    with _reporting(progress):
        return clean(CleanConfig(out=str(out), **options))


def review(saved: str | os.PathLike) -> dict:
    """The contact sheet (review.html, review.png) of the frames ``classify --save SAVED`` kept, by answer."""
    from edgeflower.data.review import review as run_review

    return run_review(saved)


def serve_review(saved: str | os.PathLike, into: str | os.PathLike | None = None, host: str = "127.0.0.1",
                 port: int = 8765, allow_remote: bool = False, ready: Progress | None = None) -> None:
    """The sorting page for the frames in ``saved`` (``data review --serve``), until Ctrl-C: a click or a key files
    a frame under a class (the dataset ``into``'s, else the classes the frames' answers name), as background, or
    discards it; ``ready(url)`` is called once it listens."""
    from edgeflower.data.review_server import serve
    from edgeflower.data.sorting import frame_classes

    serve(str(saved), frame_classes(saved, into), host=host, port=port, allow_remote=allow_remote, ready=ready)


def add_photos(saved: str | os.PathLike, into: str | os.PathLike):
    """Copy the frames sorted into ``saved/<class>/`` into the dataset ``into`` (never overwriting); an
    ``AddReport``."""
    from edgeflower.data.review import add

    return add(saved, into)


# ---------------------------------------------------------------------------------------------------- device
def classify_stream(options: dict, echo: Callable[..., None], tty: bool = False, quiet: bool = False):
    """``edgeflower classify``: the device loop on a camera, video or still images, with the sinks and the live
    page, until the source ends, ``max_frames``, Ctrl-C or SIGTERM; ``options`` are ``classify``'s parameters. For
    single images in Python, use ``Classifier.load(path).classify(image)``."""
    from edgeflower.edge.app import DeviceOptions, run_console

    return run_console(DeviceOptions.from_params(options), echo, tty=tty, quiet=quiet)


def check_device_options(options: dict) -> None:
    """What ``classify`` would refuse at start (the model, files, the sinks' addresses), raised now."""
    from edgeflower.edge.app import DeviceOptions, check

    check(DeviceOptions.from_params(options))


def install_service(model: str | os.PathLike, classify_args: list[str], **options: Any):
    """A systemd unit running ``edgeflower classify MODEL CLASSIFY_ARGS...``; returns the written ``Unit``."""
    from edgeflower.edge.service import install

    return install(str(model), list(classify_args), **options)


def uninstall_service(name: str = "edgeflower", **options: Any) -> list[Path]:
    """Remove the unit ``install_service`` wrote and its boot links; the removed paths."""
    from edgeflower.edge.service import uninstall

    return list(uninstall(name, **options))


__all__ = ["Artifact", "BenchReport", "BenchResult", "ExportReport", "Run", "add_photos", "bench", "check_data",
           "check_device_options", "classify_stream", "clean_data", "evaluate", "export", "install_service",
           "model_names", "review", "serve_review", "split_data", "train", "uninstall_service"]
