"""The model registry builds the study's networks with the documented parameter counts."""

from __future__ import annotations

import numpy as np
import pytest

from edgeflower.errors import ModelError
from edgeflower.training.models import MODELS, count_params, get_spec


def test_cnn_has_the_study_parameter_counts():
    b = MODELS["cnn"].build(5)
    assert count_params(b.model) == {"total": 407_109, "trainable": 406_149, "non_trainable": 960}
    assert tuple(b.model.inputs[0].shape) == (None, 224, 224, 3)


def test_resnet50_head_has_210205_trainable_parameters():
    b = MODELS["resnet50"].build(5, input_size=32, weights=None)
    assert count_params(b.head)["trainable"] == 210_205
    assert count_params(b.model)["trainable"] == 210_205


def test_resnet50_da_has_l2_on_hidden_dense():
    b = MODELS["resnet50_da"].build(5, input_size=32, weights=None)
    dense = [layer for layer in b.head.layers if layer.name in ("fc1", "fc2")]
    assert all(layer.kernel_regularizer is not None for layer in dense)
    assert get_spec("resnet50_da").augment


def test_caffe_preprocessing_matches_keras_applications():
    import keras

    b = MODELS["vgg16"].build(3, input_size=32, weights=None)
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    pre = keras.Model(b.model.inputs, b.model.get_layer("preprocess").output)
    expected = keras.applications.vgg16.preprocess_input(x.copy())
    np.testing.assert_allclose(np.asarray(pre(x)), expected, atol=1e-3)


@pytest.mark.parametrize("name", ["mobilenet_v2", "inception_v3"])
def test_transfer_models_build_without_weights(name):
    size = 75 if name == "inception_v3" else 32
    b = MODELS[name].build(4, input_size=size, weights=None)
    x = np.zeros((1, size, size, 3), np.float32)
    assert np.asarray(b.model(x)).shape == (1, 4)
    # features and head share layers with the full model
    np.testing.assert_allclose(np.asarray(b.head(b.features(x))), np.asarray(b.model(x)), atol=1e-5)


def test_unknown_model_name():
    with pytest.raises(ModelError, match="valid: cnn, mobilenet_v2"):
        get_spec("alexnet")


def test_missing_weights_file_gives_a_hint(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match="KERAS_HOME|--weights none"):
        MODELS["mobilenet_v2"].build(5, input_size=32, weights=str(tmp_path / "missing.h5"))
