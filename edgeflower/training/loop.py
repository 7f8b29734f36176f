"""Training: validate everything first, train (head-on-cached-features for frozen backbones), evaluate, report.

The run is written to ``<out>.partial/`` and renamed to ``<out>/`` only when complete, so a crash or Ctrl-C
never leaves a run directory that looks finished.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeflower.data.arrays import SplitArrays, load_split
from edgeflower.data.source import resolve_data_dir
from edgeflower.data.split import auto_split, is_packaged_dataset, load_manifest, manifest_from_dict, write_manifest
from edgeflower.edge.preprocess import RESIZE, RESIZE_FILTERS, resize_of
from edgeflower.errors import DataError, RunDirError
from edgeflower.keras_io import load_keras_model, predict_probs, resolve_run  # noqa: F401 - also train's API
from edgeflower.training.models import ModelSpec, count_params, get_spec
from edgeflower.util.deps import require
from edgeflower.util.files import atomic_path, atomic_write_text, write_json
from edgeflower.util.metrics import classification_metrics
from edgeflower.util.version import __version__

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    model: str = "efficientnet_lite0"
    data: str | None = None
    out: str | None = None
    epochs: int | None = None  # None: the model's default (40 for transfer models, with early stopping; 30 CNN)
    batch_size: int = 32
    augment: bool | None = None  # None: the model's default
    aug_views: int = 4  # augmented views of the training set whose features are cached (transfer + augment)
    fine_tune: int = 0  # unfreeze the top N backbone layers after the head converges
    fine_tune_epochs: int = 10
    fine_tune_lr: float = 1e-5
    fine_tune_schedule: str = "constant"  # or "cosine": decay to 0 over the fine-tuning epochs
    mixup: float = 0.0  # Beta(a, a) mixing of image pairs and their labels, in end-to-end training; 0 = off
    learning_rate: float = 1e-3
    label_smoothing: float | None = None  # None: the model's default (0.1 for transfer models, 0 for the CNN)
    patience: int = 5
    limit_per_class: int | None = None
    seed: int = 42
    weights: str | None = "imagenet"
    input_size: int | None = None
    split: str | None = None  # manifest path; None: the packaged flower_photos split
    exclude: str | None = None  # file listing relative paths to leave out of training (data clean)
    background: str | None = None  # folder of photos of the camera's scene without flowers: one more class
    # photos of none of the classes, trained into the same class (edgeflower.data.outliers): a folder, or None for
    # the default set ($EDGEFLOWER_OUTLIERS, the cache, else a download); use_outliers=False turns them off
    outliers: str | None = None
    use_outliers: bool = True
    resize: str | None = None  # how photos reach the input size (edgeflower.edge.preprocess); None: RESIZE
    force: bool = False
    verbose: int | None = None


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    config: dict
    history: dict = field(default_factory=dict)


def default_run_dir(model: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{model}-{stamp}"


def prepare_run_dir(out: Path, force: bool) -> Path:
    if out.exists():
        if not force:
            raise RunDirError(f"run directory {out} already exists: choose another --out, or pass --force to "
                              "replace it")
        if not (out / "config.json").exists() and any(out.iterdir()):
            raise RunDirError(f"{out} exists and is not an edgeflower run directory; refusing to replace it")
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    return partial


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "edgeflower": __version__}
    for d in ("tensorflow", "keras", "numpy", "pillow"):
        try:
            out[d] = md.version(d)
        except md.PackageNotFoundError:
            pass
    return out


def load_data(cfg: TrainConfig, size: int, say: Callable[[str], None] | None = None,
              resize: str = RESIZE) -> tuple[Path, Any, dict[str, SplitArrays], dict | None]:
    """The dataset's train/val/test arrays. Without --split, flower_photos takes the frozen split; any other folder
    gets a split of its own (``auto_split``), marked ``automatic`` in ``manifest.raw`` so that train saves it in the
    run as split.json."""
    root = resolve_data_dir(cfg.data)
    manifest = load_manifest(cfg.split)
    if cfg.split is None and not is_packaged_dataset(root, manifest):
        (say or log.info)(f"{root} is not flower_photos: making a stratified, seeded, duplicate-safe split of it "
                          "(about 10% test)")
        raw = auto_split(root, seed=cfg.seed)
        raw["automatic"] = True
        manifest = manifest_from_dict(raw)
    exclude = set()
    if cfg.exclude:
        try:
            exclude = {ln.strip() for ln in Path(cfg.exclude).read_text().splitlines()
                       if ln.strip() and not ln.startswith("#")}
        except OSError as exc:
            raise DataError(f"cannot read the exclusion list {cfg.exclude}: {exc.strerror}") from exc
    arrays = {}
    for split in ("train", "val", "test"):
        limit = cfg.limit_per_class if split != "test" else (cfg.limit_per_class and max(2, cfg.limit_per_class // 2))
        arrays[split] = load_split(root, manifest, split, size, limit_per_class=limit,
                                   exclude=exclude if split == "train" else None, resize=resize)
        if len(arrays[split]) == 0:
            raise DataError(f"the {split} split is empty after --limit-per-class/--exclude; use a larger limit")
    background = _background(cfg, say)
    if background and "background" in arrays["train"].classes:
        raise DataError("the dataset already has a class named 'background'; --background and the outlier photos "
                        "add that class themselves: rename the folder, or pass --no-outliers without --background")
    return root, manifest, arrays, background


def _background(cfg: TrainConfig, say: Callable[[str], None] | None = None) -> dict | None:
    """The run's background class: the camera's scene (--background) and the outlier photos (--outliers or the
    default set), each with the split it trains with (recorded in the config, so that export and eval load the
    same photos). None when there is neither."""
    from edgeflower.data import outliers
    from edgeflower.data.background import BACKGROUND, split_background

    found = []
    if cfg.background:
        found.append({"kind": "scene", "dir": str(Path(cfg.background).resolve()),
                      "splits": split_background(cfg.background)})
    folder = outliers.resolve(cfg.outliers, cfg.use_outliers, say=say)
    if folder is not None:
        sp = outliers.split_outliers(folder)
        found.append({"kind": "outliers", "dir": str(Path(folder).resolve()), "splits": sp["splits"],
                      "heldout": sp["heldout"], "manifest": sp["manifest"], "claimed": []})
    return {"class": BACKGROUND, "parts": found} if found else None


def _add_background(tf, built, arrays: dict[str, SplitArrays], background: dict, root: Path, size: int,
                    resize: str, say: Callable[[str], None]) -> dict[str, SplitArrays]:
    """The background photos appended to every split as the last class. For a dataset that is not flower_photos,
    outlier photos that the user's classes claim (edgeflower.data.claim) are listed and left out first: a generic
    set may hold photos of the user's own classes."""
    from edgeflower.data.background import load_background, part, with_background

    out = part(background, "outliers")
    if out is not None and not is_packaged_dataset(root):  # flower_photos' classes: the set was checked against them
        from edgeflower.data.claim import claimed_outliers

        n_classes = len(arrays["train"].classes)
        if built.features is None:
            say("the outlier photos are not checked against your classes: this model has no pretrained features "
                "(a transfer model has; or pass --no-outliers if the set may hold photos of your classes)")
        else:
            both = {s: load_background(out["dir"], out["splits"][s], size, n_classes, arrays["train"].classes,
                                       "outliers", resize) for s in ("train", "val")}
            claims = claimed_outliers(lambda x, desc: extract_features(tf, built.features, x, desc=desc),
                                      arrays["train"], both)
            if claims:
                out["claimed"] = claims
                drop = {c["path"].split(":", 1)[1] for c in claims}
                out["splits"] = {s: [it for it in items if it[0] not in drop] for s, items in out["splits"].items()}
                say(f"left out {len(claims)} outlier photos that your classes claim (as close to a class as its own "
                    "photos are to each other); they are listed in the run's config.json under background")
    arrays = with_background(arrays, background, size, resize)
    counts = _outlier_counts(background)
    if counts:
        say(f"outlier photos (answered unknown): {counts['train']} train, {counts['val']} val "
            f"({counts['heldout']} held out by source for the unseen figure, {counts['claimed']} claimed by your "
            "classes and left out)")
    return arrays


