"""Export round trips on a tiny model: every format through the edge runtime, the gate, atomicity, bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from edgeflower.edge import Classifier, sidecar_path
from edgeflower.errors import AccuracyDropError, ExportError, ModelError
from edgeflower.exporting import convert
from edgeflower.exporting.pipeline import ExportConfig, export

from conftest import run_cli, slower_onnx

ARTIFACTS = ["model_float.tflite", "model_int8.tflite", "model.onnx", "model_int8.onnx"]


def test_every_artifact_is_written_and_described(tiny_export):
    rep = json.loads((tiny_export / "export_report.json").read_text())
    assert [a["name"] for a in rep["artifacts"]] == ARTIFACTS
    for a in rep["artifacts"]:
        p = tiny_export / a["name"]
        assert p.is_file() and a["size_bytes"] == p.stat().st_size
        meta = json.loads(sidecar_path(p).read_text())
        assert meta["labels"] == ["blue", "green", "red"]
        assert meta["input"]["size"] == [32, 32] and meta["preprocessing"]["resize"] == "nearest"  # the run's
        assert meta["test_accuracy"] == pytest.approx(a["accuracy"])
        assert 0.0 <= meta["confidence_threshold"] <= 1.0 and "unknown_threshold" not in meta
        assert {"accuracy", "drop_pts", "argmax_agreement", "per_class_delta_pts", "changed", "sha256",
                "passed"} <= set(a)
    assert (tiny_export / "export_report.md").read_text().count("| model") == 4
    # no temporary files left behind
    assert not [p for p in os.listdir(tiny_export) if p.startswith(".")]


def test_int8_tflite_takes_raw_uint8_pixels(tiny_export):
    meta = json.loads(sidecar_path(tiny_export / "model_int8.tflite").read_text())
    assert meta["input"]["dtype"] == "uint8" and meta["quantized"]
    assert meta["output"]["quantization"] is not None


def test_onnx_metadata_is_inside_the_file(tiny_export, tmp_path):
    import shutil

    import onnx

    for name in ("model.onnx", "model_int8.onnx"):
        m = onnx.load(str(tiny_export / name))
        props = {p.key: p.value for p in m.metadata_props}
        assert json.loads(props["edgeflower"])["labels"] == ["blue", "green", "red"]
        assert m.graph.input[0].name == "image"
        assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) == 17
        onnx.checker.check_model(m, full_check=True)
        # without the sidecar the runtime still finds the labels inside the file
        lone = tmp_path / name
        shutil.copy(tiny_export / name, lone)
        assert Classifier(lone).labels == ["blue", "green", "red"]
    qtypes = {n.op_type for n in onnx.load(str(tiny_export / "model_int8.onnx")).graph.node}
    assert "QuantizeLinear" in qtypes and "DequantizeLinear" in qtypes
    assert "DynamicQuantizeLinear" not in qtypes and "MatMulInteger" not in qtypes


def test_artifacts_match_keras(tiny_export, tiny_run, synth_data, synth_split):
    """Float artifacts agree with Keras on every test argmax; int8 within the gate."""
    import keras

    from edgeflower.data.arrays import load_split
    from edgeflower.data.split import load_manifest

    model = keras.models.load_model(tiny_run / "model.keras", compile=False)
    test = load_split(synth_data, load_manifest(synth_split), "test", 32)
    ref = np.asarray(model(test.x.astype("float32")))
    for name in ARTIFACTS:
        probs = Classifier(tiny_export / name).predict_batch(test.x)
        if "int8" in name:
            assert (probs.argmax(1) == ref.argmax(1)).mean() >= 0.8
            assert np.abs(probs - ref).max() < 0.25
        else:
            np.testing.assert_array_equal(probs.argmax(1), ref.argmax(1))
            np.testing.assert_allclose(probs, ref, atol=1e-4)


def test_gate_fails_with_broken_calibration(tiny_run, synth_data, synth_split, tmp_path, monkeypatch):
    from edgeflower.exporting import pipeline

    # calibrating on black images squeezes every activation range to ~0: real photos then saturate
    monkeypatch.setattr(pipeline, "stratified_sample", lambda a, n, seed: np.zeros((8, 32, 32, 3), np.uint8))
    out = tmp_path / "bad"
    with pytest.raises(AccuracyDropError, match=r"model_int8\.tflite: accuracy drop .* validation photos, clearly "
                                                r"over 1 \(less one standard error") as ei:
        export(ExportConfig(target=str(tiny_run), int8=True, onnx=False, data=str(synth_data), split=str(synth_split),
                            out=str(out)))
    f = ei.value.failures[0]
    assert f["drop_pts"] > 1.0 and f["accuracy"] < f["reference_accuracy"]
    assert (out / "model_int8.FAILED.tflite").is_file() and not (out / "model_int8.tflite").exists()
    assert (out / "model_float.tflite").is_file()
    rep = json.loads((out / "export_report.json").read_text())
    assert rep["passed"] is False and [a["passed"] for a in rep["artifacts"]] == [True, False]


def test_auto_tries_remedies_and_reports_them(tiny_run, synth_data, synth_split, tmp_path, monkeypatch):
    from edgeflower.exporting import pipeline

    real = pipeline.stratified_sample
    # the default calibration is broken; the remedies draw other images and succeed
    calls = {"n": 0}

    def sample(a, n, seed):
        calls["n"] += 1
        return np.zeros((8, 32, 32, 3), np.uint8) if calls["n"] == 1 else real(a, n, seed)

    monkeypatch.setattr(pipeline, "stratified_sample", sample)
    rep = export(ExportConfig(target=str(tiny_run), int8=True, onnx=False, data=str(synth_data),
                              split=str(synth_split), out=str(tmp_path / "auto"), auto=True))
    a = rep["artifacts"][1]
    assert a["passed"] and a["attempts"][0]["passed"] is False and a["attempts"][-1]["passed"] is True
    assert a["options"]["remedy"] != "default"
    assert a["remedy"] == a["options"]["remedy"] == a["attempts"][-1]["remedy"]
    # the remedy and the gate judged the same photos: the validation split, the same figures
    assert a["gate"]["photos"] == rep["validation_images"] and a["gate"]["passed"]
    assert a["attempts"][-1]["val_drop_pts"] == a["gate"]["drop_pts"]
    assert f"yes ({a['remedy']})" in (tmp_path / "auto" / "export_report.md").read_text()


def test_auto_exits_0_and_names_the_remedy(tiny_run, synth_data, synth_split, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from edgeflower.cli import main
    from edgeflower.exporting import pipeline

    real = pipeline.stratified_sample
    calls = {"n": 0}

    def sample(a, n, seed):  # the default calibration is broken, a remedy's sample is not
        calls["n"] += 1
        return np.zeros((8, 32, 32, 3), np.uint8) if calls["n"] == 1 else real(a, n, seed)

    monkeypatch.setattr(pipeline, "stratified_sample", sample)
    r = CliRunner().invoke(main, ["export", str(tiny_run), "--formats", "tflite_int8", "--unknown", "confidence",
                                  "--auto", "--data", str(synth_data), "--split", str(synth_split),
                                  "--out", str(tmp_path / "cli")])
    assert r.exit_code == 0, r.output
    assert "model_int8.tflite: passed with the remedy" in r.output


def test_failed_export_keeps_the_previous_good_files(tiny_export, tiny_run, synth_data, synth_split, tmp_path,
                                                     monkeypatch):
    import shutil

    run = tmp_path / "run"  # a copy: the session's fixture stays as it was
    shutil.copytree(tiny_run, run)
    before = {n: (run / "export" / n).read_bytes() for n in ARTIFACTS}

    def boom(*a, **k):
        raise ExportError("injected failure")

    monkeypatch.setattr(convert, "onnx_int8", boom)
    with pytest.raises(ExportError, match="injected"):
        export(ExportConfig(target=str(run), int8=True, data=str(synth_data), split=str(synth_split),
                            max_drop=100.0))
    # the artifact that crashed keeps its previous file; the ones finished before the crash are complete new ones
    assert (run / "export" / "model_int8.onnx").read_bytes() == before["model_int8.onnx"]
    for n in ARTIFACTS[:3]:
        meta = json.loads(sidecar_path(run / "export" / n).read_text())
        assert meta["sha256"] == hashlib.sha256((run / "export" / n).read_bytes()).hexdigest()
        assert Classifier(run / "export" / n).labels == ["blue", "green", "red"]
    assert not [p for p in os.listdir(run / "export") if p.startswith(".")]

@pytest.mark.slow
def test_resnet50_exports_on_the_same_path(synth_data, synth_split, tmp_path):
    from edgeflower.training.loop import TrainConfig, train

    r = train(TrainConfig(model="resnet50", weights="none", input_size=32, data=str(synth_data),
                          split=str(synth_split), out=str(tmp_path / "r50"), epochs=1, augment=False, verbose=0))
    rep = export(ExportConfig(target=str(r.run_dir), int8=True, onnx=True, calibration=10, data=str(synth_data),
                              split=str(synth_split), max_drop=100.0))
    assert [a["name"] for a in rep["artifacts"]] == ARTIFACTS


# ---------------------------------------------------------------- bad input
def test_missing_model(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        export(ExportConfig(target=str(tmp_path / "nope.keras")))


def test_corrupt_model_file(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"PK\x03\x04 definitely not a keras zip")
    with pytest.raises(ModelError, match="cannot load"):
        export(ExportConfig(target=str(bad), out=str(tmp_path / "o")))


def test_model_without_image_input(tmp_path):
    import keras

    inp = keras.Input((10,))
    m = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(inp))
    m.save(tmp_path / "dense.keras")
    with pytest.raises(ExportError, match=r"expected a square RGB image input"):
        export(ExportConfig(target=str(tmp_path / "dense.keras"), out=str(tmp_path / "o")))


def test_unwritable_output_dir(tiny_run, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(ExportError, match="cannot create the output directory"):
        export(ExportConfig(target=str(tiny_run), out=str(f / "sub")))


def test_empty_calibration_set():
    with pytest.raises(ExportError, match="calibration set is empty"):
        convert.tflite_int8(None, np.zeros((0, 8, 8, 3), np.uint8))


def test_custom_layer_that_cannot_be_converted(tmp_path):
    import keras
    import tensorflow as tf

    class PyLayer(keras.layers.Layer):
        def call(self, x):
            y = tf.numpy_function(lambda a: a, [x], tf.float32)
            y.set_shape(x.shape)
            return y

        def compute_output_shape(self, shape):
            return shape

    inp = keras.Input((8, 8, 3))
    y = keras.layers.GlobalAveragePooling2D()(PyLayer()(inp))
    m = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(y))
    with pytest.raises(ExportError, match="conversion failed|cannot trace"):
        convert.tflite_float(m)


def test_cli_export_reports_failure_with_exit_code(tiny_run, synth_data, synth_split, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from edgeflower.cli import main
    from edgeflower.exporting import pipeline

    monkeypatch.setattr(pipeline, "stratified_sample", lambda a, n, seed: np.zeros((8, 32, 32, 3), np.uint8))
    r = CliRunner().invoke(main, ["export", str(tiny_run), "--int8", "--no-onnx", "--data", str(synth_data),
                                  "--split", str(synth_split), "--out", str(tmp_path / "cli")])
    assert r.exit_code == 1, r.output
    assert "| model_float.tflite" in r.output and "accuracy gate failed" in r.output
    assert "Traceback" not in r.output

@pytest.mark.parametrize("n", [1, 4, 8, 24])
def test_onnx_calibration_with_any_number_of_images(tiny_export, tmp_path, n):
    """onnxruntime's calibrator fails when the batch count is a multiple of its merge interval; never here."""
    calib = np.random.default_rng(n).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    out = tmp_path / f"q{n}.onnx"
    convert.onnx_int8(tiny_export / "model.onnx", out, calib)
    assert Classifier(out).predict_batch(calib[:1]).shape == (1, 3)


