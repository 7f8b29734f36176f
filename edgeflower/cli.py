"""The `edgeflower` command line: a thin click layer over the library.

Each command parses its options, imports its subpackage inside the command body (so `--help` works
without TensorFlow) and calls one library function. Expected errors become one-line messages.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path

import click

from edgeflower import __version__
from edgeflower.errors import EdgeflowerError


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
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """edgeflower: train a flower classifier, export it to int8 TFLite/ONNX with an accuracy gate,
    benchmark it, and run it on a Raspberry Pi."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


# ---------------------------------------------------------------- data
@main.group()
def data() -> None:
    """Check the dataset and (re)generate the frozen train/val/test split."""


_data_opt = click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
                         help="Dataset folder (class sub-folders). Default: $EDGEFLOWER_DATA, the cache, or download.")


@data.command("check")
@_data_opt
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None, help="Write the report as JSON.")
@_handle_errors
def data_check(data_dir: str | None, json_out: str | None) -> None:
    """Decode every image; report counts, unreadable files, duplicates and near-duplicates."""
    from edgeflower._util import write_json
    from edgeflower.data.check import check_dataset
    from edgeflower.data.source import resolve_data_dir

    root = resolve_data_dir(data_dir)
    r = check_dataset(root)
    d = r.to_dict()
    click.echo(f"dataset {root}: {d['total']} readable images in {len(d['counts'])} classes")
    for c, n in d["counts"].items():
        click.echo(f"  {c:<12} {n:>5}")
    click.echo(f"unreadable files: {len(d['unreadable'])}")
    for u in d["unreadable"]:
        click.echo(f"  {u['path']}: {u['error']}")
    if d["converted_modes"]:
        click.echo("converted on load: " + ", ".join(f"{k} x{v}" for k, v in d["converted_modes"].items()))
    click.echo(f"byte-identical duplicate groups: {len(d['identical_duplicates'])}")
    for g in d["identical_duplicates"]:
        tag = "  [filed under several classes]" if g in d["cross_class_duplicates"] else ""
        click.echo("  " + " = ".join(g) + tag)
    click.echo(f"near-duplicate pairs: {len(d['near_duplicates'])}")
    for p in d["near_duplicates"]:
        click.echo(f"  {p['a']} ~ {p['b']} (similarity {p['similarity']:.3f})")
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
def data_split(data_dir: str | None, seed: int | None, out: str | None) -> None:
    """Regenerate the split from the data and verify it equals the packaged frozen one."""
    from edgeflower.data.source import resolve_data_dir
    from edgeflower.data.split import SEED, diff_manifests, load_manifest, make_split, write_manifest

    root = resolve_data_dir(data_dir)
    m = make_split(root, seed=SEED if seed is None else seed)
    click.echo("regenerated split: " + ", ".join(f"{k} {v}" for k, v in m["counts"].items())
               + f"; excluded {len(m['excluded'])}")
    if out:
        write_manifest(m, out)
        click.echo(f"manifest written to {out}")
        return
    frozen = load_manifest()
    diffs = diff_manifests(m, frozen.raw)
    if diffs:
        raise EdgeflowerError("the regenerated split differs from the frozen one: " + "; ".join(diffs)
                              + ". Your data differs from flower_photos; use --out to make your own manifest")
    click.echo(f"identical to the frozen split (manifest sha256 {frozen.sha256[:16]}...)")


# ---------------------------------------------------------------- train / eval
def _model_names() -> list[str]:
    # The registry module imports TensorFlow only inside build functions.
    from edgeflower.train.models import MODELS

    return list(MODELS)


