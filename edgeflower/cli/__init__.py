"""The `edgeflower` command line: a thin click layer over the library.

Each command parses its options, imports its subpackage inside the command body (so `--help` works
without TensorFlow) and calls one library function. Options are named after the fields of the library's config
(`TrainConfig(**opts)`); an option left unset (None) takes the config's default. Expected errors become one-line
messages.
"""

from __future__ import annotations

import functools
import logging
import sys

import click

from edgeflower import api
from edgeflower.cli import output as _output
from edgeflower.errors import EdgeflowerError, ServiceError
from edgeflower.util.version import __version__


def _say(msg: str) -> None:
    """The library's progress messages, on stderr (stdout holds the results)."""
    click.echo(msg, err=True)


def _handle_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgeflowerError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(getattr(exc, "exit_code", 1))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeflower")
@click.option("-v", "--verbose", count=True, help="More log output, TensorFlow's included (-vv for debug).")
def main(verbose: int) -> None:
    """edgeflower: train an image classifier on your own classes (or flower_photos), export it to int8
    TFLite/ONNX with an accuracy gate, benchmark it, and run it on a Raspberry Pi."""
    from edgeflower.util import quiet as _quiet

    _quiet.configure(verbose)  # before any command imports TensorFlow
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


# ---------------------------------------------------------------- data
@main.group()
def data() -> None:
    """Check the dataset and (re)generate the frozen train/val/test split."""


_data_opt = click.option("--data", "data", type=click.Path(file_okay=False), default=None,
                         help="Dataset folder (class sub-folders). Default: $EDGEFLOWER_DATA, the cache, or download.")
_limit_opt = click.option("--limit-per-class", type=click.IntRange(min=1), default=None, hidden=True)


def _split_opt(help: str, exists: bool = True):
    return click.option("--split", type=click.Path(dir_okay=False, exists=exists), default=None, help=help)


@data.command("check")
@_data_opt
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write the report as JSON.")
@_handle_errors
def data_check(data: str | None, json_out: str | None) -> None:
    """Decode every image; report counts, unreadable files, duplicates and near-duplicates."""
    from edgeflower.util.files import write_json

    d = api.check_data(data, progress=_say)
    click.echo(_output.data_check(d["root"], d))
    if d["empty_classes"]:
        click.secho("classes with no readable images: " + ", ".join(d["empty_classes"]), fg="yellow")
    if json_out:
        write_json(json_out, d)


@data.command("split")
@_data_opt
@click.option("--seed", type=int, default=None, help="Split seed (default: the frozen split's).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Write the regenerated manifest here (for your own dataset).")
@_handle_errors
def data_split(data: str | None, seed: int | None, out: str | None) -> None:
    """Regenerate the split from the data and verify it equals the packaged frozen one."""
    click.echo(_output.data_split(api.split_data(data, seed=seed, out=out)))


@data.command("clean")
@_data_opt
@click.option("--out", type=click.Path(file_okay=False), default="runs/clean", show_default=True)
@click.option("--folds", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--mislabel-confidence", type=click.FloatRange(0, 1), default=0.9, show_default=True,
              help="Flag a photo when a model that never saw it gives another class at least this probability.")
@click.option("--offtopic-confidence", type=click.FloatRange(0, 1), default=0.4, show_default=True,
              help="Flag a photo when no class gets at least this probability.")
@_limit_opt
@click.option("--weights", default="imagenet", hidden=True)
@click.option("--input-size", type=click.IntRange(min=32), default=224, hidden=True)
@_split_opt("Split manifest (default: the frozen flower_photos split).")
@_handle_errors
def data_clean(out, **opts):
    """Flag duplicates, photos filed under two classes, likely mislabeled and off-topic photos; write a report,
    a contact sheet and an exclusion list (`train --exclude`). Never deletes or moves files."""
    click.echo(_output.data_clean(api.clean_data(out, progress=_say, **opts), out))


@data.command("review")
@click.argument("saved", type=click.Path(file_okay=False, exists=True))
@click.option("--serve", "serve", is_flag=False, flag_value="127.0.0.1:8765", default=None, metavar="[HOST:PORT]",
              help="Sort the frames in the browser instead (default 127.0.0.1:8765): a click or a key files a frame "
                   "under a class, as background, or discards it; undo.")
@click.option("--into", type=click.Path(file_okay=False, exists=True), default=None,
              help="With --serve: the dataset whose classes to sort into (default: the classes the answers name).")