def test_int8_onnx_computes_the_same_on_every_cpu(tiny_export, synth_data):
    """The edge runtime's onnxruntime session (fused int8 kernels) must compute what the QDQ graph says, as ARM
    does; the graph with every optimization off is that reference. Plain onnxruntime on an x86 CPU without VNNI
    saturates int16 pair sums (VPMADDUBSW): this model was off by dozens of output steps there."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from edgeflower.edge.loader import load_backend
    from edgeflower.edge.preprocess import preprocess

    path = tiny_export / "model_int8.onnx"
    x = np.stack([preprocess(Image.open(p).convert("RGB"), 32) for c in ("red", "green", "blue")
                  for p in sorted((synth_data / c).iterdir())[:10]]).astype(np.float32)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    exact = s.run(None, {s.get_inputs()[0].name: x})
    device = load_backend(path).run_all(x)
    g = onnx.load(str(path)).graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for k, out in enumerate(g.output):
        dq = producer[out.name]
        assert dq.op_type == "DequantizeLinear"  # a quantized output, so its step is the scale
        step = float(inits[dq.input[1]])
        diff = np.abs(exact[k] - device[k]).max()
        assert diff <= step * 1.001, f"{out.name}: fused kernels differ from the QDQ graph by {diff / step:.1f} steps"


# ---------------------------------------------------------------- the table of formats
def test_plan_puts_dependencies_first_and_builds_them_only_as_intermediates():
    from edgeflower.exporting.formats import FORMATS, Format, parse_formats, plan

    assert [(s.fmt, req) for s, req in plan([Format.ONNX_INT8])] == [(Format.ONNX_FLOAT, False),
                                                                     (Format.ONNX_INT8, True)]
    assert [(s.fmt, req) for s, req in plan([Format.ONNX_INT8, Format.TFLITE_FLOAT, Format.ONNX_FLOAT])] == [
        (Format.TFLITE_FLOAT, True), (Format.ONNX_FLOAT, True), (Format.ONNX_INT8, True)]
    assert parse_formats(" tflite_fp16,onnx_float ") == [Format.TFLITE_FP16, Format.ONNX_FLOAT]
    with pytest.raises(ExportError, match=r"unknown export format 'tflite_int4'.*tflite_fp16"):
        parse_formats("tflite_int4")
    with pytest.raises(ExportError, match="empty"):
        parse_formats(" , ")
    # every entry is complete: its own file names, a build, and dependencies that are in the table
    names = [n for s in FORMATS.values() for n in (s.filename, s.failed_filename)]
    assert len(set(names)) == len(names)
    assert all(callable(s.build) and set(s.needs) <= set(FORMATS) for s in FORMATS.values())


def test_export_help_names_every_format():
    from edgeflower.exporting.formats import FORMATS

    out = run_cli("export", "--help")
    assert out.returncode == 0
    assert all(f.value in " ".join(out.stdout.split()) for f in FORMATS), out.stdout


def test_formats_choose_the_artifacts_and_fp16_passes_the_same_gate(tiny_export, tiny_run, synth_data, synth_split,
                                                                  tmp_path):
    out = tmp_path / "some"
    rep = export(ExportConfig(target=str(tiny_run), formats=("onnx_int8", "tflite_fp16"), calibration=30,
                              data=str(synth_data), split=str(synth_split), out=str(out), max_drop=100.0))
    assert [a["name"] for a in rep["artifacts"]] == ["model_fp16.tflite", "model_int8.onnx"]
    # the float ONNX that the int8 ONNX is quantized from is an intermediate: not checked, not written
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith("export_report")) == [
        "model_fp16.tflite", "model_fp16.tflite.json", "model_int8.onnx", "model_int8.onnx.json"]
    fp16 = rep["artifacts"][0]
    meta = json.loads(sidecar_path(out / "model_fp16.tflite").read_text())
    assert meta["format"] == "tflite_fp16" and meta["quantized"] is False and meta["input"]["dtype"] == "float32"
    assert fp16["options"] == {"weights": "float16"} and fp16["passed"]
    assert fp16["argmax_agreement"] >= 0.9 and abs(fp16["drop_pts"]) <= 5
    # float16 weights: about half the float32 file (the metadata and the similarity bank's float32 copy aside)
    full = (tiny_export / "model_float.tflite").stat().st_size
    assert fp16["size_bytes"] < 0.75 * full, (fp16["size_bytes"], full)
    probs = Classifier(out / "model_fp16.tflite").predict_batch(
        np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    assert probs.shape == (4, 3) and np.allclose(probs.sum(1), 1, atol=1e-3)


def _tflite_dynamic(ctx, cand, path):
    """docs/export.md#adding-a-format's example build: int8 weights, float activations."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(ctx.model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    path.write_bytes(convert.name_tensors(conv.convert(), len(ctx.model.outputs)))
    return {"weights": "int8", "activations": "float32"}


