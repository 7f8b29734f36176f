"""Heavy imports live inside the functions that need them, behind this helper.

A missing optional package becomes a MissingDependencyError that names the extra to install,
instead of a bare ImportError (and never a confusing "No such command").
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgeflower.errors import MissingDependencyError

# module name -> (pip package, or None where pip cannot install it; edgeflower extra, or None where no extra holds
# it; other advice)
_EXTRAS: dict[str, tuple[str | None, str | None, str]] = {
    "tensorflow": ("tensorflow", "train", ""),
    "keras": ("tensorflow", "train", ""),
    "tf2onnx": ("tf2onnx", "export", ""),
    "onnx": ("onnx", "export", ""),
    "onnxruntime": ("onnxruntime", "edge-onnx", ""),
    "onnxruntime.quantization": ("onnxruntime", "export", ""),
    "ai_edge_litert.interpreter": ("ai-edge-litert", "edge", ""),
    "tflite_runtime.interpreter": ("tflite-runtime", None, "it needs numpy<2; ai-edge-litert is the default"),
    "cv2": ("opencv-python-headless", "edge", "or apt install python3-opencv"),
    "picamera2": (None, None, "on Raspberry Pi OS run `sudo apt install python3-picamera2` and create the venv "
                                     "with --system-site-packages (README, 'Raspberry Pi')"),
    "matplotlib": ("matplotlib", "train", ""),
    "mediapipe": ("mediapipe", "export", ""),
    "paho.mqtt.client": ("paho-mqtt", "mqtt", ""),
}


def missing(module: str, purpose: str = "") -> MissingDependencyError:
    """The one error for a package that is not installed: what needs it, and the one command that installs it."""
    pkg, extra, advice = _EXTRAS.get(module, (module.split(".")[0], "all", ""))
    why = f" (needed for {purpose})" if purpose else ""
    if pkg is None:  # not from pip: the advice is the way
        how = advice
    else:
        how = (f'pip install "edgeflower[{extra}]" (or pip install {pkg})' if extra else f"pip install {pkg}") + \
            (f"; {advice}" if advice else "")
    return MissingDependencyError(f"{module} is not installed{why}: {how}")


def require(module: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise :func:`missing`'s error."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing(module, purpose) from exc