@click.option("--allow-remote", is_flag=True, help="With --serve on a non-loopback address: answer other hosts too.")
@_handle_errors
def data_review(saved, serve, into, allow_remote):
    """Contact sheet (review.html and review.png) of the frames `classify --save SAVED` kept, grouped by answer;
    with --serve, a page that sorts them with a click."""
    if serve is None:
        click.echo(_output.data_review(api.review(saved), saved))
        return
    host, _, port = serve.rpartition(":")
    if not port.isdigit():
        raise EdgeflowerError(f"--serve {serve!r}: expected HOST:PORT, e.g. 127.0.0.1:8765")
    api.serve_review(saved, into=into, host=host or "127.0.0.1", port=int(port), allow_remote=allow_remote,
                     ready=lambda url: click.echo(f"sorting page on {url} (Ctrl-C to stop); then: edgeflower data add "
                                                  f"{saved} --into DATASET", err=True))


@data.command("add")
@click.argument("saved", type=click.Path(file_okay=False, exists=True))
@click.option("--into", "into", type=click.Path(file_okay=False, exists=True), required=True,
              help="The dataset folder (one subfolder per class) that the next `train --data` uses.")
@_handle_errors
def data_add(saved, into):
    """Copy the frames sorted into SAVED/<class>/ into the dataset's class folders (never overwriting; photos the
    dataset already has are reported and skipped)."""
    click.echo(_output.data_add(api.add_photos(saved, into), into))


def _comma_list(value: str | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(v.strip() for v in value.split(","))


# ---------------------------------------------------------------- train / eval
@main.command()
@click.option("--model", type=click.Choice(api.model_names()), default="efficientnet_lite0", show_default=True,
              help="Network to train. The default is the backbone best on the validation split among those that "
                   "train in make main's budget (docs/results.md).")
@_data_opt
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run directory (default runs/MODEL-TIME).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Maximum epochs, with early stopping (default: 40 for transfer models, 30 for the CNN).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--augment/--no-augment", default=None, help="Flip, zoom, translation and contrast on the fly "
              "(default: on for transfer models, off for the CNN).")
@click.option("--aug-views", type=click.IntRange(min=1), default=4, show_default=True,
              help="Augmented views of the training set whose features are cached (transfer models).")
@click.option("--fine-tune", type=click.IntRange(min=0), default=0, show_default=True,
              help="After the head converges, unfreeze the top N backbone layers.")
@click.option("--fine-tune-epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--fine-tune-lr", type=float, default=1e-5, show_default=True)
@click.option("--fine-tune-schedule", type=click.Choice(["constant", "cosine"]), default="constant",
              show_default=True, help="Fine-tuning learning rate: constant, or cosine decay to 0 over the epochs.")
@click.option("--mixup", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Mixup Beta parameter for end-to-end training (fine-tuning, the CNN); 0 = off, 0.2 is usual.")
@click.option("--lr", "learning_rate", type=float, default=1e-3, show_default=True, help="Learning rate (Adam).")
@click.option("--label-smoothing", type=click.FloatRange(0, 0.5), default=None,
              help="Label smoothing (default: 0.1 for transfer models, 0 for the CNN).")
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--limit-per-class", type=click.IntRange(min=1), default=None, help="Quick runs: N images per class.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--weights", default="imagenet", show_default=True,
              help="Backbone weights: imagenet, none, or a file (Keras .h5; a legacy PyTorch .pth for "
                   "efficientnet_lite*).")
@click.option("--input-size", type=click.IntRange(min=32), default=None, help="Square input size (default per model).")
@_split_opt("Split manifest (default: the frozen split for flower_photos; for any other folder, a split made from "
            "it and saved in the run as split.json).")
@click.option("--exclude", type=click.Path(dir_okay=False, exists=True), default=None,
              help="File of relative paths to leave out of training (from `edgeflower data clean`).")
@click.option("--background", type=click.Path(file_okay=False, exists=True), default=None,
              help="Folder of photos of the camera's scene without any of the classes (a few dozen, or video frames): "
                   "trained as one more class that the device answers 'unknown'.")
@click.option("--outliers", type=click.Path(file_okay=False, exists=True), default=None,
              help="Folder of photos of none of the classes, trained into the background class that the device "
                   "answers 'unknown' (default: edgeflower's licensed set of 2,175 photos: $EDGEFLOWER_OUTLIERS, "
                   "the cache, else a verified download; docs/usage.md#outlier-photos).")
@click.option("--no-outliers", "use_outliers", is_flag=True, flag_value=False, default=True,
              help="Train without outlier photos.")
@click.option("--resize", default=None, metavar="NAME",
              help="How photos and frames reach the input size, in training and on the device (the artifacts say "
                   "which): nearest (the default) after a whole-factor box reduction, fast; or bilinear, Pillow's "
                   "antialiased one, the resize of runs from before the choice.")