def test_a_format_is_one_table_entry_and_its_build(tiny_run, synth_data, synth_split, tmp_path, monkeypatch):
    """docs/export.md's example: a table entry and a build; evaluation, gate, unknown rule, metadata, the atomic
    write and the report row come from the shared steps."""
    from edgeflower.exporting import formats
    from edgeflower.exporting.formats import FORMATS, Format, FormatSpec

    spec = FormatSpec(Format.TFLITE_FP16, "model_dynamic.tflite", "model_dynamic.FAILED.tflite", "litert", False,
                      _tflite_dynamic, formats._write_file, exact=False)
    monkeypatch.setitem(FORMATS, Format.TFLITE_FP16, spec)
    out = tmp_path / "dyn"
    rep = export(ExportConfig(target=str(tiny_run), formats=("tflite_fp16",), data=str(synth_data),
                              split=str(synth_split), out=str(out), max_drop=100.0))
    (art,) = rep["artifacts"]
    assert art["name"] == "model_dynamic.tflite" and art["passed"] and art["options"]["weights"] == "int8"
    meta = json.loads(sidecar_path(out / "model_dynamic.tflite").read_text())
    assert meta["passed_gate"] and meta["input"]["dtype"] == "float32" and "similarity_threshold" in meta["unknown"]
    assert meta["sha256"] == hashlib.sha256((out / "model_dynamic.tflite").read_bytes()).hexdigest()
    assert "| model_dynamic.tflite | tflite_fp16 |" in (out / "export_report.md").read_text()
    assert Classifier(out / "model_dynamic.tflite").labels == ["blue", "green", "red"]


