"""Outlier photos that the user's own classes claim: left out of the background class before training.

The default outlier set was curated against flower_photos' five classes; for anyone else's classes it may hold
photos of them (a set of animals holds cats; a user's classes may be cats). Training such a photo as "not one of my
classes" teaches the model to answer ``unknown`` for its own class. The check uses the pretrained backbone's pooled
features, before any training: an outlier photo is claimed by a class when its similarity to the class's
second-nearest training photo is at least what nine in ten of the class's own photos have (the 10th percentile,
over the class's photos, of the similarity to their second-nearest other photo of the class). A photo that is as
close to a class as its members are to each other is taken for a member; leaving out an outlier photo costs
little, training a photo of the user's class as "none of them" costs that class, so the bar errs towards leaving
out. Numpy only: the caller passes the feature function.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from edgeflower.data.arrays import SplitArrays
from edgeflower.util.metrics import kth_largest, normalize

NEIGHBOURS = 2
QUANTILE = 10  # percent of a class's own photos that are less close to it than the bar
MAX_PER_CLASS = 200  # training photos per class compared against (a seeded sample of larger classes)


def claims(class_feats: np.ndarray, class_labels: np.ndarray, outlier_feats: np.ndarray,
           k: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each outlier row: (claimed?, the class with the highest k-th-nearest similarity, that similarity).
    Per class, the bar is the QUANTILE-th percentile over its photos of the similarity to their k-th nearest other
    photo."""
    cf, of = normalize(class_feats), normalize(outlier_feats)
    labels = np.asarray(class_labels)
    classes = np.unique(labels)
    score = np.full((len(of), len(classes)), -np.inf, np.float32)
    claimed = np.zeros((len(of), len(classes)), bool)
    for j, c in enumerate(classes):
        members = cf[labels == c]
        if len(members) <= k:  # too few photos to say what "as close as its own photos" means
            continue
        own = members @ members.T
        np.fill_diagonal(own, -np.inf)
        bar = float(np.percentile(kth_largest(own, k), QUANTILE))
        score[:, j] = kth_largest(of @ members.T, k)
        claimed[:, j] = score[:, j] >= bar
    best = score.argmax(1) if len(classes) else np.zeros(len(of), int)
    return claimed.any(1), classes[best] if len(classes) else best, score.max(1) if len(classes) else score


def claimed_outliers(features: Callable[[np.ndarray, str], np.ndarray], train: SplitArrays,
                     outliers: dict[str, SplitArrays], seed: int = 0) -> list[dict]:
    """The outlier photos (of every split in ``outliers``) that a class of ``train`` claims:
    ``[{"path", "class", "similarity"}]``, sorted by path. ``features(x, desc)`` gives pooled features."""
    rng = np.random.default_rng(seed)
    keep = np.concatenate([
        (idx if len(idx) <= MAX_PER_CLASS else np.sort(rng.choice(idx, MAX_PER_CLASS, replace=False)))
        for idx in (np.nonzero(train.y == c)[0] for c in np.unique(train.y))]).astype(np.int64)
    cf = features(np.asarray(train.x[keep]), "checking the outlier photos: your photos")
    out = []
    for split, a in outliers.items():
        if len(a) == 0:
            continue
        hit, cls, sim = claims(cf, train.y[keep], features(np.asarray(a.x), f"checking the outlier photos: {split}"))
        out += [{"path": a.paths[i], "class": train.classes[int(cls[i])], "similarity": round(float(sim[i]), 4)}
                for i in np.nonzero(hit)[0]]
    return sorted(out, key=lambda c: c["path"])
