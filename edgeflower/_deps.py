"""Heavy imports live inside the functions that need them, behind this helper.

A missing optional package becomes a MissingDependencyError that names the extra to install,
instead of a bare ImportError (and never a confusing "No such command").
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgeflower.errors import MissingDependencyError

# module name -> (pip package, edgeflower extra)
_EXTRAS = {
    "tensorflow": ("tensorflow", "train"),
    "keras": ("tensorflow", "train"),
    "tf2onnx": ("tf2onnx", "export"),
    "onnx": ("onnx", "export"),
    "onnxruntime": ("onnxruntime", "edge"),
    "onnxruntime.quantization": ("onnxruntime", "export"),
    "ai_edge_litert.interpreter": ("ai-edge-litert", "edge"),
    "tflite_runtime.interpreter": ("tflite-runtime", "edge"),
    "cv2": ("opencv-python-headless", "edge"),
    "picamera2": ("picamera2 (apt install python3-picamera2)", "edge"),
    "matplotlib": ("matplotlib", "train"),
    "mediapipe": ("mediapipe", "export"),
}


def require(module: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise MissingDependencyError saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg, extra = _EXTRAS.get(module, (module.split(".")[0], "all"))
        why = f" (needed for {purpose})" if purpose else ""
        raise MissingDependencyError(
            f"{module} is not installed{why}: pip install \"edgeflower[{extra}]\" (or pip install {pkg}). [{exc}]"
        ) from exc
