"""The Raspberry Pi AI Camera (Sony IMX500): the network runs on the sensor, the Pi reads its outputs per frame.

An `export --formats imx500` folder holds ``packerOut.zip`` (packaged on the Pi with ``imx500-package -i
packerOut.zip -o FOLDER`` into ``network.rpk``), ``network.rpk.json`` (labels, thresholds) and ``bank.npz`` (the
training photos' pooled features). The sensor outputs two tensors per frame: the class probabilities and the
pooled features. The Pi computes the `unknown` similarity from the features, as every other artifact computes it
inside the model: the cosine to the k-th nearest training photo of each class.

- ``Imx500Backend`` (``loader.load_backend`` for ``.rpk`` files) turns one frame's sensor outputs into the outputs of an
  edgeflower artifact, ``probs`` and ``similarity``, so that ``Classifier`` answers, smooths and rejects as with a
  .tflite model. It runs nothing on the pixels.
- ``Imx500Source`` (``classify --camera imx500``) is a picamera2 source that yields each frame with its outputs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgeflower.edge.backends import PROBS, SIMILARITY, Backend, TensorInfo
from edgeflower.edge.metadata import read_metadata
from edgeflower.edge.sources import PiCameraSource
from edgeflower.errors import BackendError, SourceError
from edgeflower.util.metrics import kth_largest, normalize

log = logging.getLogger(__name__)


def per_class_kth(sims: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """(N, W): for each class 0..W-1, the k-th largest similarity among its rows of the bank (``labels``: each
    row's class, in any order)."""
    out = []
    for c in range(int(labels.max()) + 1):
        cols = sims[:, labels == c]
        out.append(kth_largest(cols, k))
    return np.stack(out, axis=1)


def sensor_similarity(features: np.ndarray, bank: np.ndarray, bank_labels: np.ndarray | None, k: int) -> np.ndarray:
    """The `unknown` similarity from the sensor's pooled features (N, D): the cosine to the k-th nearest row of the
    normalized ``bank``, per class (N, W) with ``bank_labels``, else over all rows (N, 1). The export calibrates its
    threshold with this same function."""
    sims = normalize(features) @ np.asarray(bank, np.float32).T
    if bank_labels is None:
        return kth_largest(sims, k)[:, None]
    return per_class_kth(sims, bank_labels, k)


class Imx500Backend(Backend):
    """The sensor's outputs of one frame, given with ``feed``, as edgeflower's outputs (probs, similarity)."""

    name = "imx500"
    dist = "picamera2"
    on_sensor = True  # the network ran before the frame reached us: nothing here runs on pixels

    def __init__(self, path: str | Path, threads: int | None = None):
        self.path = Path(path)
        meta = read_metadata(self.path)
        if meta is None:
            raise BackendError(f"{self.path.name}: no {self.path.name}.json beside it; copy the whole folder that "
                               "`edgeflower export --formats imx500` wrote, and package the .rpk into it")
        self.metadata = meta
        h, w = meta["input"]["size"]
        self.n_classes = len(meta["labels"])
        self.input = TensorInfo("image", (1, int(h), int(w), 3), np.dtype(np.uint8))
        self.outputs = [TensorInfo(PROBS, (1, self.n_classes), np.dtype(np.float32))]
        unknown = meta.get("unknown") or {}
        self.bank = None
        if unknown.get("method", "").startswith("knn_cosine"):
            bank_file = self.path.with_name(unknown["bank"])
            if not bank_file.is_file():
                raise BackendError(f"{self.path.name}: the feature bank {bank_file.name} is missing beside it")
            z = np.load(bank_file)
            self.bank = z["bank"].astype(np.float32)
            self.bank_labels = z["labels"].astype(np.int64) if len(z["labels"]) else None
            self.k = int(unknown.get("neighbours", 2))
            width = 1 if self.bank_labels is None else int(self.bank_labels.max()) + 1
            self.outputs.append(TensorInfo(SIMILARITY, (1, width), np.dtype(np.float32)))
        self._pending: list[np.ndarray] | None = None
        self._y: list[np.ndarray] = []

    def feed(self, outputs: list[np.ndarray]) -> None:
        """One frame's sensor outputs: [probabilities (C,) or (1, C), features (D,) or (1, D)]."""
        probs = np.asarray(outputs[0], np.float32).reshape(1, -1)
        if probs.shape[1] != self.n_classes:
            raise BackendError(f"the sensor gave {probs.shape[1]} class scores for {self.n_classes} labels: is "
                               "network.rpk from the same export as network.rpk.json?")
        if not np.all(np.isfinite(probs)) or abs(float(probs.sum()) - 1) > 0.05 + 0.01 * self.n_classes:
            raise BackendError(f"the sensor's first output is not class probabilities (sum {float(probs.sum()):.3g})")
        feats = None
        if self.bank is not None:
            if len(outputs) < 2:
                raise BackendError("the sensor gave no feature output: the network was exported without `unknown`")
            feats = np.asarray(outputs[1], np.float32).reshape(1, -1)
            if feats.shape[1] != self.bank.shape[1]:
                raise BackendError(f"the sensor gave {feats.shape[1]} features; the bank has {self.bank.shape[1]}")
        self._pending = [probs] if feats is None else [probs, feats]

    def set_input(self, x: np.ndarray) -> None:
        pass  # the sensor has already run the network on this frame

    def invoke(self) -> None:
        if self._pending is None:
            raise BackendError("no sensor output for this frame: the IMX500 model runs only on camera frames "
                               "(classify --camera imx500)")
        probs = self._pending[0]
        self._y = [probs]
        if self.bank is not None:
            self._y.append(sensor_similarity(self._pending[1], self.bank, self.bank_labels, self.k))
        self._pending = None  # never reuse a frame's outputs for the next frame

    def run_all(self, x: np.ndarray) -> list[np.ndarray]:
        self.invoke()
        return self._y


class Imx500Source(PiCameraSource):
    """The AI Camera through picamera2 (apt install imx500-all python3-picamera2): frames with the sensor's outputs.

    The sensor squashes its whole field of view into the network's square input, as edgeflower's preprocessing
    stretches every photo and frame (``PREPROCESSING["aspect"] == "stretch"``), so the network sees what it was
    trained on. ``crop`` asks the sensor to keep the aspect ratio instead (``set_auto_aspect_ratio``, a centre
    crop): only for a network trained on such crops."""

    name = "imx500"
    what = "the AI Camera"

    def __init__(self, rpk: str | Path, size: tuple[int, int] = (640, 480), crop: bool = False,
                 reconnect: bool = False, retries: int = 10):
        from edgeflower.util.deps import require

        self.rpk = Path(rpk)
        if not self.rpk.is_file():
            raise SourceError(f"{self.rpk}: no such .rpk; make it on the Pi with `imx500-package -i packerOut.zip "
                              f"-o {self.rpk.parent}`")
        self._picamera2 = require("picamera2", "the Raspberry Pi AI Camera")
        self._devices = require("picamera2.devices", "the Raspberry Pi AI Camera")
        self.size, self.crop, self.reconnect, self.retries = size, crop, reconnect, retries
        self._start()

    def _start(self) -> None:
        try:
            self.imx = self._devices.IMX500(str(self.rpk))  # loads the network: before the camera is opened
            if self.crop:
                self.imx.set_auto_aspect_ratio()
            self.cam = self._picamera2.Picamera2(self.imx.camera_num)
            cfg = self.cam.create_preview_configuration(main={"size": self.size, "format": "BGR888"})
            self.cam.configure(cfg)
            self.cam.start()
        except Exception as exc:  # noqa: BLE001 - libcamera raises RuntimeError/IndexError when no camera
            raise SourceError(f"cannot start the AI Camera with {self.rpk.name} ({exc}): is it connected, and is "
                              "imx500-all installed?") from exc

    def _capture(self) -> tuple[np.ndarray, list] | None:
        request = self.cam.capture_request()
        try:
            arr = request.make_array("main")
            meta = request.get_metadata()
        finally:
            request.release()
        outputs = self.imx.get_outputs(meta, add_batch=True)
        if outputs is None:  # the network's result for this frame has not arrived (the first frames)
            return None
        return arr, [np.asarray(o) for o in outputs]