@click.option("--force", is_flag=True, help="Replace an existing run directory.")
@_handle_errors
def train(**opts):
    """Train a model on the frozen split and write a run directory with metrics and a report."""
    r = api.train(progress=_say, **opts)
    click.echo(_output.train(opts["model"], r))


@main.command("eval")
@click.argument("target", type=click.Path(exists=True))
@click.option("--subset", type=click.Choice(["train", "val", "test"]), default="test", show_default=True,
              help="Which part of the split to evaluate on.")
@_split_opt("Split manifest, as for train (default: the run's).")
@_data_opt
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None)
@_handle_errors
def eval_cmd(target: str, subset: str, split: str | None, data: str | None, json_out: str | None) -> None:
    """Recompute the metrics of a saved model (RUN_DIR or MODEL.keras) on one part of its split."""
    from edgeflower.util.files import write_json

    m = api.evaluate(target, subset=subset, data=data, split=split)
    click.echo(_output.evaluation(m, subset))
    if json_out:
        write_json(json_out, m)


# ---------------------------------------------------------------- export
@main.command()
@click.argument("target", type=click.Path(exists=True))
@click.option("--int8", is_flag=True, help="Also write full-integer int8 TFLite (and int8 ONNX).")
@click.option("--onnx/--no-onnx", default=True, show_default=True, help="Also write ONNX artifacts.")
@click.option("--formats", default=None, metavar="LIST", callback=lambda ctx, param, v: _comma_list(v),
              help="The artifacts to write, comma-separated, instead of --int8/--onnx: tflite_float, tflite_fp16 "
                   "(float16 weights), tflite_int8, onnx_float, onnx_int8, imx500 (the AI Camera, docs/pi.md).")
@click.option("--calibration", type=click.IntRange(min=1), default=300, show_default=True,
              help="Calibration images drawn (stratified) from the training split.")
@click.option("--max-drop", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Accuracy budget in points against the Keras model, on the validation photos: an artifact fails "
                   "when its drop is clearly over it (beyond the noise of that many photos; docs/export.md).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default RUN_DIR/export).")
@click.option("--input-type", type=click.Choice(["uint8", "int8"]), default="uint8", show_default=True,
              help="Integer input of the int8 TFLite model.")
@click.option("--onnx-activation", type=click.Choice(["uint8", "int8"]), default="uint8", show_default=True,
              help="Activation type of the int8 ONNX model (uint8 is the faster one measured).")
@click.option("--auto", is_flag=True, help="When int8 is over budget, try the usual remedies and keep the best.")
@click.option("--mixed-precision", is_flag=True,
              help="When an int8 artifact (TFLite or ONNX) is over budget, return the layers that hurt accuracy most "
                   "to float, one at a time, until the gate's rule passes on the validation photos (also the last "
                   "remedy of --auto).")
@click.option("--unknown", type=click.Choice(["similarity", "confidence"]), default="similarity", show_default=True,
              help="How artifacts answer 'unknown': similarity = a second output scoring how close a photo's features "
                   "are to those of the training photos (rejects photos of other things far better); confidence = the "
                   "top probability alone. Thresholds are calibrated on the validation split.")
@click.option("--unknown-neighbours", type=click.IntRange(min=1), default=2, show_default=True,
              help="The similarity is to the K-th nearest training photo: with K=2 one stray training photo cannot "
                   "vouch for an unrelated photo like it (1 = the nearest).")
@click.option("--unknown-per-class/--unknown-any-class", default=True, show_default=True,
              help="Look for the K nearest training photos among those of the predicted class (one similarity per "
                   "class in the output, the device reads the predicted one's), or among all training photos.")
@click.option("--unknown-budget", "unknown_budget_pts", type=click.FloatRange(0, 100), default=None,
              help="Validation accuracy (percentage points) the unknown threshold may cost "
                   "[default: 0.5, half the 1-point target, as a margin for val-to-test sampling noise].")
@_data_opt
@_split_opt("Split manifest (default: the run's, else the frozen flower_photos split).")
@_limit_opt
@_handle_errors
def export(**opts):
    """Export RUN_DIR or MODEL.keras to TFLite/ONNX and gate every artifact against the float model on the
    validation photos (the test photos' figures are reported beside)."""
    from edgeflower.errors import AccuracyDropError

    try:
        report = api.export(progress=lambda m: click.echo(f"... {m}", err=True), **opts)
    except AccuracyDropError as exc:
        # show the table with the failing rows before the one-line error
        if exc.export_report is not None:
            click.echo(exc.export_report.render())
        raise
    click.echo(report.render())
    click.echo(f"all {len(report.artifacts)} artifacts passed; written to {report.out} in {report.seconds:.0f} s")


