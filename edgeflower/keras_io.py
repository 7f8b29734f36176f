"""A run's Keras model: finding it, loading it and predicting in batches (shared by train's eval and by export).

The lowest layer that needs Keras; train and export import it, edge and data never do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from edgeflower.errors import ModelError, RunDirError
from edgeflower.util.deps import require


def predict_probs(model, x: np.ndarray, batch: int = 16) -> np.ndarray:
    """Probabilities in small compiled batches. An eager call keeps a batch's activations alive: MobileNetV2
    peaked at 6.6 GB with eager batches of 64 and at 1.0 GB with ``predict_on_batch`` of 16 (measured)."""
    if len(x) == 0:
        return np.zeros((0, int(model.outputs[0].shape[-1])), np.float32)
    return np.concatenate([np.asarray(model.predict_on_batch(x[s:s + batch].astype(np.float32)))
                           for s in range(0, len(x), batch)])


def load_keras_model(path: str | os.PathLike):
    require("tensorflow", "loading a Keras model")
    import keras

    p = Path(path)
    if not p.is_file():
        raise ModelError(f"model file {p} not found: pass a run directory or a .keras file")
    try:
        return keras.models.load_model(p, compile=False)
    except Exception as exc:  # keras raises ValueError, OSError, zipfile errors...
        raise ModelError(f"cannot load {p} as a Keras model ({str(exc).splitlines()[0][:200]}): "
                         "is it a complete .keras file written by edgeflower train?") from exc


def resolve_run(target: str | os.PathLike) -> tuple[Path, dict | None]:
    """RUN_DIR or MODEL.keras -> (model path, run config or None)."""
    p = Path(target)
    if p.is_dir():
        m = p / "model.keras"
        if not m.is_file():
            raise RunDirError(f"{p} has no model.keras: is it a finished run directory (not *.partial)?")
        cfg = json.loads((p / "config.json").read_text()) if (p / "config.json").is_file() else None
        return m, cfg
    if not p.exists():
        raise ModelError(f"{p} does not exist: pass a run directory or a .keras file")
    cfg_path = p.parent / "config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.is_file() else None
    return p, cfg