def test_a_format_with_its_own_evaluation_goes_through_the_same_gate(tiny_run, synth_data, synth_split, tmp_path,
                                                                     monkeypatch):
    """A format this machine cannot run (as the AI Camera's) supplies its evaluation; its own problems fail it
    through the shared steps: the FAILED name, the reason in the report, the exit status."""
    from edgeflower.exporting import formats
    from edgeflower.exporting.formats import FORMATS, Evaluation, Format, FormatSpec

    def simulated(ctx, path):
        ev = formats.evaluate_on_device(ctx, path)  # stands in for a simulation of the device
        return Evaluation(ev.probs, ev.val_probs, ev.sims, ev.val_sims, {**ev.tensors, "simulated": True},
                          ev.similarity_output, problems=["does not fit the chip (9.00 MB of 8 MB)"],
                          unknown={"computed_on": "the device"})

    base = FORMATS[Format.TFLITE_FLOAT]
    monkeypatch.setitem(FORMATS, Format.TFLITE_FLOAT, FormatSpec(
        Format.TFLITE_FLOAT, base.filename, base.failed_filename, "litert", False, base.build, base.write,
        evaluate=simulated))
    out = tmp_path / "sim"
    with pytest.raises(AccuracyDropError) as exc:
        export(ExportConfig(target=str(tiny_run), formats=("tflite_float",), data=str(synth_data),
                            split=str(synth_split), out=str(out), max_drop=100.0))
    (art,) = exc.value.report["artifacts"]
    assert not art["passed"] and art["reason"] == "does not fit the chip (9.00 MB of 8 MB)"
    assert art["unknown"]["computed_on"] == "the device"
    assert (out / "model_float.FAILED.tflite").is_file() and not (out / "model_float.tflite").exists()
    meta = json.loads(sidecar_path(out / "model_float.FAILED.tflite").read_text())
    assert meta["simulated"] and not meta["passed_gate"]