# ---------------------------------------------------------------- classify (edge: never imports TensorFlow)
@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--camera", is_flag=False, flag_value="pi", default=None, metavar="[N]",
              help="--camera: the Raspberry Pi camera (picamera2); --camera N: OpenCV camera N (USB webcam); "
                   "--camera imx500: the AI Camera, which runs MODEL (its network.rpk) on the sensor.")
@click.option("--video", default=None, metavar="PATH|URL", help="A video file or stream URL (RTSP/HTTP) via OpenCV.")
@click.option("--images", default=None, metavar="DIR|GLOB", help="Still images: a folder or a glob.")
@click.option("--backend", type=click.Choice(["litert", "tflite-runtime", "onnxruntime"]), default=None,
              help="Interpreter (default: by file type and what is installed).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Interpreter threads.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Also report 'unknown' below this top-class confidence (default: the artifact's calibrated value; "
                   "0 for artifacts with the similarity output).")
@click.option("--min-similarity", type=click.FloatRange(-1, 1), default=None,
              help="Report 'unknown' when the photo's feature similarity to the training photos is below "
                   "this (default: the value calibrated at export; -1 turns it off).")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--smooth", type=click.IntRange(min=0), default=0, help="Average probabilities over the last N frames.")
@click.option("--jsonl", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write per-frame JSON lines here (default: stdout).")
@click.option("--serve", default=None, metavar="HOST:PORT",
              help="Serve a live page (MJPEG + label); PORT alone binds to 127.0.0.1.")
@click.option("--mqtt", "mqtt_url", default=None, metavar="mqtt://[user:pass@]host[:port]/topic",
              help="Publish the answer (retained) on each label change, a heartbeat on TOPIC/status and "
                   "online/offline on TOPIC/availability (pip install \"edgeflower[mqtt]\").")
@click.option("--mqtt-every", type=click.FloatRange(min=0), default=60.0, show_default=True, metavar="S",
              help="Heartbeat interval in seconds (0: none).")
@click.option("--mqtt-discovery", is_flag=True, help="Publish a Home Assistant MQTT discovery config: the device "
                                                    "appears as a sensor with no configuration.")
@click.option("--post", "post_url", default=None, metavar="URL",
              help="POST the answer as JSON to URL whenever the (smoothed) label changes (timeout, retries).")
@click.option("--exec", "exec_cmd", default=None, metavar="CMD",
              help="Run CMD whenever the label changes, with EDGEFLOWER_LABEL, EDGEFLOWER_SCORE, "
                   "EDGEFLOWER_SIMILARITY and EDGEFLOWER_JSON in its environment (no shell unless --exec-shell).")
@click.option("--exec-shell", is_flag=True, help="Run --exec's CMD through /bin/sh.")
@click.option("--save", "save_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Keep the frames it was unsure of (JPEG + JSON sidecar) for the next training: "
                   "`edgeflower data review DIR`, then `edgeflower data add`.")
@click.option("--save-when", default="unknown,low-confidence", show_default=True,
              help="Which frames --save keeps: unknown, low-confidence, changed (comma-separated).")
@click.option("--save-confidence", type=click.FloatRange(0, 1), default=0.7, show_default=True,
              help="low-confidence means a top score below this.")
@click.option("--save-min-interval", type=click.FloatRange(min=0), default=1.0, show_default=True, metavar="S",
              help="At most one saved frame every S seconds.")
@click.option("--save-max-mb", type=click.FloatRange(min=0), default=500.0, show_default=True, metavar="MB",
              help="Stop saving (and warn once) when the folder holds this much; classification goes on.")
@click.option("--reconnect", is_flag=True, help="Retry a camera that disappears.")
@click.option("--loop", is_flag=True, help="Play a --video file again from its start when it ends.")
@click.option("--resolution", default="320x240", show_default=True,
              help="Camera capture size WxH for inference (a low-resolution stream: the model sees 224x224).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N frames.")
@click.option("--quiet", is_flag=True, help="No status line.")
@_handle_errors
def classify(quiet, **opts):
    """Classify camera frames, a video or still images with an exported MODEL (.tflite, .onnx, or .rpk)."""
    def echo(text: str, warning: bool = False) -> None:
        click.secho(text, nl=False, err=True, fg="yellow" if warning else None)

    api.classify_stream(opts, echo, tty=sys.stderr.isatty(), quiet=quiet)


# ---------------------------------------------------------------- service (systemd)
@main.group()
def service():
    """Run `edgeflower classify` as a systemd service: starts at boot, restarts after a crash."""


@service.command("install", context_settings={"ignore_unknown_options": True})
@click.argument("model", type=click.Path(dir_okay=False, exists=True))
@click.option("--user", "user_unit", is_flag=True,
              help="A user service (~/.config/systemd/user), no root needed; `loginctl enable-linger` starts it at "
                   "boot without a login.")
@click.option("--name", default="edgeflower", show_default=True, help="The unit's name (NAME.service).")
@click.option("--unit-dir", type=click.Path(file_okay=False), default=None,
              help="Write the unit here instead of /etc/systemd/system (or the user folder with --user).")
@click.option("--force", is_flag=True, help="Replace an existing unit of that name.")
@click.argument("classify_args", nargs=-1, type=click.UNPROCESSED)
@_handle_errors
def service_install(model, user_unit, name, unit_dir, force, classify_args):
    """Write a systemd unit that runs `edgeflower classify MODEL CLASSIFY_ARGS...` from this environment.

    Example: edgeflower service install export/model_int8.tflite --camera --smooth 5 --serve 0.0.0.0:8080"""
    try:  # the options are classify's: check them now, not at the first boot
        ctx = classify.make_context("classify", [model, *classify_args], resilient_parsing=False)
    except click.ClickException as exc:
        raise ServiceError(f"classify options: {exc.format_message()}") from None
    try:  # what classify would refuse at boot: the model, still images and video files, the sinks' addresses
        api.check_device_options(ctx.params)
    except EdgeflowerError as exc:
        raise ServiceError(f"classify would fail at start: {exc}") from None
    unit = api.install_service(model, list(classify_args), name=name, user_unit=user_unit, directory=unit_dir,
                               force=force)
    enable, logs = unit.commands()
    click.echo(f"wrote {unit.path}")
    click.echo(f"start it now and at every boot:  {enable}")
    click.echo(f"follow its log:                  {logs}")


@service.command("uninstall")
@click.option("--user", "user_unit", is_flag=True, help="The user service.")
@click.option("--name", default="edgeflower", show_default=True)
@click.option("--unit-dir", type=click.Path(file_okay=False), default=None)
@_handle_errors
def service_uninstall(user_unit, name, unit_dir):
    """Remove the unit written by `service install`, and the links that enabled it at boot."""
    ctl = "systemctl --user" if user_unit else "sudo systemctl"
    for p in api.uninstall_service(name, user_unit=user_unit, directory=unit_dir):
        click.echo(f"removed {p}")
    click.echo(f"if it is running, stop it:  {ctl} stop {name} && {ctl} daemon-reload")

# ---------------------------------------------------------------- bench (edge: never imports TensorFlow)
@main.command()
@click.argument("artifacts", nargs=-1, required=True)
@click.option("--threads", default="1,2,4", show_default=True, help="Comma-separated interpreter thread counts.")
@click.option("--runs", type=click.IntRange(min=1), default=200, show_default=True, help="Timed invocations.")
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--e2e-images", type=click.IntRange(min=1), default=50, show_default=True,
              help="Test images for the end-to-end (decode to label) latency.")