def _outlier_counts(background: dict | None) -> dict | None:
    from edgeflower.data.background import part

    out = part(background, "outliers")
    if out is None:
        return None
    return {"train": len(out["splits"]["train"]), "val": len(out["splits"]["val"]), "heldout": out["heldout"],
            "claimed": len(out.get("claimed") or []), "dir": out["dir"]}


def augmenter(keras, seed: int):
    """On-the-fly augmentation: horizontal flip, ~20% zoom, translation, ~30% contrast."""
    from keras import layers

    return keras.Sequential([
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomZoom(0.2, seed=seed + 1),
        layers.RandomTranslation(0.1, 0.1, seed=seed + 2),
        layers.RandomContrast(0.3, seed=seed + 3),
    ], name="augment")


def mixup_batch(tf, xb, yb, alpha: float):
    """Mixup (Zhang et al., 2018): each image and its one-hot label are blended with those of another image of the
    batch, with a weight drawn from Beta(alpha, alpha) per image."""
    n = tf.shape(xb)[0]
    g1 = tf.random.gamma([n], alpha)
    g2 = tf.random.gamma([n], alpha)
    lam = g1 / (g1 + g2)
    perm = tf.random.shuffle(tf.range(n))
    lx = tf.reshape(lam, [-1, 1, 1, 1])
    ly = tf.reshape(lam, [-1, 1])
    return lx * xb + (1 - lx) * tf.gather(xb, perm), ly * yb + (1 - ly) * tf.gather(yb, perm)


