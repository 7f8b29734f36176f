"""The `unknown` answer as part of the exported model: a feature-similarity output beside the probabilities.

Method (chosen on non-flower development photos, see benchmarks/unknown.py): the cosine similarity between the
pooled backbone features of a photo and those of its k-th nearest training photo (k = 2 by default). A photo
unlike anything the model was trained on has no close neighbours, however confident the softmax is. k = 2 rather
than 1: a single stray training photo (a building behind a tulip bed, a butterfly on a dandelion, a horse in a
flower parade) vouched for non-flower photos like it; the second neighbour asks for two such photos. Against the
development photos, k = 2 had the highest mean AUROC over the four models compared with k = 1, 2, 3 and 5 (on one
of them it was 0.0001 below k = 1; benchmarks/results/unknown.json).

The export model appends fixed layers to the trained classifier, so every format carries the score and the
device needs no extra file:

    features -> UnitNormalization -> Dense(bank, no bias; weights = normalized training features) -> k-th largest

By default the neighbours are looked for among the training photos of each class apart, and the similarity output
holds one value per class (N, C): the device reads the value of the class it predicts
(``edgeflower.edge.classifier.select_similarity``), so a photo is kept when it is close to two training photos *of
the class it is called*. Chosen on the development photos
(docs/studies/unknown-scores.md, make main's Lite0 features): the highest AUROC of validation flowers against
development photos of the scores compared, and it rejects more of the held-out photos than the k-th nearest among
all training photos (``--unknown-any-class``, one value (N, 1)) at the same validation budget. The selection runs
after the model, not in it: two near-tied classes may swap between int8 builds (host and device), and each value of
the output still agrees within one quantization step.

    features -> UnitNormalization -> Dense(bank sorted by class) -> per class: k-th largest -> (N, C)

The threshold is calibrated per artifact on the validation split at export (the same accuracy budget as the
confidence threshold), so quantization error in the score is measured, not assumed away.
"""

from __future__ import annotations

import logging

import numpy as np

from edgeflower.errors import ExportError
from edgeflower.util.metrics import normalize

log = logging.getLogger(__name__)

SIMILARITY_OUTPUT = "similarity"
NORMALIZE_LAYER = "ood_normalize"
METHOD = "knn_cosine"
METHOD_PER_CLASS = "knn_cosine_per_class"
DEFAULT_NEIGHBOURS = 2
_POOLING = ("GlobalAveragePooling2D", "GlobalMaxPooling2D")


def feature_layer(model):
    """The last global pooling layer: the image embedding the classifier head reads. None when there is none."""
    for layer in reversed(model.layers):
        if type(layer).__name__ in _POOLING:
            return layer
    return None


def features_model(model):
    import keras

    layer = feature_layer(model)
    if layer is None:
        raise ExportError(f"{model.name} has no global pooling layer to take features from: export with "
                          "--unknown confidence")
    return keras.Model(model.inputs, layer.output, name=f"{model.name}_embedding")


def compute_bank(model, images: np.ndarray, batch: int = 16, desc: str = "unknown: training features") -> np.ndarray:
    """L2-normalized pooled features of ``images`` (uint8 N x H x W x 3), float32 (N, D)."""
    from edgeflower.util.progress import progress

    feats = features_model(model)
    out = []
    starts = range(0, len(images), batch)
    for s in progress(starts, total=len(starts), desc=desc):
        out.append(np.asarray(feats.predict_on_batch(images[s:s + batch].astype(np.float32))))
    f = np.concatenate(out) if out else np.zeros((0, int(feats.output.shape[-1])), np.float32)
    return normalize(f)


def ordinal(k: int) -> str:
    return {1: "nearest", 2: "second-nearest", 3: "third-nearest"}.get(k, f"{k}th-nearest")


def with_similarity(model, bank: np.ndarray, neighbours: int = DEFAULT_NEIGHBOURS,
                    bank_labels: np.ndarray | None = None):
    """A two-output Keras model: (probabilities, similarity) for export. ``bank``: normalized (M, D).
    Without ``bank_labels`` the similarity (N, 1) is that of the ``neighbours``-th nearest row of the bank; with
    them (the class of each row, 0..W-1) it is (N, W), the ``neighbours``-th nearest row of each class."""
    import keras
    from keras import layers

    if len(bank) == 0:
        raise ExportError("the feature bank is empty: the unknown score needs training images")
    if not 1 <= neighbours <= len(bank):
        raise ExportError(f"--unknown-neighbours {neighbours}: must be between 1 and the {len(bank)} training images")
    bounds = None
    if bank_labels is not None:
        bank_labels = np.asarray(bank_labels)
        if len(bank_labels) != len(bank):
            raise ExportError(f"{len(bank_labels)} labels for a bank of {len(bank)} rows")
        order = np.argsort(bank_labels, kind="stable")
        bank, bank_labels = bank[order], bank_labels[order]
        counts = np.bincount(bank_labels)
        if counts.min() < neighbours:
            c = int(np.argmin(counts))
            raise ExportError(f"--unknown-neighbours {neighbours}: class {c} has {counts[c]} training images; the "
                              "per-class score needs at least as many (or export with --unknown-any-class)")
        ends = np.cumsum(counts)
        bounds = [(int(e - n), int(e)) for e, n in zip(ends, counts)]
    layer = feature_layer(model)
    if layer is None:
        raise ExportError(f"{model.name} has no global pooling layer to take features from")
    if int(layer.output.shape[-1]) != bank.shape[1]:
        raise ExportError(f"feature bank has {bank.shape[1]} dims but {layer.name} gives {layer.output.shape[-1]}")
    x = layers.UnitNormalization(axis=-1, name=NORMALIZE_LAYER)(layer.output)
    dense = layers.Dense(len(bank), use_bias=False, trainable=False, name="ood_bank")
    sims = dense(x)
    dense.set_weights([bank.T.astype(np.float32)])
    k = int(neighbours)
    if bounds is not None:  # one value per class: TFLite STRIDED_SLICE + TOPK_V2 (or REDUCE_MAX), CONCATENATION

        def per_class(t):
            cols = [keras.ops.max(t[:, a:b], axis=1, keepdims=True) if k == 1 else
                    keras.ops.top_k(t[:, a:b], k, sorted=True)[0][:, k - 1:k] for a, b in bounds]
            return keras.ops.concatenate(cols, axis=1)

        best = layers.Lambda(per_class, name=SIMILARITY_OUTPUT, output_shape=(len(bounds),))(sims)
    elif neighbours == 1:
        sims = layers.Reshape((len(bank), 1), name="ood_reshape")(sims)
        best = layers.GlobalMaxPooling1D(name=SIMILARITY_OUTPUT)(sims)
    else:  # TFLite TOPK_V2 / ONNX TopK, then the k-th value
        best = layers.Lambda(lambda t: keras.ops.top_k(t, k, sorted=True)[0][:, k - 1:k], name=SIMILARITY_OUTPUT,
                             output_shape=(1,))(sims)
    return keras.Model(model.inputs, [model.outputs[0], best], name=f"{model.name}_with_unknown")

