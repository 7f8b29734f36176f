"""Standard TFLite Model Metadata in every exported ``.tflite``, written with MediaPipe's metadata writers.

What goes in (what MediaPipe Tasks, the TFLite Task Library and Android Studio read):
- the model's name and description;
- input 0 ``image``: RGB image properties and NormalizationOptions mean 0 / std 1 (the model scales its own
  pixels: it takes raw 0-255 values, float32 for the float artifact and uint8 for the int8 one);
- output 0 ``probs``: the class scores, with the labels as an associated ``labels.txt`` (TENSOR_AXIS_LABELS);
- output 1 ``similarity`` (when the artifact has the ``unknown`` score): described as the similarity score;
- ``edgeflower.json``: edgeflower's own fields (preprocessing, unknown thresholds, source run, accuracy), as a
  model-level associated file. The populated file is also a zip archive, so the edge runtime reads it with the
  standard library (edgeflower.edge.metadata), without MediaPipe.

MediaPipe's wheels (0.10.3x and 1.x) ship the Python metadata writers but not the small native module that
computes ``min_parser_version``; ``_parser_version`` is that function in Python, from the schema's version history
(metadata_schema.fbs), and stands in only when the native module is missing.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import types
from pathlib import Path

from edgeflower.edge.metadata import EMBEDDED_FILE as METADATA_FILE
from edgeflower.errors import ExportError
from edgeflower.util.deps import require

LABELS_FILE = "labels.txt"
_NATIVE = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"


def _version(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def _parser_version(metadata_buf: bytes) -> str:
    """The minimum metadata parser version that understands every field set in ``metadata_buf``: the largest
    "Added in" version (metadata_schema.fbs history) among the fields and enum values used, at least 1.0.0."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb

    md = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAsModelMetadata(bytearray(metadata_buf), 0))
    need = ["1.0.0"]
    opts = fb.ProcessUnitOptions
    unit_versions = {opts.BertTokenizerOptions: "1.1.0", opts.SentencePieceTokenizerOptions: "1.1.0",
                     opts.RegexTokenizerOptions: "1.2.1"}
    file_versions = {fb.AssociatedFileType.VOCABULARY: "1.0.1", fb.AssociatedFileType.SCANN_INDEX_FILE: "1.4.0"}

    def files(fs):
        for f in fs or []:
            if f.type in file_versions:
                need.append(file_versions[f.type])
            if f.version:
                need.append("1.4.1")

    def units(us):
        for u in us or []:
            if u.optionsType in unit_versions:
                need.append(unit_versions[u.optionsType])

    files(md.associatedFiles)
    for sub in md.subgraphMetadata or []:
        files(sub.associatedFiles)
        if sub.inputProcessUnits or sub.outputProcessUnits:
            need.append("1.1.0")
        units(sub.inputProcessUnits)
        units(sub.outputProcessUnits)
        if sub.inputTensorGroups or sub.outputTensorGroups:
            need.append("1.2.0")
        if sub.customMetadata:
            need.append("1.5.0")
        for t in (sub.inputTensorMetadata or []) + (sub.outputTensorMetadata or []):
            files(t.associatedFiles)
            units(t.processUnits)
            if t.content is not None and t.content.contentPropertiesType == fb.ContentProperties.AudioProperties:
                need.append("1.3.0")
    return max(need, key=_version)


def _writers():
    """MediaPipe's metadata modules, with ``_parser_version`` standing in for the native module it lacks."""
    require("mediapipe", "the standard TFLite metadata")
    try:
        __import__(_NATIVE)
    except ImportError:
        parent = _NATIVE.rsplit(".", 1)[0]
        for name in ("mediapipe.tasks.cc", "mediapipe.tasks.cc.metadata", parent):
            sys.modules.setdefault(name, types.ModuleType(name))
        shim = types.ModuleType(_NATIVE)
        shim.GetMinimumMetadataParserVersion = _parser_version
        sys.modules[_NATIVE] = shim
        sys.modules[parent]._pywrap_metadata_version = shim  # type: ignore[attr-defined]
    from mediapipe.tasks.metadata import metadata_schema_py_generated as fb
    from mediapipe.tasks.python.metadata import metadata
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_info, writer_utils

    return fb, metadata, metadata_info, writer_utils


