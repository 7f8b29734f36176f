"""Interpreter backends behind one small interface: ai-edge-litert, tflite-runtime (legacy), onnxruntime.

Each backend is built once per model; ``run`` takes an input already in the model's dtype.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeflower.edge.metadata import read_metadata, read_sidecar
from edgeflower.errors import BackendError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float = 0.0  # 0 means "not quantized"
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0 and np.issubdtype(self.dtype, np.integer)


def _pkg_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


PROBS, SIMILARITY = "probs", "similarity"  # the output names of every edgeflower artifact (probs is output 0)


def _named(outputs: list[TensorInfo], name: str) -> int | None:
    return next((i for i, o in enumerate(outputs) if o.name == name), None)


def main_output(outputs: list[TensorInfo]) -> int:
    """Index of the class-probability output: the one named ``probs``; in artifacts from before the outputs were
    named, the first one with more than one value per image (the similarity is a single value)."""
    named = _named(outputs, PROBS)
    if named is not None:
        return named
    for i, o in enumerate(outputs):
        if len(o.shape) and o.shape[-1] != 1:
            return i
    return 0


def similarity_output(outputs: list[TensorInfo], main: int) -> int | None:
    """Index of the ``unknown`` similarity output: the one named ``similarity``; in older artifacts, a
    single-value output other than the probabilities. None when the artifact has none."""
    named = _named(outputs, SIMILARITY)
    if named is not None:
        return named
    return next((i for i, o in enumerate(outputs) if i != main and o.shape[-1:] == (1,)), None)


class Backend:
    """One loaded model. Subclasses set ``input``/``outputs`` and implement ``run_all``.

    ``output`` is the class-probability output; ``outputs`` lists every output (the ``unknown`` score, when the
    artifact has one, is another). ``run``/``get_output`` return the probabilities only.
    """

    name = "base"
    dist = ""
    input: TensorInfo
    outputs: list[TensorInfo]
    main: int = 0
    session: Any = None
    on_sensor = False  # True: the network ran on the camera's sensor (the AI Camera); outputs come with each frame

    @property
    def output(self) -> TensorInfo:
        return self.outputs[self.main]

    def run_all(self, x: np.ndarray) -> list[np.ndarray]:  # pragma: no cover - interface
        raise NotImplementedError

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.run_all(x)[self.main]

    # Split API so that a benchmark can time the interpreter call alone.
    def set_input(self, x: np.ndarray) -> None:
        self._x = x

    def invoke(self) -> None:
        self._y = self.run_all(self._x)

    def get_output(self) -> np.ndarray:
        return self._y[self.main]

    def get_outputs(self) -> list[np.ndarray]:
        return self._y

    @property
    def version(self) -> str:
        return _pkg_version(self.dist)


# the fix named by a load error: a file cut short by a copy, or not an exported model at all
DAMAGED = ("the file is damaged or is not an exported model: copy it again, or export it again with "
           "`edgeflower export RUN`")


class _TFLiteBackend(Backend):
    module = ""

    def __init__(self, path: str | Path, threads: int | None = None):
        mod = _import(self.module, self.dist)
        kwargs: dict[str, Any] = {"model_path": os.fspath(path)}
        if threads:
            kwargs["num_threads"] = int(threads)
        from edgeflower.util.quiet import quiet_fds

        try:
            with quiet_fds():  # the XNNPACK delegate's INFO line, written by C++ (shown with -v)
                self.interpreter = mod.Interpreter(**kwargs)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"{self.name} cannot load {path}: {str(exc).splitlines()[0]}; {DAMAGED}") from exc
        inp = self.interpreter.get_input_details()[0]
        outs = self.interpreter.get_output_details()
        self.input = _tflite_info(inp)
        self.outputs = [_tflite_info(o) for o in outs]
        self.main = main_output(self.outputs)
        self._in_idx = inp["index"]
        self._out_idxs = [o["index"] for o in outs]
        self._out_idx = self._out_idxs[self.main]
        self._batch = int(inp["shape"][0]) if len(inp["shape"]) else 1

    def _resize(self, n: int) -> None:
        if n != self._batch:
            shape = list(self.input.shape)
            shape[0] = n
            self.interpreter.resize_tensor_input(self._in_idx, shape)
            self.interpreter.allocate_tensors()
            self._batch = n

    def set_input(self, x: np.ndarray) -> None:
        self._resize(x.shape[0])
        self.interpreter.set_tensor(self._in_idx, x)

    def invoke(self) -> None:
        self.interpreter.invoke()

    def get_output(self) -> np.ndarray:
        return self.interpreter.get_tensor(self._out_idx)

    def get_outputs(self) -> list[np.ndarray]:
        return [self.interpreter.get_tensor(i) for i in self._out_idxs]

    def run_all(self, x: np.ndarray) -> list[np.ndarray]:
        self.set_input(x)
        self.invoke()
        return [t.copy() for t in self.get_outputs()]


def _tflite_info(d: dict) -> TensorInfo:
    scale, zp = d.get("quantization", (0.0, 0))
    return TensorInfo(d["name"], tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]), float(scale), int(zp))


class LiteRTBackend(_TFLiteBackend):
    name = "litert"
    module = "ai_edge_litert.interpreter"
    dist = "ai-edge-litert"


class TFLiteRuntimeBackend(_TFLiteBackend):
    name = "tflite-runtime"
    module = "tflite_runtime.interpreter"
    dist = "tflite-runtime"

    def __init__(self, path: str | Path, threads: int | None = None):
        if int(np.__version__.split(".")[0]) >= 2:
            # tflite-runtime 2.14 imports under numpy 2 but fails inside model loading.
            raise BackendError(
                f"tflite-runtime needs numpy<2 but numpy {np.__version__} is installed: "
                "use the default backend (pip install ai-edge-litert) or pip install \"numpy<2\""
            )
        super().__init__(path, threads)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    dist = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None):
        ort = _import("onnxruntime", self.dist)
        try:
            # the sidecar decides before the one load; without one, the metadata inside (a second load for 8 bits)
            side = read_sidecar(path)
            self.session = _ort_session(ort, path, threads, precise=side is not None
                                        and not weights_cannot_saturate(side))
            if side is None and not weights_cannot_saturate(read_metadata(path, self.session)):
                self.session = _ort_session(ort, path, threads, precise=True)
        except Exception as exc:  # onnxruntime raises its own exception classes
            raise BackendError(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0]}; {DAMAGED}") from exc
        i = self.session.get_inputs()[0]
        self.input = TensorInfo(i.name, tuple(s if isinstance(s, int) else -1 for s in i.shape), _ort_dtype(i.type))
        self.outputs = [TensorInfo(o.name, tuple(s if isinstance(s, int) else -1 for s in o.shape), _ort_dtype(o.type))
                        for o in self.session.get_outputs()]
        self.main = main_output(self.outputs)
        self._out_names = [o.name for o in self.outputs]

    def run_all(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self._out_names, {self.input.name: x})


def weights_cannot_saturate(metadata: dict | None) -> bool:
    """Whether an ONNX artifact's int8 weights are 7-bit (export's reduce_range) or absent, as its metadata says.
    On x86 CPUs without VNNI, onnxruntime's fast uint8 x int8 kernels add pairs of products into int16 with
    saturation (VPMADDUBSW): with 8-bit weights that computes something other than the QDQ graph (make main's
    MobileNetV2: 23 of 360 labels changed), with 7-bit weights (|w| <= 64, 2 x 255 x 64 < 32768) it cannot."""
    if metadata and metadata.get("quantized") is False:  # a float artifact: no int8 weights at all
        return True
    q = (metadata or {}).get("quantization_options") or {}
    return q.get("reduce_range") is True


def _ort_session(ort, path: str | Path, threads: int | None, precise: bool):
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    if precise:
        # uint8 x uint8 kernels where a layer's 8-bit int8 weights could saturate: exact, and about 1.9x slower for
        # EfficientNet-Lite0 on this x86 (10.4 against 5.6 ms); it does nothing on ARM or VNNI CPUs
        # (docs/studies/onnx-reduce-range.md). Every artifact without 7-bit weights, or without metadata, gets it.
        opts.add_session_config_entry("session.x64quantprecision", "1")
    return ort.InferenceSession(os.fspath(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _ort_dtype(t: str) -> np.dtype:
    table = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8,
             "tensor(float16)": np.float16, "tensor(double)": np.float64}
    return np.dtype(table.get(t, np.float32))


def _import(module: str, dist: str):
    from edgeflower.util.deps import require

    return require(module, f"the {dist} backend")


BACKENDS: dict[str, type[Backend]] = {
    "litert": LiteRTBackend,
    "tflite-runtime": TFLiteRuntimeBackend,
    "onnxruntime": OnnxRuntimeBackend,
}
