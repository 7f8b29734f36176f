"""Artifacts describe themselves: labels, input size/dtype/quantization, preprocessing, source run, accuracy.

The metadata lives in a sidecar JSON beside every artifact (``model_int8.tflite.json``) and, for ONNX,
also inside the file (``metadata_props["edgeflower"]``). The device needs nothing from the training side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METADATA_KEY = "edgeflower"


def sidecar_path(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def read_metadata(artifact: str | Path, onnx_session: Any = None) -> dict | None:
    """Metadata from the sidecar, else from inside an ONNX file; None when the artifact carries none."""
    side = sidecar_path(artifact)
    if side.is_file():
        try:
            return json.loads(side.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    if onnx_session is not None:
        props = onnx_session.get_modelmeta().custom_metadata_map
        if METADATA_KEY in props:
            try:
                return json.loads(props[METADATA_KEY])
            except json.JSONDecodeError:
                return None
    return None