def available() -> None:
    """Raise MissingDependencyError (naming the extra) when the metadata writers cannot be imported."""
    _writers()


def embed_tflite_metadata(path: Path, out: Path, meta: dict) -> None:
    """Copy the ``.tflite`` at ``path`` to ``out`` with standard metadata built from edgeflower's ``meta``."""
    import flatbuffers

    fb, metadata, info, wu = _writers()
    model = bytearray(Path(path).read_bytes())
    in_types, out_types = wu.get_input_tensor_types(model), wu.get_output_tensor_types(model)
    out_names = wu.get_output_tensor_names(model)
    labels = [str(c) for c in meta.get("labels") or []]
    if len(in_types) != 1 or not 1 <= len(out_types) <= 2 or not labels:
        raise ExportError(f"{path.name}: TFLite metadata needs one image input, one or two outputs and labels "
                          f"(got {len(in_types)} inputs, {len(out_types)} outputs, {len(labels)} labels)")
    if out_names[0] != "probs" or (len(out_names) == 2 and out_names[1] != "similarity"):
        raise ExportError(f"{path.name}: outputs are {out_names}; expected probs first, then similarity")
    model_name = meta.get("model") or "edgeflower classifier"
    kind = "int8 (uint8 input, raw pixels)" if meta.get("quantized") else "float32 (raw 0-255 pixels)"
    with tempfile.TemporaryDirectory(prefix=".metadata.") as tmp:
        label_file = os.path.join(tmp, LABELS_FILE)
        Path(label_file).write_text("\n".join(labels) + "\n")
        own_file = os.path.join(tmp, METADATA_FILE)
        Path(own_file).write_text(json.dumps(meta, sort_keys=True, indent=1))
        md = info.GeneralMd(
            name=f"edgeflower {model_name}", version=str(meta.get("edgeflower_version", "")),
            description=(f"Image classifier ({', '.join(labels)}), {kind}, exported by edgeflower. Output 0: class "
                         "probabilities; output 1 (if present): cosine similarity to the training photos"
                         + (" of each class (read the top class's value)"
                            if (meta.get("unknown") or {}).get("per_class") else "") +
                         f", below the threshold in {METADATA_FILE} the answer is 'unknown'."),
            author="edgeflower").create_metadata()
        md.associatedFiles = [info.AssociatedFileMd(
            own_file, description="edgeflower metadata: preprocessing, labels, unknown thresholds, source run and "
                                  "measured accuracy (JSON)",
            file_type=fb.AssociatedFileType.DESCRIPTIONS).create_metadata()]
        sub = fb.SubGraphMetadataT()
        sub.inputTensorMetadata = [info.InputImageTensorMd(
            name="image", description="RGB image, raw pixel values 0-255 (the model scales them itself)",
            norm_mean=[0.0], norm_std=[1.0], color_space_type=fb.ColorSpaceType.RGB,
            tensor_type=in_types[0]).create_metadata()]
        outputs = [info.ClassificationTensorMd(
            name="probs", description="Probabilities of the classes, in the order of labels.txt",
            label_files=[info.LabelFileMd(label_file)], tensor_type=out_types[0]).create_metadata()]
        if len(out_types) == 2:
            u = meta.get("unknown") or {}
            thr = u.get("similarity_threshold")
            outputs.append(info.TensorMd(
                name="similarity",
                description=("Cosine similarity of the image's features to the nearest training photos (" +
                             (u.get("description") or "the unknown score") +
                             (f"); answer unknown below {thr:.4f}" if thr is not None else ")"))).create_metadata())
        sub.outputTensorMetadata = outputs
        md.subgraphMetadata = [sub]
        b = flatbuffers.Builder(0)
        b.Finish(md.Pack(b), metadata.MetadataPopulator.METADATA_FILE_IDENTIFIER)
        try:
            pop = metadata.MetadataPopulator.with_model_buffer(model)
            pop.load_metadata_buffer(b.Output())
            pop.load_associated_files([label_file, own_file])
            pop.populate()
            data = pop.get_model_buffer()
            del pop  # its temporary copy of the model goes now, not at interpreter exit
        except (ValueError, OSError) as exc:
            raise ExportError(f"{path.name}: writing the TFLite metadata failed: {exc}") from exc
    Path(out).write_bytes(bytes(data))