def test_each_int8_artifact_is_timed_against_its_float_sibling(tiny_export):
    rep = json.loads((tiny_export / "export_report.json").read_text())
    by = {a["name"]: a for a in rep["artifacts"]}
    for int8, sibling in (("model_int8.tflite", "model_float.tflite"), ("model_int8.onnx", "model.onnx")):
        sp = by[int8]["speed"]
        assert sp["float_sibling"] == sibling and sp["threads"] == 1 and sp["p50_ms"] > 0 and sp["float_p50_ms"] > 0
        assert sp["speedup_vs_float"] == pytest.approx(sp["float_p50_ms"] / sp["p50_ms"], rel=0.5)
    assert by["model_float.tflite"]["speed"] == {} and by["model.onnx"]["speed"] == {}
    md = (tiny_export / "export_report.md").read_text()
    assert "| x float |" in md and f"| {by['model_int8.tflite']['speed']['speedup_vs_float']:.2f}x |" in md


def test_an_int8_artifact_built_slower_than_float_is_warned_about(tiny_export, tmp_path):
    """An int8 ONNX that does more work than its float sibling (built so, not a stubbed timing): the export's timing
    finds it slower, and the result, the progress and the Markdown report carry bench's warning."""
    import shutil

    from edgeflower.edge import Classifier
    from edgeflower.exporting.pipeline import ArtifactResult, _speeds
    from edgeflower.exporting.report import render_table

    rep = json.loads((tiny_export / "export_report.json").read_text())
    for name in ("model_float.tflite", "model_int8.tflite", "model.onnx"):
        shutil.copy(tiny_export / name, tmp_path / name)
    slower_onnx(tiny_export / "model_int8.onnx", tmp_path / "model_int8.onnx")
    photo = np.full((32, 32, 3), 90, np.uint8)
    np.testing.assert_array_equal(Classifier(tmp_path / "model_int8.onnx").classify(photo).probs,
                                  Classifier(tiny_export / "model_int8.onnx").classify(photo).probs)
    results = [ArtifactResult(**{**a, "speed": {}, "path": str(tmp_path / a["name"])}) for a in rep["artifacts"]]
    said = []
    _speeds(results, said.append)
    by = {r.name: r for r in results}
    slow = by["model_int8.onnx"].speed
    assert slow["speedup_vs_float"] < 0.5, slow  # far below the 1.3x the warning needs
    warning = slow["warning"]
    assert warning.startswith(f"model_int8.onnx is {slow['speedup_vs_float']:.2f}x as fast as model.onnx at 1 thread")
    assert "size, not speed" in warning and f"warning: {warning}" in said
    md = render_table({**rep, "artifacts": [dataclasses.asdict(r) for r in results]})
    assert f"warning: {warning}" in md and f"| {slow['speedup_vs_float']:.2f}x |" in md


