"""Artifacts describe themselves: labels, input size/dtype/quantization, preprocessing, source run, accuracy.

The metadata lives inside every artifact and, as a copy with the file's size and sha256, in a sidecar JSON beside
it (``model_int8.tflite.json``):
- ``.tflite``: standard TFLite Model Metadata (edgeflower.exporting.tflite_metadata) with edgeflower's fields as the
  associated file ``edgeflower.json``. A populated ``.tflite`` is also a zip archive, so the standard library reads it;
- ``.onnx``: ``metadata_props["edgeflower"]``.

The embedded copy is read first, the sidecar second (artifacts from before the embedded metadata, or a file whose
embedded copy cannot be read).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

METADATA_KEY = "edgeflower"
EMBEDDED_FILE = "edgeflower.json"  # the TFLite associated file with edgeflower's fields


def sidecar_path(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def embedded_tflite_metadata(artifact: str | Path) -> dict | None:
    """edgeflower's fields from inside a ``.tflite`` (its associated file ``edgeflower.json``), or None."""
    try:
        if not zipfile.is_zipfile(artifact):
            return None
        with zipfile.ZipFile(artifact) as z:
            if EMBEDDED_FILE not in z.namelist():
                return None
            return json.loads(z.read(EMBEDDED_FILE))
    except (OSError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError):
        return None


def read_metadata(artifact: str | Path, onnx_session: Any = None) -> dict | None:
    """Metadata from inside the artifact, else from the sidecar; None when the artifact carries none."""
    embedded = None
    if str(artifact).lower().endswith(".tflite"):
        embedded = embedded_tflite_metadata(artifact)
    elif onnx_session is not None:
        props = onnx_session.get_modelmeta().custom_metadata_map
        if METADATA_KEY in props:
            try:
                embedded = json.loads(props[METADATA_KEY])
            except json.JSONDecodeError:
                embedded = None
    return embedded if embedded is not None else read_sidecar(artifact)


def read_sidecar(artifact: str | Path) -> dict | None:
    """The sidecar JSON beside ``artifact``; None when there is none or it cannot be read."""
    side = sidecar_path(artifact)
    if side.is_file():
        try:
            return json.loads(side.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    return None