@_data_opt
@click.option("--no-accuracy", is_flag=True, help="Skip the accuracy check on the run's test photos.")
@_split_opt("Split manifest whose test images to use (default: the split of the run the artifacts came from, else "
            "the frozen flower_photos split).", exists=False)
@click.option("--backend", type=click.Choice(["litert", "tflite-runtime", "onnxruntime"]), default=None)
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write results as JSON.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), default=None,
              help="Latency-vs-accuracy PNG (default: beside --json).")
@_limit_opt
@_handle_errors
def bench(threads, no_accuracy, json_out, plot_out, **opts):
    """Measure latency, throughput, memory, size and accuracy of each exported ARTIFACT."""
    from edgeflower.errors import BenchError

    try:
        thr = tuple(int(t) for t in threads.split(",") if t.strip())
    except ValueError as exc:
        raise BenchError(f"--threads {threads!r}: expected comma-separated integers, e.g. 1,2,4") from exc
    report = api.bench(opts.pop("artifacts"), threads=thr, accuracy=not no_accuracy,
                       progress=lambda m: click.echo(f"... {m}", err=True), **opts)
    click.echo(report.render())
    report.save(json_out, plot_out, progress=_say)
    failed = [r for r in report.results if r.error]
    for r in failed:
        click.secho(f"error: {r.name}: {r.error}", fg="red", err=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