def _dataset(tf, x: np.ndarray, y: np.ndarray, n_classes: int, batch: int, shuffle: bool, seed: int,
             aug=None, mixup: float = 0.0):
    # Row indices are shuffled and batched, and each batch's images are read when it is needed: the images may be
    # an on-disk store (ImageStore) larger than memory, and from_tensor_slices would copy them all into a tensor.
    # The shuffle draws the same order for indices as it did for the images themselves.
    ds = tf.data.Dataset.range(len(x))
    if shuffle:
        ds = ds.shuffle(min(len(x), 4096), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch)
    labels = tf.constant(np.asarray(y, np.int64))
    row_shape = tuple(int(d) for d in x.shape[1:])

    def read(idx):
        return np.ascontiguousarray(x[idx], dtype=np.uint8)

    def prep(idx):
        xb = tf.numpy_function(read, [idx], tf.uint8, stateful=False)
        xb.set_shape((None,) + row_shape)
        yb = tf.gather(labels, idx)
        xb = tf.cast(xb, tf.float32)
        if aug is not None:
            xb = aug(xb, training=True)
        yb = tf.one_hot(yb, n_classes)
        if mixup > 0:
            xb, yb = mixup_batch(tf, xb, yb, mixup)
        return xb, yb

    return ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def resume_dir(out: Path) -> Path:
    """Where an end-to-end phase (fine-tuning, the CNN) keeps its per-epoch backup: beside the run, so that a
    rerun of the same command after a crash, a Ctrl-C or the end of a session continues from the last finished
    epoch (Keras's BackupAndRestore: weights, optimizer state and the epoch; removed when the phase ends)."""
    return out.with_name(out.name + ".resume")


def _match_backup(backup: Path, cfg: TrainConfig) -> None:
    """Keep an epoch backup only for the command that wrote it: another configuration starts afresh."""
    stamp = backup / "edgeflower_config.json"
    want = json.dumps(asdict(cfg), sort_keys=True, default=str)
    if backup.exists() and (not stamp.is_file() or stamp.read_text() != want):
        log.warning("ignoring the epoch backup in %s: it was written by another configuration", backup)
        shutil.rmtree(backup)
    backup.mkdir(parents=True, exist_ok=True)
    stamp.write_text(want)


def _callbacks(keras, patience: int, backup: Path | None = None):
    class LogLearningRate(keras.callbacks.Callback):
        """Record the learning rate in effect at the end of each epoch (a schedule's current value)."""

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs["learning_rate"] = float(np.asarray(self.model.optimizer.learning_rate))

    cbs = [LogLearningRate(),
           keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)]
    if backup is not None:
        if (backup / "training_metadata.json").exists():
            log.warning("resuming from the backup in %s (an earlier run of this command stopped before the end)",
                        backup)
        cbs.append(keras.callbacks.BackupAndRestore(str(backup)))
    return cbs


def _verbose(cfg: TrainConfig) -> int:
    if cfg.verbose is not None:
        return cfg.verbose
    return 1 if sys.stderr.isatty() else 2


