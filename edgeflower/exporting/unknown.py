"""The `unknown` rule of each exported artifact, calibrated on the validation split and measured on the test split.

One budget covers both ways a photo of the classes is answered `unknown`: the similarity (or confidence) threshold,
and a background class (train --background, the outlier photos) taking it.
"""

from __future__ import annotations

import numpy as np

from edgeflower.data.arrays import SplitArrays
from edgeflower.errors import ExportError
from edgeflower.exporting.formats import Evaluation
from edgeflower.util.metrics import calibrate_scores, calibrate_threshold, holding_budget

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


def calibrate(ev: Evaluation, test: SplitArrays, val: SplitArrays, classes: list[str], rule: dict,
              background: str | None, budget_pts: float, max_share: float) -> tuple[dict, float]:
    """The artifact's unknown rule (``rule``: the export's entry, its method and bank): the metadata entry with the
    threshold calibrated on val at ``budget_pts`` and its effect on test, and the confidence threshold the device
    should apply. ``background``: the background class's name, or None."""
    meta = dict(rule)
    correct = ev.pred == test.y
    # background photos (train --background) are right when answered unknown, by either rule; they take no part
    # in calibrating the similarity threshold, which bounds what it costs on flowers
    bg = background
    bg_test = test.y == classes.index(bg) if bg else np.zeros(len(test), bool)
    flower_val = val.y != classes.index(bg) if bg else np.ones(len(val), bool)
    if ev.sims is None:
        if meta.get("method") != "confidence":
            raise ExportError("the converted artifact lost the similarity output")
        budget = budget_pts / 100
        conf_thr = calibrate_threshold(ev.val_probs, val.y, budget)["threshold"]
        kept = ev.probs.max(1) >= conf_thr
        meta.update(confidence_threshold=conf_thr)
    else:
        # the same rule as the confidence threshold, on the similarity score. With a background class, the
        # budget covers both rules: a flower whose top class is the background is answered unknown whatever its
        # similarity (scored below any similarity), and "correct" is the top of the other classes
        bg_index = classes.index(bg) if bg else None
        val_correct = (answer_without(ev.val_probs, bg_index) == val.y)[flower_val]
        val_sims = similarity_with_background(ev.val_probs, ev.val_sims, bg_index)[flower_val]
        asked = budget_pts / 100
        # the budget holds on the validation photos; on new ones it is a median, with a spread measured on the
        # validation split alone (calibrated on one half, measured on the other). A small split spreads more:
        # its budget shrinks until new photos pay over 1 point as rarely as on flower_photos (holding_budget)
        budget, spread = holding_budget(val_correct, val_sims, val.y[flower_val], asked,
                                        max_share=max_share)
        cal = calibrate_scores(val_correct, val_sims, budget)
        cal["split_half"] = spread
        cal["budget_asked"] = asked
        conf_thr = 0.0  # the similarity rule replaces the confidence one (--threshold adds it back)
        kept = ev.sims >= cal["threshold"]
        meta.update(similarity_threshold=cal["threshold"], similarity_output=ev.similarity_output,
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
            (answer_without(ev.probs, classes.index(bg)) == test.y)[flowers].mean())
        meta["test"]["flower_accuracy_with_unknown"] = float(right[flowers].mean())
        meta["test"]["flowers_answered_background"] = float(
            (ev.pred == classes.index(bg))[flowers].mean())
    meta.update(ev.unknown)  # what the format adds (the AI Camera: its bank file)
    return meta, conf_thr