@main.command()
@click.option("--model", type=click.Choice(_model_names()), default="mobilenet_v2", show_default=True)
@_data_opt
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Run directory (default runs/MODEL-TIME).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Maximum epochs (default: the study's, 30 CNN / 20 transfer).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--augment/--no-augment", default=None, help="Flip, zoom, translation and contrast on the fly.")
@click.option("--aug-views", type=click.IntRange(min=1), default=4, show_default=True,
              help="Augmented views of the training set whose features are cached (transfer models).")
@click.option("--fine-tune", type=click.IntRange(min=0), default=0, show_default=True,
              help="After the head converges, unfreeze the top N backbone layers.")
@click.option("--fine-tune-epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--fine-tune-lr", type=float, default=1e-5, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Learning rate (Adam).")
@click.option("--label-smoothing", type=click.FloatRange(0, 0.5), default=0.0, show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--limit-per-class", type=click.IntRange(min=1), default=None, help="Quick runs: N images per class.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--weights", default="imagenet", show_default=True, help="Backbone weights: imagenet, none, or a file.")
@click.option("--input-size", type=click.IntRange(min=32), default=None, help="Square input size (default per model).")
@click.option("--split", "split_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Split manifest (default: the frozen flower_photos split).")
@click.option("--exclude", type=click.Path(dir_okay=False, exists=True), default=None,
              help="File of relative paths to leave out of training (from `edgeflower data clean`).")
@click.option("--force", is_flag=True, help="Replace an existing run directory.")
@_handle_errors
def train(model, data_dir, out, epochs, batch_size, augment, aug_views, fine_tune, fine_tune_epochs, fine_tune_lr,
          lr, label_smoothing, patience, limit_per_class, seed, weights, input_size, split_path, exclude, force):
    """Train a model on the frozen split and write a run directory with metrics and a report."""
    from edgeflower.train.loop import TrainConfig, train as run_train

    cfg = TrainConfig(model=model, data=data_dir, out=out, epochs=epochs, batch_size=batch_size, augment=augment,
                      aug_views=aug_views, fine_tune=fine_tune, fine_tune_epochs=fine_tune_epochs,
                      fine_tune_lr=fine_tune_lr, learning_rate=lr, label_smoothing=label_smoothing, patience=patience,
                      limit_per_class=limit_per_class, seed=seed, weights=weights, input_size=input_size,
                      split=split_path, exclude=exclude, force=force)
    r = run_train(cfg)
    m = r.metrics
    click.echo(f"{model}: test accuracy {m['test']['accuracy'] * 100:.2f}% (val {m['val']['accuracy'] * 100:.2f}%, "
               f"train {m['train']['accuracy'] * 100:.2f}%) in {r.config['train_seconds']:.0f} s -> {r.run_dir}")


@main.command("eval")
@click.argument("target", type=click.Path(exists=True))
@click.option("--split", type=click.Choice(["train", "val", "test"]), default="test", show_default=True)
@_data_opt
@click.option("--json", "json_out", type=click.Path(dir_okay=False), default=None)
@_handle_errors
def eval_cmd(target: str, split: str, data_dir: str | None, json_out: str | None) -> None:
    """Recompute the metrics of a saved model (RUN_DIR or MODEL.keras) on one split."""
    from edgeflower._util import write_json
    from edgeflower.train.loop import evaluate

    m = evaluate(target, split=split, data=data_dir)
    click.echo(f"{split}: accuracy {m['accuracy'] * 100:.2f}% loss {m['loss']:.4f} macro-F1 {m['macro_f1']:.3f} "
               f"({m['n']} images)")
    for c, v in m["per_class"].items():
        click.echo(f"  {c:<12} P {v['precision']:.3f}  R {v['recall']:.3f}  F1 {v['f1']:.3f}  n {v['support']}")
    if json_out:
        write_json(json_out, m)


# ---------------------------------------------------------------- export
@main.command()
@click.argument("target", type=click.Path(exists=True))
@click.option("--int8", is_flag=True, help="Also write full-integer int8 TFLite (and int8 ONNX).")
@click.option("--onnx/--no-onnx", default=True, show_default=True, help="Also write ONNX artifacts.")
@click.option("--calibration", type=click.IntRange(min=1), default=300, show_default=True,
              help="Calibration images drawn (stratified) from the training split.")
@click.option("--max-drop", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Largest allowed test-accuracy drop in percentage points against the Keras model.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Output folder (default RUN_DIR/export).")
@click.option("--input-type", type=click.Choice(["uint8", "int8"]), default="uint8", show_default=True,
              help="Integer input of the int8 TFLite model.")
@click.option("--onnx-activation", type=click.Choice(["uint8", "int8"]), default="uint8", show_default=True,
              help="Activation type of the int8 ONNX model (uint8 is the faster one measured).")
@click.option("--auto", is_flag=True, help="When int8 is over budget, try the usual remedies and keep the best.")
@_data_opt
@click.option("--limit-per-class", type=click.IntRange(min=1), default=None, hidden=True)
@_handle_errors
def export(target, int8, onnx, calibration, max_drop, out, input_type, onnx_activation, auto, data_dir,
           limit_per_class):
    """Export RUN_DIR or MODEL.keras to TFLite/ONNX and gate every artifact on the 360-image test set."""
    from edgeflower.errors import AccuracyDropError
    from edgeflower.export.pipeline import ExportConfig, export as run_export, render_table

    cfg = ExportConfig(target=target, out=out, int8=int8, onnx=onnx, calibration=calibration, max_drop=max_drop,
                       input_type=input_type, onnx_activation=onnx_activation, auto=auto, data=data_dir,
                       limit_per_class=limit_per_class)
    try:
        report = run_export(cfg, progress=lambda m: click.echo(f"... {m}", err=True))
    except AccuracyDropError:
        # the report (with the failing rows) is on disk; show it before the one-line error
        from pathlib import Path as _P

        rep = _P(out or (_P(target) if _P(target).is_dir() else _P(target).parent) / "export") / "export_report.md"
        if rep.is_file():
            click.echo(rep.read_text())
        raise
    click.echo(render_table(report))
    click.echo(f"all {len(report['artifacts'])} artifacts passed; written to {report['out']} "
               f"in {report['seconds']:.0f} s")


if __name__ == "__main__":  # pragma: no cover
    main()