def extract_features(tf, features_model, x: np.ndarray, batch: int = 32, aug=None, desc: str = "") -> np.ndarray:
    """Pooled backbone features of every image (optionally of an augmented view), in compiled batches."""
    from edgeflower.util.progress import progress

    out = []
    starts = range(0, len(x), batch)
    for s in progress(starts, total=len(starts), desc=desc or "features"):
        xb = x[s:s + batch].astype(np.float32)
        if aug is not None:
            xb = np.asarray(aug(xb, training=True))
        out.append(np.asarray(features_model.predict_on_batch(xb)))
    return np.concatenate(out) if out else np.zeros((0, int(features_model.output.shape[-1])), np.float32)


@dataclass(frozen=True)
class _Settings:
    """The options a run trains with: the model's defaults where the command left them out."""
    spec: ModelSpec
    size: int
    augment: bool
    epochs: int
    label_smoothing: float
    resize: str = RESIZE


def train(cfg: TrainConfig, say: Callable[[str], None] | None = None) -> RunResult:
    """Train and write the run directory. ``say`` gets the one-line messages a user should see (default: the log)."""
    say = say or log.info
    st = _settings(cfg)
    out = Path(cfg.out) if cfg.out else default_run_dir(cfg.model)
    if out.exists() and not cfg.force:
        raise RunDirError(f"run directory {out} already exists: choose another --out, or pass --force to replace it")
    # validate data before building anything heavy: a bad file must not end a long run halfway
    root, manifest, arrays, background = load_data(cfg, st.size, say, st.resize)
    tf = require("tensorflow", "training")
    import keras

    keras.utils.set_random_seed(cfg.seed)
    classes = list(arrays["train"].classes) + (["background"] if background else [])  # + the background class
    weights = None if (cfg.weights in (None, "none", "None")) else cfg.weights
    built = st.spec.build(len(classes), input_size=st.size, **({} if not st.spec.transfer else {"weights": weights}))
    if background:
        arrays = _add_background(tf, built, arrays, background, root, st.size, st.resize, say)
    partial = prepare_run_dir(out, cfg.force)  # after the build: bad weights leave no half-written run
    split_path = _save_split(manifest, cfg.split, out, partial, say)
    _match_backup(resume_dir(out), cfg)
    t0 = time.perf_counter()
    history, timings = _fit(tf, keras, built, cfg, st, arrays, len(classes), out)
    train_seconds = time.perf_counter() - t0
    with atomic_path(partial / "model.keras", suffix=".keras") as tmp:
        built.model.save(tmp)
    config = {
        **asdict(cfg), "out": str(out), "model": cfg.model, "input_size": st.size, "augment": st.augment,
        "epochs": st.epochs, "label_smoothing": st.label_smoothing, "resize": st.resize,
        "weights": weights, "data_dir": str(Path(root).resolve()), "classes": classes,
        "background": background,
        "outlier_photos": _outlier_counts(background),
        "split": split_path,
        "split_manifest": split_path or "packaged:flower_photos_split.json", "split_manifest_sha256": manifest.sha256,
        "counts": {k: len(v) for k, v in arrays.items()}, "versions": versions(), "train_seconds": train_seconds,
        "timings": timings, "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    metrics = _write_run(built.model, arrays, classes, config, history, partial, out)
    return RunResult(out, metrics, config, history)


def _settings(cfg: TrainConfig) -> _Settings:
    """The model's defaults filled in, and the options checked before any photo loads."""
    spec = get_spec(cfg.model)
    st = _Settings(spec=spec, size=cfg.input_size or spec.input_size,
                   augment=spec.augment if cfg.augment is None else cfg.augment, epochs=cfg.epochs or spec.epochs,
                   label_smoothing=spec.label_smoothing if cfg.label_smoothing is None else cfg.label_smoothing,
                   resize=cfg.resize or RESIZE)
    if st.resize not in RESIZE_FILTERS:
        raise DataError(f"--resize must be one of {', '.join(RESIZE_FILTERS)} (got {st.resize!r})")
    if cfg.batch_size < 1 or st.epochs < 1:
        raise DataError(f"--batch-size and --epochs must be at least 1 (got {cfg.batch_size}, {st.epochs})")
    if cfg.fine_tune_schedule not in ("constant", "cosine"):
        raise DataError(f"--fine-tune-schedule must be constant or cosine (got {cfg.fine_tune_schedule!r})")
    if cfg.mixup < 0:
        raise DataError(f"--mixup must be 0 (off) or a positive Beta parameter (got {cfg.mixup})")
    if cfg.mixup > 0 and spec.transfer and not cfg.fine_tune:
        log.warning("--mixup applies to end-to-end training only; the head of a transfer model is trained on cached "
                    "features without it (add --fine-tune N to use it)")
    return st


def _save_split(manifest, split: str | None, out: Path, partial: Path, say: Callable[[str], None]) -> str | None:
    """An automatic split is saved in the run (split.json, and left_out.tsv for the photos it left out); returns
    the split file the run's config names (None: the packaged split)."""
    if not manifest.raw.get("automatic"):
        return split
    write_manifest(manifest.raw, partial / "split.json")
    c = manifest.raw["counts"]
    say(f"split: train {c['train']}, val {c['val']}, test {c['test']} photos (seed {manifest.seed}), saved as "
        f"{out / 'split.json'}; export, eval and bench find it from the run")
    left = manifest.raw.get("excluded") or []
    if left:  # said on the terminal, listed in the run folder
        from collections import Counter

        why = Counter(e["reason"].split(":")[0] for e in left)
        lines = [f"{e['path']}\t{e['reason']}" for e in left]
        atomic_write_text(partial / "left_out.tsv", "path\treason\n" + "\n".join(lines) + "\n")
        say(f"left out of the split: {len(left)} photos (" + ", ".join(f"{n} {r}" for r, n in why.items())
            + f"); the list is {out / 'left_out.tsv'}")
    return str((out / "split.json").resolve())


def _fit(tf, keras, built, cfg: TrainConfig, st: _Settings, arrays: dict[str, SplitArrays], n_classes: int,
         out: Path) -> tuple[dict[str, dict], dict[str, float]]:
    """Train the model in place: a transfer model's head on cached features (then fine-tuning, if asked), any
    other model end to end. Returns the history of each phase and the seconds each step took."""
    tr, va = arrays["train"], arrays["val"]
    aug = augmenter(keras, cfg.seed) if st.augment else None
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=st.label_smoothing)
    history: dict[str, dict] = {}
    timings: dict[str, float] = {}
    if st.spec.transfer:
        history["head"] = _fit_head(tf, keras, built, cfg, st.epochs, tr, va, n_classes, aug, loss, timings)
        if cfg.fine_tune > 0:
            history["fine_tune"] = _fine_tune(tf, keras, built, cfg, tr, va, n_classes, aug, loss, timings,
                                              resume_dir(out))
    else:
        model = built.model
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=loss, metrics=["accuracy"])
        t = time.perf_counter()
        h = model.fit(_dataset(tf, tr.x, tr.y, n_classes, cfg.batch_size, True, cfg.seed, aug, cfg.mixup),
                      validation_data=_dataset(tf, va.x, va.y, n_classes, cfg.batch_size, False, cfg.seed),
                      epochs=st.epochs, callbacks=_callbacks(keras, cfg.patience, resume_dir(out)),
                      verbose=_verbose(cfg), shuffle=False)  # the dataset shuffles itself
        timings["fit_s"] = time.perf_counter() - t
        history["fit"] = {k: [float(v) for v in vs] for k, vs in h.history.items()}
    return history, timings