def test_cli_rejects_an_unknown_format(tiny_run, tmp_path):
    out = run_cli("export", tiny_run, "--formats", "tflite_float,coreml", "--out", tmp_path / "x")
    assert out.returncode != 0 and "unknown export format 'coreml'" in out.stderr
    assert not (tmp_path / "x").exists() or not list((tmp_path / "x").iterdir())


# ---------------------------------------------------------------- accuracy-controlled int8
def _outlier_model(path):
    """A colour classifier that is right on the synthetic photos in float and useless in full int8: the layer
    'wide' carries one channel 10^4 times larger than the others, so its per-tensor int8 scale rounds the colour
    channels to zero."""
    import keras

    inp = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    c1 = keras.layers.Conv2D(4, 1, activation="relu", name="c1")
    wide = keras.layers.Conv2D(4, 1, activation="relu", name="wide")
    c3 = keras.layers.Conv2D(3, 1, activation="relu", name="c3")
    head = keras.layers.Dense(3, activation="softmax", name="probs")
    out = head(keras.layers.GlobalAveragePooling2D(name="pool")(c3(wide(c1(x)))))
    model = keras.Model(inp, out)
    w1 = np.zeros((1, 1, 3, 4), np.float32)
    w1[0, 0, :, 0] = 1.0  # brightness
    w1[0, 0, [0, 1, 2], [1, 2, 3]] = 1.0  # R, G, B
    c1.set_weights([w1, np.zeros(4, np.float32)])
    w2 = np.eye(4, dtype=np.float32)[None, None]
    w2[0, 0, 0, 0] = 1e4  # the outlier channel
    wide.set_weights([w2, np.zeros(4, np.float32)])
    w3 = np.zeros((1, 1, 4, 3), np.float32)
    w3[0, 0, [1, 2, 3], [0, 1, 2]] = 1.0
    c3.set_weights([w3, np.zeros(3, np.float32)])
    wh = np.zeros((3, 3), np.float32)
    wh[[2, 1, 0], [0, 1, 2]] = 20.0  # R -> red (class 2), G -> green (1), B -> blue (0)
    head.set_weights([wh, np.zeros(3, np.float32)])
    model.save(path)
    return path


