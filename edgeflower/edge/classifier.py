"""Classifier: RGB frame in, top-k labels with probabilities out, for any exported artifact.

Everything (labels, input size, quantization, unknown thresholds) comes from the artifact's own metadata,
with the interpreter's tensor details as the authority on dtypes and quantization parameters.

`unknown` has two rules, each with a threshold calibrated on the validation split at export:
- similarity (artifacts exported with the feature-similarity output, the default): the cosine similarity of the
  photo's features to its k-th nearest training photo (k in the metadata, 2 by default) is below ``min_similarity``.
  When the output holds one similarity per class (the export default), the one of the predicted class is used: the
  photo must be close to training photos of the class it is called;
- confidence: the top probability is below ``threshold`` (0, off, by default when the similarity is there).
"""

from __future__ import annotations

import functools
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeflower.edge.backends import Backend, TensorInfo, similarity_output
from edgeflower.edge.loader import load_backend
from edgeflower.edge.metadata import read_metadata
from edgeflower.edge.preprocess import ImageLike, preprocess, resize_of, reuse_pillow_memory
from edgeflower.errors import BackendError, ImageError

UNKNOWN = "unknown"


@dataclass
class Prediction:
    label: str  # the top class, or "unknown" (see the module docstring)
    score: float  # probability of the top class
    top_k: list[tuple[str, float]]
    probs: np.ndarray = field(repr=False)
    index: int = -1  # top class index (even when reported as unknown)
    inference_ms: float = 0.0  # the interpreter call alone
    total_ms: float = 0.0  # preprocessing + quantization + inference + postprocessing
    similarity: float | None = None  # feature similarity to the k-th nearest training photo (None: not in the model)
    # with a per-class similarity output: each class's value (the similarity above is the top class's)
    similarities: dict[str, float] | None = None

    def to_dict(self) -> dict:
        d = {"label": self.label, "score": round(self.score, 6),
             "top_k": [{"label": lab, "score": round(s, 6)} for lab, s in self.top_k],
             "inference_ms": round(self.inference_ms, 3), "total_ms": round(self.total_ms, 3)}
        if self.similarity is not None:
            d["similarity"] = round(self.similarity, 6)
        if self.similarities is not None:
            d["similarity_per_class"] = {k: round(v, 6) for k, v in self.similarities.items()}
        return d


