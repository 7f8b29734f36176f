"""Classification metrics in plain numpy (shared by training, export and bench, so no TensorFlow here)."""

from __future__ import annotations

import numpy as np


def normalize(f: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32), so that a dot product is a cosine similarity."""
    f = np.asarray(f, np.float32)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def kth_largest(sims: np.ndarray, k: int) -> np.ndarray:
    """The k-th largest value of each row of ``sims`` (N, M): the similarity to the k-th nearest neighbour."""
    return -np.partition(-np.asarray(sims), k - 1, axis=1)[:, k - 1]


def classification_metrics(probs: np.ndarray, y: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, loss (cross-entropy of the probabilities), per-class P/R/F1/support and the confusion matrix."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    n = len(classes)
    pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    per_class = {}
    for i, c in enumerate(classes):
        tp = int(cm[i, i])
        support = int(cm[i].sum())
        predicted = int(cm[:, i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[c] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    eps = 1e-7
    loss = float(-np.log(np.clip(probs[np.arange(len(y)), y], eps, 1.0)).mean()) if len(y) else float("nan")
    acc = float((pred == y).mean()) if len(y) else float("nan")
    macro_f1 = float(np.mean([v["f1"] for v in per_class.values()])) if per_class else float("nan")
    return {
        "n": int(len(y)),
        "loss": loss,
        "accuracy": acc,
        "macro_f1": macro_f1,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "classes": list(classes),
    }


def per_class_accuracy(pred: np.ndarray, y: np.ndarray, classes: list[str]) -> dict[str, float]:
    return {c: float((pred[y == i] == i).mean()) if (y == i).any() else float("nan") for i, c in enumerate(classes)}


def calibrate_threshold(probs: np.ndarray, y: np.ndarray, budget: float = 0.01) -> dict:
    """The largest confidence threshold whose accuracy (an ``unknown`` answer counted wrong) stays within
    ``budget`` (a fraction: 0.005 is half a point) of the accuracy without rejection, on the given (validation)
    predictions.

    Rejecting more raises the chance that a non-flower photo is answered ``unknown``; the budget bounds what
    that costs on real flowers.
    """
    return calibrate_scores(probs.argmax(axis=1) == y, probs.max(axis=1), budget)


def calibrate_scores(correct: np.ndarray, score: np.ndarray, budget: float = 0.01) -> dict:
    """The largest threshold on ``score`` (higher = more in-distribution; ``score >= threshold`` is kept) whose
    accuracy, counting rejected images as wrong, stays within ``budget`` (a fraction) of the accuracy without
    rejection."""
    correct = np.asarray(correct, bool)
    score = np.asarray(score, np.float64)
    base = float(correct.mean()) if len(correct) else 0.0
    # accuracy with rejection falls as the threshold rises, so the answer is the highest threshold that still keeps
    # K correct photos: the K-th highest score among the correct ones (every score, if none need keeping)
    n, n_correct = len(correct), int(correct.sum())
    need = max(0, int(np.ceil(n_correct - n * (budget + 1e-12) - 1e-9))) if n else 0
    if not n:
        best = 0.0
    elif need == 0:
        best = float(score.max())
    else:
        best = float(np.sort(score[correct])[::-1][need - 1])
    # place the threshold just at the accepted value (>= keeps that prediction)
    kept = score >= best
    return {"threshold": best, "accuracy_without_rejection": base,
            "accuracy_with_rejection": float((correct & kept).mean()) if len(kept) else 0.0,
            "rejected_share": float((~kept).mean()) if len(kept) else 0.0,
            "budget": budget, "n": int(len(correct))}


def rejection_cost_pts(correct: np.ndarray, score: np.ndarray, threshold: float) -> float:
    """The accuracy (points) lost by answering ``unknown`` below ``threshold``, a rejected photo counted wrong."""
    correct = np.asarray(correct, bool)
    return float((correct.mean() - (correct & (np.asarray(score) >= threshold)).mean()) * 100)


def resampled_costs(correct: np.ndarray, score: np.ndarray, strata: np.ndarray, n_first: dict[int, int],
                    budget: float, rounds: int, seed: int = 0) -> np.ndarray:
    """What a threshold calibrated at ``budget`` costs (points) on photos it did not see: ``rounds`` times, the
    photos are split at random, ``n_first[c]`` of each stratum c into the first part and the rest into the second;
    the threshold is calibrated on the first (calibrate_scores) and its cost (rejection_cost_pts) measured on the
    second."""
    correct = np.asarray(correct, bool)
    score = np.asarray(score, np.float64)
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    out = np.empty(rounds)
    for r in range(rounds):
        first, second = [], []
        for c, n in n_first.items():
            idx = rng.permutation(np.nonzero(strata == c)[0])
            first.append(idx[:n])
            second.append(idx[n:])
        a, b = np.concatenate(first), np.concatenate(second)
        thr = calibrate_scores(correct[a], score[a], budget)["threshold"]
        out[r] = rejection_cost_pts(correct[b], score[b], thr)
    return out


def cost_summary(costs: np.ndarray, limit_pts: float = 1.0) -> dict:
    """Median and 90th percentile of resampled costs (points), and the share of them over ``limit_pts``."""
    return {"median_pts": float(np.median(costs)), "p90_pts": float(np.quantile(costs, 0.9)),
            "limit_pts": limit_pts, "share_over_limit": float((costs > limit_pts + 1e-9).mean())}


def split_half_cost(correct: np.ndarray, score: np.ndarray, strata: np.ndarray, budget: float,
                    rounds: int = 500, seed: int = 0, limit_pts: float = 1.0) -> dict | None:
    """The spread of what a ``budget`` threshold costs on new photos, from the (validation) photos alone: split at
    random into two stratified halves, calibrated on one half and measured on the other (resampled_costs). A half
    calibrates with half the photos, so this overstates the spread of a threshold set on all of them.
    None when there are too few photos to split (under 8)."""
    strata = np.asarray(strata)
    if len(strata) < 8:
        return None
    half = {int(c): int((strata == c).sum()) // 2 for c in np.unique(strata)}
    costs = resampled_costs(correct, score, strata, half, budget, rounds, seed)
    return {"rounds": rounds, "half_size": int(sum(half.values())), "budget_pts": budget * 100,
            **cost_summary(costs, limit_pts)}


def holding_budget(correct: np.ndarray, score: np.ndarray, strata: np.ndarray, budget: float,
                   max_share: float = 0.25, limit_pts: float = 1.0, floor: float = 0.001) -> tuple[float, dict | None]:
    """The largest budget, from ``budget`` down by a fifth at a time (not below ``floor``), whose split-half
    spread (split_half_cost) goes over ``limit_pts`` in at most ``max_share`` of the splits: (budget, its
    spread). A small validation split calibrates a noisier threshold, so it gets a smaller budget and the threshold
    costs new photos over ``limit_pts`` about as often as on a large one (flower_photos' 736 validation photos:
    0.5 point, 20% of the splits). Only validation photos are used."""
    b = budget
    while True:
        spread = split_half_cost(correct, score, strata, b, limit_pts=limit_pts)
        if spread is None or spread["share_over_limit"] <= max_share or b * 0.8 < floor:
            return b, spread
        b *= 0.8
