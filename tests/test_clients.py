"""Exported artifacts in other clients: MediaPipe Tasks' ImageClassifier, a plain LiteRT loop and plain
onnxruntime, each reading output 0 as the class scores, against edgeflower's own runtime on the same pixels."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

from edgeflower.edge import Classifier
from edgeflower.edge.classifier import dequantize

LABELS = ["blue", "green", "red"]


def _test_pixels(synth_data, clf: Classifier, n: int = 12) -> list[np.ndarray]:
    """edgeflower's preprocessing of some dataset photos: the model's size, so no client resizes them again."""
    paths = sorted(p for c in LABELS for p in (synth_data / c).glob("*.jpg"))[::9][:n]
    return [clf.preprocess(p) for p in paths]


def _tolerance(clf: Classifier) -> float:
    """One quantization step of the class-score output for int8 artifacts (and a float rounding margin)."""
    out = clf.backend.output
    return out.scale * 1.0001 if out.quantized else 1e-4


def test_outputs_are_named_probs_first(tiny_export):
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    for name in ("model_float.tflite", "model_int8.tflite"):
        it = Interpreter(str(tiny_export / name))
        outs = it.get_output_details()
        assert [o["name"] for o in outs] == ["probs", "similarity"], name
        assert list(outs[0]["shape"]) == [1, 3] and list(outs[1]["shape"]) == [1, 3]  # one similarity per class
        assert it.get_input_details()[0]["name"] == "image"
        sig = it.get_signature_list()["serving_default"]
        assert sig["inputs"] == ["image"] and sorted(sig["outputs"]) == ["probs", "similarity"]
    for name in ("model.onnx", "model_int8.onnx"):
        s = ort.InferenceSession(str(tiny_export / name), providers=["CPUExecutionProvider"])
        assert [o.name for o in s.get_outputs()] == ["probs", "similarity"], name


@pytest.mark.parametrize("name", ["model_float.tflite", "model_int8.tflite"])
def test_tflite_carries_standard_metadata(tiny_export, tmp_path, name):
    from edgeflower.exporting.tflite_metadata import _writers

    _, metadata, _, _ = _writers()
    path = tiny_export / name
    shown = metadata.MetadataDisplayer.with_model_file(str(path))
    md = json.loads(shown.get_metadata_json())
    assert md["name"].startswith("edgeflower") and md["description"]
    assert md["min_parser_version"] == "1.0.0"
    sub = md["subgraph_metadata"][0]
    image = sub["input_tensor_metadata"][0]
    assert image["content"]["content_properties"]["color_space"] == "RGB"
    norm = image["process_units"][0]
    assert norm["options_type"] == "NormalizationOptions" and norm["options"] == {"mean": [0.0], "std": [1.0]}
    probs, sim = sub["output_tensor_metadata"]
    assert probs["name"] == "probs" and probs["associated_files"][0]["type"] == "TENSOR_AXIS_LABELS"
    assert shown.get_associated_file_buffer("labels.txt").decode().split() == LABELS
    assert sim["name"] == "similarity" and "similarity" in sim["description"].lower()
    own = json.loads(shown.get_associated_file_buffer("edgeflower.json"))
    assert own["labels"] == LABELS and own["unknown"]["similarity_threshold"] is not None
    assert md["associated_files"][0]["name"] == "edgeflower.json"
    # the runtime reads the embedded copy first: without the sidecar, and when the sidecar says otherwise
    lone = tmp_path / name
    shutil.copy(path, lone)
    clf = Classifier(lone)
    assert clf.labels == LABELS and clf.min_similarity == pytest.approx(own["unknown"]["similarity_threshold"])
    side = tmp_path / (name + ".json")
    side.write_text(json.dumps({**own, "labels": ["x", "y", "z"]}))
    assert Classifier(lone).labels == LABELS
    with zipfile.ZipFile(lone) as z:
        assert sorted(z.namelist()) == ["edgeflower.json", "labels.txt"]


def test_parser_version_follows_the_schema_history():
    import flatbuffers

    from edgeflower.exporting.tflite_metadata import _parser_version, _writers

    fb, metadata, _, _ = _writers()

    def version(**edit) -> str:
        md = fb.ModelMetadataT()
        sub = fb.SubGraphMetadataT()
        t = fb.TensorMetadataT()
        f = fb.AssociatedFileT()
        f.name, f.type = "a.txt", edit.get("file_type", fb.AssociatedFileType.TENSOR_AXIS_LABELS)
        f.version = edit.get("file_version")
        t.associatedFiles = [f]
        sub.outputTensorMetadata = [t]
        if edit.get("custom"):
            c = fb.CustomMetadataT()
            c.name = "x"
            sub.customMetadata = [c]
        md.subgraphMetadata = [sub]
        b = flatbuffers.Builder(0)
        b.Finish(md.Pack(b), metadata.MetadataPopulator.METADATA_FILE_IDENTIFIER)
        return _parser_version(bytes(b.Output()))

    assert version() == "1.0.0"
    assert version(file_type=fb.AssociatedFileType.VOCABULARY) == "1.0.1"
    assert version(file_version="2") == "1.4.1"
    assert version(custom=True) == "1.5.0"


@pytest.mark.parametrize("name", ["model_float.tflite", "model_int8.tflite"])
def test_mediapipe_image_classifier_gives_edgeflowers_answers(tiny_export, synth_data, name):
    import mediapipe as mp
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core import base_options

    clf = Classifier(tiny_export / name)
    tol = _tolerance(clf)
    opts = vision.ImageClassifierOptions(
        base_options=base_options.BaseOptions(model_asset_path=str(tiny_export / name)), max_results=-1)
    with vision.ImageClassifier.create_from_options(opts) as mp_clf:
        for px in _test_pixels(synth_data, clf):
            ours = clf.scores(px)[0][0]
            res = mp_clf.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(px)))
            head = res.classifications[0]
            got = {c.category_name: c.score for c in head.categories}
            assert set(got) == set(LABELS)
            assert head.categories[0].category_name == LABELS[int(ours.argmax())]
            assert max(abs(got[lab] - float(ours[i])) for i, lab in enumerate(LABELS)) <= tol


@pytest.mark.parametrize("name", ["model_float.tflite", "model_int8.tflite"])
def test_plain_litert_loop_reads_output_0(tiny_export, synth_data, name):
    from ai_edge_litert.interpreter import Interpreter

    clf = Classifier(tiny_export / name)
    it = Interpreter(str(tiny_export / name))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    scale, zero = out["quantization"]
    for px in _test_pixels(synth_data, clf):
        it.set_tensor(inp["index"], px[None].astype(inp["dtype"]))
        it.invoke()
        y = it.get_tensor(out["index"])[0].astype(np.float32)
        probs = (y - zero) * scale if scale else y
        ours = clf.scores(px)[0][0]
        assert int(probs.argmax()) == int(ours.argmax())
        assert np.abs(probs - ours).max() <= _tolerance(clf)


@pytest.mark.parametrize("name", ["model.onnx", "model_int8.onnx"])
def test_plain_onnxruntime_reads_output_0(tiny_export, synth_data, name):
    import onnxruntime as ort

    clf = Classifier(tiny_export / name)
    s = ort.InferenceSession(str(tiny_export / name), providers=["CPUExecutionProvider"])
    step = 1.0 / 256 if "int8" in name else 0.0  # uint8 activations of a 0-1 softmax: about 1/256 per step
    for px in _test_pixels(synth_data, clf):
        probs = s.run(None, {s.get_inputs()[0].name: px[None].astype(np.float32)})[0][0]
        ours = clf.scores(px)[0][0]
        assert int(probs.argmax()) == int(ours.argmax())
        assert np.abs(probs - ours).max() <= max(step * 1.01, 1e-4)


def test_old_artifacts_without_names_still_work():
    from edgeflower.edge.backends import TensorInfo, main_output, similarity_output

    probs = TensorInfo("StatefulPartitionedCall_1:0", (1, 5), np.dtype(np.uint8), 1 / 256, 0)
    sim = TensorInfo("StatefulPartitionedCall_1:1", (1, 1), np.dtype(np.uint8), 1 / 128, 0)
    assert main_output([sim, probs]) == 1 and similarity_output([sim, probs], 1) == 0
    named = [TensorInfo("similarity", (1, 1), np.dtype(np.float32)), TensorInfo("probs", (1, 2), np.dtype(np.float32))]
    assert main_output(named) == 1 and similarity_output(named, 1) == 0
    assert dequantize(np.array([[128]], np.uint8), sim)[0, 0] == pytest.approx(1.0)


def test_export_without_mediapipe_says_what_to_install(tiny_run, synth_data, synth_split, tmp_path, monkeypatch):
    import sys

    from edgeflower.errors import MissingDependencyError
    from edgeflower.exporting import convert
    from edgeflower.exporting.pipeline import ExportConfig, export

    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import mediapipe now raises ImportError

    def converted(*a, **k):
        raise AssertionError("the export converted a model before finding that MediaPipe is missing")

    monkeypatch.setattr(convert, "tflite_float", converted)
    out = tmp_path / "export"
    with pytest.raises(MissingDependencyError, match=r'pip install "edgeflower\[export\]"'):
        export(ExportConfig(target=str(tiny_run), out=str(out), data=str(synth_data), split=str(synth_split)))
    assert list(out.iterdir()) == []  # it stopped before converting anything


@pytest.mark.parametrize("size", [(500, 333), (640, 480), (320, 240), (40, 32)])
def test_the_resize_recipe_of_the_client_examples_gives_edgeflowers_pixels(size):
    """docs/clients.md's three lines (reduce by the whole factor, then Pillow's nearest) for an artifact whose
    metadata names the nearest resize: the pixels edgeflower trains, checks and classifies with."""
    from PIL import Image

    from edgeflower.edge.preprocess import preprocess

    img = Image.fromarray(np.random.default_rng(size[0]).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    side = 224 if size[0] > 100 else 16
    recipe = img.reduce(max(1, min(img.size) // side))
    recipe = np.asarray(recipe.resize((side, side), Image.NEAREST))
    np.testing.assert_array_equal(recipe, preprocess(img, side, "nearest"))