def quantize(x: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Raw 0-255 pixels -> the model's input dtype (affine quantization for integer inputs).

    q = clip(round(x / scale + zero_point)): for uint8 pixels through a 256-entry lookup table, which gives
    the same values as the float arithmetic at a fraction of the cost per frame.
    """
    if not info.quantized:
        return x.astype(info.dtype, copy=False)
    if info.dtype == np.uint8 and info.scale == 1.0 and info.zero_point == 0 and x.dtype == np.uint8:
        return x  # raw pixels feed straight in
    if x.dtype == np.uint8:
        return _lut(info.scale, info.zero_point, info.dtype.str)[x]
    return _affine(x, info.scale, info.zero_point, info.dtype)


def _affine(x: np.ndarray, scale: float, zero_point: int, dtype: np.dtype) -> np.ndarray:
    q = np.round(x.astype(np.float32) / np.float32(scale) + zero_point)
    ii = np.iinfo(dtype)
    return np.clip(q, ii.min, ii.max).astype(dtype)


@functools.lru_cache(maxsize=16)
def _lut(scale: float, zero_point: int, dtype_str: str) -> np.ndarray:
    return _affine(np.arange(256, dtype=np.uint8), scale, zero_point, np.dtype(dtype_str))


def dequantize(y: np.ndarray, info: TensorInfo) -> np.ndarray:
    if not info.quantized:
        return y.astype(np.float32, copy=False)
    return (y.astype(np.float32) - info.zero_point) * info.scale


def dequantizer(info: TensorInfo):
    """``dequantize`` for one output, made once: an 8-bit output reads a 256-entry table of dequantize's own values
    (one numpy call per frame instead of three, the same floats)."""
    if not info.quantized or info.dtype not in (np.uint8, np.int8):
        return functools.partial(dequantize, info=info)
    codes = np.arange(256, dtype=np.uint8)
    table = dequantize(codes.view(info.dtype), info)  # entry i: the value of the byte i
    if info.dtype == np.uint8:
        return table.__getitem__
    return lambda y: table[y.view(np.uint8)]


def select_similarity(probs: np.ndarray, sims: np.ndarray) -> np.ndarray:
    """The similarity of each photo: (N,) from an output of one value per photo (N, 1), or from one value per class
    (N, W) the value of the top class of ``probs`` (N, C). The first W classes have values; a top class beyond them
    (a background class, which has no training photos in the bank and is answered unknown anyway) reads the highest."""
    sims = np.asarray(sims).reshape(len(probs), -1)
    if sims.shape[1] == 1:
        return sims[:, 0]
    top = np.argmax(probs, axis=1)  # the first of tied classes, as Classifier.decide
    inside = top < sims.shape[1]
    picked = sims[np.arange(len(sims)), np.minimum(top, sims.shape[1] - 1)]
    return np.where(inside, picked, sims.max(axis=1))


def top_similarity(probs: list[float], sims: list[float]) -> float:
    """``select_similarity`` for one photo, on plain lists: a frame's few values cost less in Python than in numpy
    calls (tests/test_unknown.py checks that the two agree)."""
    if len(sims) == 1:
        return sims[0]
    top = probs.index(max(probs))  # the first of tied classes, as np.argmax
    return sims[top] if top < len(sims) else max(sims)


def _class_count(name: str, out: TensorInfo) -> int:
    """Classes in a class-score output of shape (C,) or (1, C) (a dynamic batch counts as 1); anything else, an
    image or a feature map, is refused with its shape."""
    shape = out.shape
    ok = (len(shape) == 1 or (len(shape) == 2 and shape[0] in (1, -1, 0))) and len(shape) and shape[-1] >= 2
    if not ok:
        raise BackendError(f"{name}: output {out.name!r} has shape {shape}; a classifier's output is one vector "
                           "of class scores, (1, classes) with at least 2 classes")
    return int(shape[-1])


class Classifier:
    """Load an artifact once; classify frames (numpy RGB arrays, Pillow images or image files)."""

    def __init__(self, model: str | Path, backend: str | None = None, threads: int | None = None,
                 threshold: float | None = None, top_k: int = 3, labels: list[str] | None = None,
                 min_similarity: float | None = None):
        self.path = Path(model)
        self.backend: Backend = load_backend(self.path, backend, threads)
        reuse_pillow_memory()  # a frame's buffers come from freed ones (preprocess.py)
        self.metadata = read_metadata(self.path, getattr(self.backend, "session", None)) or {}
        shape = self.backend.input.shape
        if len(shape) != 4 or shape[-1] != 3:
            raise BackendError(f"{self.path.name}: expected an NHWC image input (N, H, W, 3), got shape {shape}")
        h, w = shape[1], shape[2]
        if h <= 0 or w <= 0:  # dynamic spatial dims: fall back to the metadata
            size = self.metadata.get("input", {}).get("size")
            if not size:
                raise BackendError(f"{self.path.name} has a dynamic input size and no metadata naming it")
            h, w = size
        self.input_size = (int(h), int(w))
        try:  # the resize the model was trained with: bilinear for artifacts that name none
            self.resize = resize_of(self.metadata)
        except ImageError as exc:
            raise BackendError(f"{self.path.name}: {exc}") from None
        n_out = _class_count(self.path.name, self.backend.output)
        meta_labels = self.metadata.get("labels")
        self.labels = list(labels or meta_labels or [f"class_{i}" for i in range(n_out)])
        if n_out > 0 and len(self.labels) != n_out:
            raise BackendError(f"{self.path.name}: {len(self.labels)} labels for {n_out} outputs")
        if threshold is None:
            # the confidence rule's threshold ("unknown_threshold" in artifacts exported before the rename)
            threshold = self.metadata.get("confidence_threshold", self.metadata.get("unknown_threshold", 0.0)) or 0.0
        self.threshold = float(threshold)
        self.top_k = max(1, min(top_k, len(self.labels)))
        # the feature-similarity output, when the artifact has one
        self._sim_index = similarity_output(self.backend.outputs, self.backend.main)
        self._dequantize = [dequantizer(o) for o in self.backend.outputs]
        unknown = self.metadata.get("unknown") or {}
        # a background class (train --background: the camera's scene without flowers) is answered unknown
        self.background = self.metadata.get("background_class")
        if self._sim_index is None:
            if min_similarity is not None and min_similarity > -1:  # -1 means "off", harmless without the output
                raise BackendError(f"{self.path.name} has no similarity output: export it with --unknown similarity, "
                                   "or use --threshold (confidence)")
            self.min_similarity = None
        else:
            sim = self.similarity_output
            if len(sim.shape) > 2 or (len(sim.shape) == 2 and sim.shape[0] > 1) or self.similarity_width > n_out:
                raise BackendError(f"{self.path.name}: the similarity output {sim.name!r} has shape {sim.shape}; "
                                   f"expected (1, 1) or up to one value per class (1, {n_out})")
            if min_similarity is None:
                min_similarity = unknown.get("similarity_threshold", 0.0)
            self.min_similarity = float(min_similarity)
        if not self.backend.on_sensor:  # the AI Camera checks each frame's outputs instead
            self._check_probabilities()

    def _check_probabilities(self) -> None:
        """One inference on a grey frame: the class output must be probabilities (a softmax), not logits or an
        image. Refused at load with the figures, rather than scores like 86.6 at every frame."""
        h, w = self.input_size
        probs, _, _ = self.raw_scores(np.full((1, h, w, 3), 128, np.uint8))
        p = probs[0]
        step = self.backend.output.scale if self.backend.output.quantized else 1e-3
        tol = 0.02 + step * len(p)  # rounding of a quantized output, per class
        if not np.all(np.isfinite(p)) or p.min() < -tol or p.max() > 1 + tol or abs(float(p.sum()) - 1) > tol:
            raise BackendError(f"{self.path.name}: output {self.backend.output.name!r} of shape "
                               f"{self.backend.output.shape} is not class probabilities (values "
                               f"{float(np.min(p)):.3g} to {float(np.max(p)):.3g}, sum {float(np.sum(p)):.3g}); "
                               "export the classifier with a softmax as its last layer")

    @classmethod
    def load(cls, model: str | Path, **options) -> "Classifier":
        """The artifact ``model`` (.tflite, .onnx, or the AI Camera's .rpk), ready to classify; ``options`` as for the
        constructor (``threads``, ``backend``, ``threshold``, ``min_similarity``, ``top_k``)."""
        return cls(model, **options)

    @property
    def has_metadata(self) -> bool:
        return bool(self.metadata)

    def preprocess(self, frame: ImageLike) -> np.ndarray:
        """The frame as the model's input pixels: its size, the resize it was trained with."""
        return preprocess(frame, self.input_size, self.resize)

    @property
    def has_similarity(self) -> bool:
        return self._sim_index is not None

    @property
    def similarity_output(self) -> TensorInfo | None:
        return None if self._sim_index is None else self.backend.outputs[self._sim_index]

    @property
    def similarity_width(self) -> int:
        """Values per image in the similarity output: 1, or one per class (0 without the output)."""
        if self._sim_index is None:
            return 0
        shape = self.similarity_output.shape
        return int(shape[-1]) if len(shape) and shape[-1] > 0 else 1

    def scores(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float]:
        """uint8 (N, H, W, 3) or (H, W, 3) -> (probabilities (N, C), similarities (N,) or None, interpreter ms).
        A per-class similarity output gives the value of each image's top class (``raw_scores`` gives them all)."""
        probs, sims, inf_ms = self.raw_scores(pixels)
        return probs, (None if sims is None else select_similarity(probs, sims)), inf_ms

    def raw_scores(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, float]:
        """As ``scores``, with the similarity output as it is: (N, 1) or (N, classes)."""
        if pixels.ndim == 3:
            pixels = pixels[None]
        x = quantize(pixels, self.backend.input)
        self.backend.set_input(x)
        t = time.perf_counter_ns()
        self.backend.invoke()
        inf_ms = (time.perf_counter_ns() - t) / 1e6
        main, n = self.backend.main, len(pixels)
        if self._sim_index is None:
            return self._dequantize[main](self.backend.get_output()).reshape(n, -1), None, inf_ms
        outs, sim = self.backend.get_outputs(), self._sim_index
        return (self._dequantize[main](outs[main]).reshape(n, -1), self._dequantize[sim](outs[sim]).reshape(n, -1),
                inf_ms)

    def predict_batch(self, images: np.ndarray, batch: int = 1) -> np.ndarray:
        """Probabilities of many preprocessed images (batch 1 by default: what the device runs)."""
        return self.score_batch(images, batch)[0]

    def score_batch(self, images: np.ndarray, batch: int = 1,
                    desc: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(probabilities (N, C), similarities (N,) or None) of many preprocessed images; ``desc`` shows progress."""
        starts = range(0, len(images), batch)
        if desc:
            from edgeflower.util.progress import progress

            starts = progress(starts, total=len(starts), desc=desc)
        out = [self.scores(images[s:s + batch]) for s in starts]
        if not out:
            return np.zeros((0, len(self.labels)), np.float32), (np.zeros(0, np.float32) if self.has_similarity
                                                                  else None)
        probs = np.concatenate([o[0] for o in out])
        sims = np.concatenate([o[1] for o in out]) if self.has_similarity else None
        return probs, sims

    def is_unknown(self, score: float, similarity: float | None = None) -> bool:
        if score < self.threshold:
            return True
        return similarity is not None and self.min_similarity is not None and similarity < self.min_similarity

    def decide(self, probs: np.ndarray | list[float],
               similarity: float | None = None) -> tuple[str, float, int, list[tuple[str, float]]]:
        """(label or unknown, top probability, top class, the top k (label, probability)) of one photo."""
        values = probs.tolist() if isinstance(probs, np.ndarray) else probs  # read, never changed
        # of tied classes the first, as np.argmax (select_similarity): Python's sort is stable, reversed too
        order = sorted(range(len(values)), key=values.__getitem__, reverse=True)
        top = order[0]
        score = values[top]
        unknown = self.is_unknown(score, similarity) or self.labels[top] == self.background
        label = UNKNOWN if unknown else self.labels[top]
        return label, score, top, [(self.labels[i], values[i]) for i in order[: self.top_k]]

    def classify(self, frame: ImageLike, smoother: "Smoother | None" = None) -> Prediction:
        t0 = time.perf_counter_ns()
        pixels = self.preprocess(frame)
        probs, sims, inf_ms = self.raw_scores(pixels)
        p = probs[0]
        raw = None if sims is None else sims[0]
        if smoother is not None:  # smooths every class's similarity, then reads the smoothed top class's
            p, raw = smoother.update(p, raw)
        values = p.tolist()  # a frame's few values: plain Python from here
        sims = None if raw is None else np.ravel(raw).tolist()
        sim = None if sims is None else top_similarity(values, sims)
        label, score, top, topk = self.decide(values, sim)
        total = (time.perf_counter_ns() - t0) / 1e6
        per_class = None if sims is None or len(sims) == 1 else dict(zip(self.labels, sims))
        return Prediction(label, score, topk, p, top, inf_ms, total, sim, per_class)


class Smoother:
    """Mean of the last N probability vectors, so a steady scene does not flicker between labels."""

    def __init__(self, n: int):
        self.buf: deque[np.ndarray] = deque(maxlen=max(1, n))
        self.sims: deque[np.ndarray] = deque(maxlen=max(1, n))

    def update(self, probs: np.ndarray, similarity=None):
        """(mean of the recent probabilities, mean of the recent similarities or None without one). A similarity
        is one value or one per class (an array); the mean has the same form."""
        self.buf.append(np.asarray(probs, dtype=np.float32))
        if similarity is None:
            return np.mean(self.buf, axis=0), None
        self.sims.append(np.asarray(similarity, dtype=np.float32))
        mean = np.mean(np.stack(list(self.sims)), axis=0)
        return np.mean(self.buf, axis=0), (float(mean) if mean.size == 1 and np.ndim(similarity) == 0 else mean)