def test_accuracy_controlled_int8_returns_the_hurting_layer_to_float(synth_data, synth_split, tmp_path):
    model = _outlier_model(tmp_path / "outlier.keras")
    common = dict(target=str(model), formats=("tflite_int8",), unknown="confidence", calibration=30,
                  data=str(synth_data), split=str(synth_split))
    with pytest.raises(AccuracyDropError):  # full int8 fails the gate by far
        export(ExportConfig(**common, out=str(tmp_path / "plain")))
    plain = json.loads((tmp_path / "plain" / "export_report.json").read_text())["artifacts"][0]
    assert plain["reference_accuracy"] > 0.9 and plain["drop_pts"] > 30
    rep = export(ExportConfig(**common, out=str(tmp_path / "mixed"), mixed_precision=True))
    a = rep["artifacts"][0]
    assert a["passed"] and a["drop_pts"] <= 1.0
    opts = a["options"]
    assert opts["remedy"] == "layers in float (accuracy-controlled)" and opts["passed_on_val"]
    assert 1 <= opts["float_layers"] <= 3 and any("wide" in n for n in opts["float_nodes"]), opts["float_nodes"]
    assert "wide" in [s["layer"] for s in opts["steps"]]  # the report names the layer as Keras does
    assert [s["float_layers"] for s in opts["steps"]] == list(range(opts["float_layers"] + 1))
    assert opts["steps"][0]["val_drop_pts"] > 30 and opts["steps"][-1]["val_drop_pts"] <= 1.0
    assert all(s["p50_ms_1_thread"] > 0 for s in opts["steps"])
    md = (tmp_path / "mixed" / "export_report.md").read_text()
    assert "float layer 1" in md and "wide" in md
    # the device runs it like any int8 artifact: integer input and output, of the type asked for (uint8 here)
    clf = Classifier(tmp_path / "mixed" / "model_int8.tflite")
    assert clf.backend.input.quantized and clf.backend.output.quantized
    meta = json.loads(sidecar_path(tmp_path / "mixed" / "model_int8.tflite").read_text())
    assert meta["input"]["dtype"] == "uint8", meta["input"]