def _fit_head(tf, keras, built, cfg: TrainConfig, epochs: int, tr: SplitArrays, va: SplitArrays, n_classes: int,
              aug, loss, timings: dict[str, float]) -> dict:
    """The classifier head on the frozen backbone's features, extracted once (and of ``aug_views`` augmented
    views of the training photos)."""
    t = time.perf_counter()
    f_tr = [extract_features(tf, built.features, tr.x, desc="train features")]
    y_tr = [tr.y]
    for v in range(cfg.aug_views if aug is not None else 0):
        f_tr.append(extract_features(tf, built.features, tr.x, aug=aug, desc=f"augmented view {v + 1}"))
        y_tr.append(tr.y)
    f_va = extract_features(tf, built.features, va.x, desc="val features")
    timings["features_s"] = time.perf_counter() - t
    fx, fy = np.concatenate(f_tr), np.concatenate(y_tr)
    built.head.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=loss, metrics=["accuracy"])
    t = time.perf_counter()
    h = built.head.fit(fx, keras.utils.to_categorical(fy, n_classes), batch_size=cfg.batch_size,
                       epochs=epochs, validation_data=(f_va, keras.utils.to_categorical(va.y, n_classes)),
                       callbacks=_callbacks(keras, cfg.patience), shuffle=True, verbose=_verbose(cfg))
    timings["head_fit_s"] = time.perf_counter() - t
    return {k: [float(v) for v in vs] for k, vs in h.history.items()}


