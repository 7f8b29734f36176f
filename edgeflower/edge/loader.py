"""Which backend runs a model file: the loader above the interpreters (edgeflower.edge.backends) and the AI Camera
(edgeflower.edge.imx500), so that neither imports the other's module and the device side has no import circle."""

from __future__ import annotations

from pathlib import Path

from edgeflower.edge.backends import BACKENDS, Backend
from edgeflower.errors import BackendError, MissingDependencyError

# Preference order per file type.
_BY_SUFFIX = {".tflite": ["litert", "tflite-runtime"], ".onnx": ["onnxruntime"]}


def load_backend(path: str | Path, backend: str | None = None, threads: int | None = None) -> Backend:
    """Load ``path`` with the named backend, or the first one installed for its file type."""
    path = Path(path)
    if not path.is_file():
        raise BackendError(f"model file not found: {path}")
    if threads is not None and threads < 1:
        raise BackendError(f"threads must be at least 1, got {threads}")
    suffix = path.suffix.lower()
    if suffix == ".rpk" or backend == "imx500":  # the AI Camera: the network runs on the sensor
        from edgeflower.edge.imx500 import Imx500Backend  # picamera2 and the sensor's helpers only when asked

        return Imx500Backend(path, threads)
    if backend is not None:
        if backend not in BACKENDS:
            raise BackendError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
        if suffix in _BY_SUFFIX and backend not in _BY_SUFFIX[suffix]:
            raise BackendError(f"backend {backend} cannot run {suffix} files; use one of {_BY_SUFFIX[suffix]}")
        return BACKENDS[backend](path, threads)
    if suffix not in _BY_SUFFIX:
        raise BackendError(f"{path.name}: unknown model type {suffix!r}; expected .tflite, .onnx or .rpk")
    missing = []
    for name in _BY_SUFFIX[suffix]:
        try:
            return BACKENDS[name](path, threads)
        except MissingDependencyError as exc:
            missing.append(str(exc))
    raise MissingDependencyError(f"no backend installed for {suffix}: " + "; ".join(missing))