def test_accuracy_controlled_int8_onnx_keeps_the_hurting_node_in_float(synth_data, synth_split, tmp_path):
    """The same remedy for int8 ONNX (onnxruntime's nodes_to_exclude on one calibration): the 'wide' layer's
    per-tensor uint8 activations lose the colour channels; keeping it in float brings the model back."""
    import onnx

    model = _outlier_model(tmp_path / "outlier.keras")
    common = dict(target=str(model), formats=("onnx_int8",), unknown="confidence", calibration=30,
                  data=str(synth_data), split=str(synth_split))
    with pytest.raises(AccuracyDropError):
        export(ExportConfig(**common, out=str(tmp_path / "plain")))
    plain = json.loads((tmp_path / "plain" / "export_report.json").read_text())["artifacts"][0]
    assert plain["reference_accuracy"] > 0.9 and plain["drop_pts"] > 30, plain["drop_pts"]
    rep = export(ExportConfig(**common, out=str(tmp_path / "mixed"), mixed_precision=True))
    a = rep["artifacts"][0]
    assert a["passed"] and a["drop_pts"] <= 1.0
    opts = a["options"]
    assert opts["remedy"] == "layers in float (accuracy-controlled)" and opts["passed_on_val"]
    assert 1 <= opts["float_layers"] <= 3, opts["float_nodes"]
    assert "wide" in [s["layer"] for s in opts["steps"]], opts["steps"]  # named as the Keras layer
    assert [s["float_layers"] for s in opts["steps"]] == list(range(opts["float_layers"] + 1))
    assert opts["steps"][0]["val_drop_pts"] > 30 and opts["steps"][-1]["val_drop_pts"] <= 1.0
    assert "wide" in (tmp_path / "mixed" / "export_report.md").read_text()
    # the nodes named in the report are the ones without QDQ pairs in the artifact; the others are quantized
    graph = onnx.load(str(tmp_path / "mixed" / "model_int8.onnx")).graph
    deq_out = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = {n.name: all(i in deq_out for i in n.input[:2]) for n in graph.node if n.op_type == "Conv"}
    assert convs and all(not convs[f] for f in opts["float_nodes"] if f in convs), convs
    assert any(convs.values()), convs  # not everything went back to float


def test_the_report_says_when_the_background_spends_the_whole_unknown_budget(tiny_export):
    """A threshold at NEVER_KEPT means no similarity rule at all: said in words, not printed as -2.0000."""
    from edgeflower.exporting.report import render_table
    from edgeflower.exporting.unknown import NEVER_KEPT

    rep = json.loads((tiny_export / "export_report.json").read_text())
    rep["artifacts"][1]["unknown"]["similarity_threshold"] = NEVER_KEPT
    line = next(ln for ln in render_table(rep).splitlines() if ln.startswith("- unknown, model_int8.tflite"))
    assert "no similarity threshold" in line and "-2.0000" not in line


def test_a_run_from_before_the_resize_choice_exports_with_its_bilinear_pixels(tiny_run, synth_data, synth_split,
                                                                               tmp_path, monkeypatch):
    """A run whose config names no resize was trained on bilinear pixels: export reads its photos that way and says
    so in the metadata, so the device resizes as training did."""
    import shutil

    from edgeflower.exporting import pipeline

    old = tmp_path / "old"
    shutil.copytree(tiny_run, old, ignore=shutil.ignore_patterns("export"))
    cfg = json.loads((old / "config.json").read_text())
    assert cfg.pop("resize") == "nearest"
    (old / "config.json").write_text(json.dumps(cfg))
    seen = []
    real = pipeline.load_split

    def load_split(*args, **kwargs):
        seen.append(kwargs.get("resize"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "load_split", load_split)
    export(ExportConfig(target=str(old), formats=("tflite_float",), data=str(synth_data), split=str(synth_split),
                        max_drop=100.0))
    assert seen and set(seen) == {"bilinear"}
    art = old / "export" / "model_float.tflite"
    assert json.loads(sidecar_path(art).read_text())["preprocessing"]["resize"] == "bilinear"
    assert Classifier(art).resize == "bilinear"
