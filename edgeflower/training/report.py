"""Run reports: training curves, confusion matrix and a gallery of misclassified test images (PNG + Markdown)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgeflower.util.deps import require
from edgeflower.util.files import atomic_path, atomic_write_text

log = logging.getLogger(__name__)


def _plt():
    matplotlib = require("matplotlib", "report plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")


def plot_history(history: dict, path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for phase, h in history.items():
            if key in h:
                ax.plot(range(1, len(h[key]) + 1), h[key], label=f"{phase} train")
            if f"val_{key}" in h:
                ax.plot(range(1, len(h[f"val_{key}"]) + 1), h[f"val_{key}"], "--", label=f"{phase} val")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    _save(fig, path)
    plt.close(fig)


def plot_confusion(cm: list[list[int]], classes: list[str], path: Path, title: str = "test") -> None:
    plt = _plt()
    cm_a = np.asarray(cm)
    fig, ax = plt.subplots(figsize=(4.8, 4.2))
    ax.imshow(cm_a, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix ({title})")
    top = cm_a.max() if cm_a.size else 0
    for i in range(cm_a.shape[0]):
        for j in range(cm_a.shape[1]):
            ax.text(j, i, str(cm_a[i, j]), ha="center", va="center",
                    color="white" if cm_a[i, j] > top / 2 else "black", fontsize=8)
    _save(fig, path)
    plt.close(fig)


def plot_misclassified(x: np.ndarray, y: np.ndarray, probs: np.ndarray, classes: list[str], paths: list[str],
                       path: Path, max_images: int = 24) -> list[dict]:
    """Gallery of wrong predictions with every class probability; returns the listed cases."""
    pred = probs.argmax(axis=1)
    wrong = np.nonzero(pred != y)[0]
    # most confident mistakes first: those are the ones worth a look
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]])]
    cases = [{"path": paths[i], "true": classes[y[i]], "pred": classes[pred[i]],
              "probs": {c: round(float(p), 4) for c, p in zip(classes, probs[i])}} for i in wrong]
    shown = wrong[:max_images]
    if len(shown) == 0:
        return cases
    plt = _plt()
    cols = min(6, len(shown))
    rows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.3, rows * 3.0), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, shown):
        ax.imshow(x[i])
        lines = [f"{c[:9]} {p * 100:4.1f}%" for c, p in zip(classes, probs[i])]
        ax.set_title(f"true {classes[y[i]]}\npred {classes[pred[i]]}", fontsize=8,
                     color="darkred")
        ax.text(0, 1.0, "\n".join(lines), transform=ax.transAxes, fontsize=6, va="top", family="monospace",
                color="white", bbox={"facecolor": "black", "alpha": 0.55, "pad": 1})
    _save(fig, path)
    plt.close(fig)
    return cases


def outlier_line(counts: dict | None) -> str:
    """What the background class learnt from the outlier photos (edgeflower.data.outliers), in one line."""
    if not counts:
        return "- outlier photos: none (trained without them: --no-outliers, $EDGEFLOWER_OUTLIERS=none or not found)"
    return (f"- outlier photos (the background class, answered unknown): {counts['train']} train, {counts['val']} val "
            f"from {counts['dir']}; {counts['heldout']} held out by source, {counts['claimed']} claimed by the "
            "classes and left out")


def write_markdown(run_dir: Path, config: dict, metrics: dict, misclassified: list[dict]) -> None:
    t = metrics["test"]
    lines = [
        f"# Run report: {config['model']}",
        "",
        f"- test accuracy **{t['accuracy'] * 100:.2f}%** ({t['n']} images), "
        f"val {metrics['val']['accuracy'] * 100:.2f}%, "
        f"train {metrics['train']['accuracy'] * 100:.2f}%",
        f"- parameters: {metrics['params']['total']:,} ({metrics['params']['trainable']:,} trainable, "
        f"{metrics['params']['non_trainable']:,} non-trainable)",
        f"- training time: {config.get('train_seconds', float('nan')):.0f} s",
        outlier_line(config.get("outlier_photos")),
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for c, v in t["per_class"].items():
        lines.append(f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |")
    lines += ["", "![training curves](curves.png)", "", "![confusion matrix](confusion_test.png)", "",
              f"## Misclassified test images ({len(misclassified)})", "", "![misclassified](misclassified.png)", ""]
    atomic_write_text(run_dir / "report.md", "\n".join(lines) + "\n")


def write_reports(run_dir: Path, config: dict, metrics: dict, history: dict, test_x: np.ndarray,
                  test_y: np.ndarray, test_probs: np.ndarray, test_paths: list[str]) -> list[dict]:
    classes = metrics["test"]["classes"]
    try:
        plot_history(history, run_dir / "curves.png")
        plot_confusion(metrics["test"]["confusion_matrix"], classes, run_dir / "confusion_test.png")
        cases = plot_misclassified(test_x, test_y, test_probs, classes, test_paths, run_dir / "misclassified.png")
    except ImportError as exc:  # plots are a convenience: never lose a trained run over them
        log.warning("skipping plots: %s", exc)
        pred = test_probs.argmax(1)
        cases = [{"path": test_paths[i], "true": classes[test_y[i]], "pred": classes[pred[i]]}
                 for i in np.nonzero(pred != test_y)[0]]
    write_markdown(run_dir, config, metrics, cases)
    return cases