def _write_run(model, arrays: dict[str, SplitArrays], classes: list[str], config: dict, history: dict,
               partial: Path, out: Path) -> dict:
    """Evaluate the model on every split, write the run's files and reports into ``partial``, then rename it onto
    ``out``. Returns the metrics."""
    metrics, test_probs = evaluate_model(model, arrays, classes)
    write_json(partial / "config.json", config)
    write_json(partial / "history.json", history)
    write_json(partial / "metrics.json", metrics)
    from edgeflower.training.report import write_reports

    te = arrays["test"]
    cases = write_reports(partial, config, metrics, history, te.x, te.y, test_probs, te.paths)
    write_json(partial / "misclassified.json", cases)
    if out.exists():
        shutil.rmtree(out)
    os.replace(partial, out)
    shutil.rmtree(resume_dir(out), ignore_errors=True)
    log.info("run written to %s", out)
    return metrics


def _fine_tune(tf, keras, built, cfg: TrainConfig, tr, va, n_classes, aug, loss, timings, backup: Path) -> dict:
    """Unfreeze the top N backbone layers (BatchNorm layers stay frozen and in inference mode)."""
    base = built.backbone
    base.trainable = True
    layers = base.layers
    cut = max(0, len(layers) - cfg.fine_tune)
    for i, layer in enumerate(layers):
        layer.trainable = i >= cut and not isinstance(layer, keras.layers.BatchNormalization)
    model = built.model
    lr = cfg.fine_tune_lr
    if cfg.fine_tune_schedule == "cosine":
        steps = cfg.fine_tune_epochs * -(-len(tr.x) // cfg.batch_size)
        lr = keras.optimizers.schedules.CosineDecay(cfg.fine_tune_lr, decay_steps=steps)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=["accuracy"])
    t = time.perf_counter()
    h = model.fit(_dataset(tf, tr.x, tr.y, n_classes, cfg.batch_size, True, cfg.seed + 7, aug, cfg.mixup),
                  validation_data=_dataset(tf, va.x, va.y, n_classes, cfg.batch_size, False, cfg.seed),
                  epochs=cfg.fine_tune_epochs, callbacks=_callbacks(keras, cfg.patience, backup),
                  verbose=_verbose(cfg), shuffle=False)  # the dataset shuffles itself
    timings["fine_tune_s"] = time.perf_counter() - t
    return {k: [float(v) for v in vs] for k, vs in h.history.items()}


def evaluate_model(model, arrays: dict[str, SplitArrays], classes: list[str]) -> tuple[dict, np.ndarray]:
    metrics: dict[str, Any] = {}
    test_probs = None
    for split, a in arrays.items():
        probs = predict_probs(model, a.x)
        metrics[split] = classification_metrics(probs, a.y, classes)
        if split == "test":
            test_probs = probs
            metrics["test"]["predictions"] = {p: classes[int(i)] for p, i in zip(a.paths, probs.argmax(1))}
    metrics["params"] = count_params(model)
    return metrics, test_probs


def evaluate(target: str, split: str = "test", data: str | None = None, manifest_path: str | None = None,
             limit_per_class: int | None = None) -> dict:
    """Recompute the metrics of a saved model on one split."""
    model_path, cfg = resolve_run(target)
    cfg = cfg or {}
    model = load_keras_model(model_path)
    size = int(model.inputs[0].shape[1])
    root = resolve_data_dir(data or cfg.get("data_dir"))
    manifest = load_manifest(manifest_path or (cfg.get("split") if cfg.get("split") else None))
    resize = resize_of(cfg)  # runs from before the choice: bilinear
    a = load_split(root, manifest, split, size, limit_per_class=limit_per_class, resize=resize)
    if cfg.get("background"):
        from edgeflower.data.background import with_background

        a = with_background({split: a}, cfg["background"], size, resize)[split]
    probs = predict_probs(model, a.x)
    m = classification_metrics(probs, a.y, a.classes)
    m["model"] = str(model_path)
    m["split"] = split
    return m
