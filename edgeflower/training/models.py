"""The model registry: the study's hand-crafted CNN and keras.applications transfer models.

Every model takes raw RGB pixels 0-255 (float32, NHWC) and does its own scaling inside the graph, so
exported artifacts need no preprocessing beyond the shared resize. Transfer models are built in two
parts that share layers: ``features`` (input -> backbone -> global pooling) and ``head`` (features ->
softmax); training the head on features computed once is what makes transfer learning practical on a CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from edgeflower.errors import ModelError
from edgeflower.util.deps import require


@dataclass
class Built:
    model: Any  # full Keras model: raw pixels -> probabilities
    features: Any | None = None  # raw pixels -> pooled backbone features (transfer models)
    head: Any | None = None  # pooled features -> probabilities (shares layers with ``model``)
    backbone: Any | None = None  # the keras.applications model inside ``features``


@dataclass(frozen=True)
class ModelSpec:
    name: str
    build: Callable[..., Built]
    input_size: int = 224
    epochs: int = 20
    augment: bool = False
    label_smoothing: float = 0.0
    transfer: bool = True
    description: str = ""


def _keras():
    require("tensorflow", "training")
    import keras

    return keras


def build_cnn(num_classes: int, input_size: int = 224, weights: str | None = None) -> Built:
    """The study's hand-crafted CNN (407,109 parameters at 5 classes)."""
    keras = _keras()
    from keras import layers, regularizers

    inp = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inp)
    for i, filters in enumerate((32, 64, 128, 256)):
        x = layers.Conv2D(filters, 3, padding="same", kernel_regularizer=regularizers.l2(1e-3),
                          name=f"conv{i + 1}")(x)
        # momentum 0.9, not Keras's 0.99: at Adam 1e-3 the weights move so fast in the first epochs that 0.99's
        # moving statistics lag far behind and every validation image gets the same class (measured: val
        # accuracy stuck at the majority share for 4+ epochs, so early stopping kept epoch 1). Parameter
        # counts are unchanged.
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i + 1}")(x)
        x = layers.ReLU(name=f"relu{i + 1}")(x)
        if i < 3:
            x = layers.MaxPooling2D(3, strides=3, padding="same", name=f"pool{i + 1}")(x)
        else:
            x = layers.GlobalMaxPooling2D(name="gmp")(x)
        if i >= 1:
            x = layers.Dropout(0.3, name=f"drop{i + 1}")(x)
    x = layers.Dense(64, activation="relu", name="fc")(x)
    x = layers.Dropout(0.1, name="drop_fc")(x)
    out = layers.Dense(num_classes, activation="softmax", name="probs")(x)
    return Built(keras.Model(inp, out, name="cnn"))


def _scale_tf(keras, x):
    """keras.applications 'tf' mode: [0, 255] -> [-1, 1]."""
    return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(x)


def _scale_caffe(keras, x):
    """keras.applications 'caffe' mode (RGB->BGR, minus the ImageNet mean) as a frozen 1x1 convolution.

    Built-in layers only, so the saved model loads anywhere without edgeflower's custom objects and
    converts to TFLite/ONNX as a plain convolution.
    """
    import numpy as np

    conv = keras.layers.Conv2D(3, 1, name="preprocess", trainable=False)
    y = conv(x)
    kernel = np.zeros((1, 1, 3, 3), dtype="float32")
    for out_c, in_c in enumerate((2, 1, 0)):
        kernel[0, 0, in_c, out_c] = 1.0
    conv.set_weights([kernel, -np.array([103.939, 116.779, 123.68], dtype="float32")])
    return y


def _applications(app: str) -> Callable[..., Any]:
    """A keras.applications backbone without its top, with Keras's own ImageNet weight download and cache."""
    def make(keras, input_size: int, weights: str | None):
        ctor = getattr(keras.applications, app)
        try:
            return ctor(include_top=False, weights=weights, input_shape=(input_size, input_size, 3))
        except Exception as exc:  # network failures, bad cache files
            raise ModelError(_weights_hint(app, weights, exc)) from exc

    return make


def _lite(variant: str) -> Callable[..., Any]:
    """An EfficientNet-Lite backbone; ImageNet weights from the installed package (edgeflower[lite]) or a .pth."""
    def make(keras, input_size: int, weights: str | None):
        from edgeflower.training import efficientnet_lite

        return efficientnet_lite.backbone(variant, input_size, weights)

    return make


def _transfer(make_base: Callable[..., Any], scale: Callable, head: Callable, name: str) -> Callable[..., Built]:
    def build(num_classes: int, input_size: int = 224, weights: str | None = "imagenet") -> Built:
        keras = _keras()
        from keras import layers

        base = make_base(keras, input_size, weights)
        base.trainable = False
        inp = keras.Input((input_size, input_size, 3), name="image")
        x = scale(keras, inp)
        x = base(x, training=False)  # BatchNorm stays in inference mode, also when fine-tuning
        feats = layers.GlobalAveragePooling2D(name="gap")(x)
        head_layers = head(layers, num_classes)
        f_in = keras.Input((int(feats.shape[-1]),), name="features")
        h = f_in
        y = feats
        for layer in head_layers:
            h = layer(h)
            y = layer(y)
        return Built(
            model=keras.Model(inp, y, name=name),
            features=keras.Model(inp, feats, name=f"{name}_features"),
            head=keras.Model(f_in, h, name=f"{name}_head"),
            backbone=base,
        )

    return build


def _weights_hint(app: str, weights: Any, exc: Exception) -> str:
    home = os.environ.get("KERAS_HOME", "~/.keras")
    return (f"cannot load {app} weights={weights!r}: {str(exc).splitlines()[0]}. Keras downloads ImageNet weights "
            f"into {home}/models/ on first use; offline, copy the .h5 file there (or set KERAS_HOME to a folder "
            "whose models/ holds it), or use --weights none")


def _scale_lite(keras, x):
    """EfficientNet-Lite's pixel scaling, (x - 127) / 128."""
    from edgeflower.training.efficientnet_lite import scale_layer

    return scale_layer(keras)(x)


def _head_lite(layers, n):
    return [layers.Dense(1024, activation="relu", name="fc"), layers.Dropout(0.3, name="drop"),
            layers.Dense(n, activation="softmax", name="probs")]


def _head_mobilenet(layers, n):
    return [layers.Dense(1024, activation="relu", name="fc"), layers.Dense(n, activation="softmax", name="probs")]


def _head_study(l2: float | None = None):
    def head(layers, n):
        from keras import regularizers

        reg = regularizers.l2(l2) if l2 else None
        return [
            layers.Dense(100, activation="relu", kernel_regularizer=reg, name="fc1"),
            layers.Dropout(0.5, name="drop1"),
            layers.Dense(50, activation="relu", kernel_regularizer=reg, name="fc2"),
            layers.Dropout(0.5, name="drop2"),
            layers.Dense(n, activation="softmax", name="probs"),
        ]

    return head


# The default recipe of every transfer model: augmentation, label smoothing 0.1, up to 40 epochs with early stopping
# (make main's; chosen on the validation split in docs/studies/training-recipe.md). The study's recipe is
# --no-augment --label-smoothing 0 --epochs 20.
RECIPE = {"augment": True, "label_smoothing": 0.1, "epochs": 40}


def _spec(name: str, make_base: Callable[..., Any], scale: Callable, head: Callable, **kw) -> ModelSpec:
    return ModelSpec(name, _transfer(make_base, scale, head, name), **{**RECIPE, **kw})


MODELS: dict[str, ModelSpec] = {
    "cnn": ModelSpec("cnn", build_cnn, epochs=30, transfer=False,
                     description="the study's hand-crafted 4-block CNN (407,109 parameters)"),
    "mobilenet_v2": _spec("mobilenet_v2", _applications("MobileNetV2"), _scale_tf, _head_mobilenet,
                          description="frozen ImageNet MobileNetV2 + GAP + Dense 1024 + softmax"),
    "resnet50": _spec("resnet50", _applications("ResNet50"), _scale_caffe, _head_study(),
                      description="frozen ImageNet ResNet50 + GAP + 100/50 Dense head with dropout"),
    "resnet50_da": _spec("resnet50_da", _applications("ResNet50"), _scale_caffe, _head_study(0.01), augment=True,
                         description="resnet50 with L2 0.01 on the head and augmentation"),
    "inception_v3": _spec("inception_v3", _applications("InceptionV3"), _scale_tf, _head_study(), input_size=299,
                          description="frozen ImageNet InceptionV3 + the study's head"),
    "vgg16": _spec("vgg16", _applications("VGG16"), _scale_caffe, _head_study(),
                   description="frozen ImageNet VGG16 + the study's head"),
    **{v: _spec(v, _lite(v), _scale_lite, _head_lite, input_size=size,
                description=f"frozen ImageNet EfficientNet-Lite{v[-1]} (weights from the edgeflower[lite] packages) "
                            "+ GAP + Dense 1024 + dropout 0.3 + softmax")
       for v, size in (("efficientnet_lite0", 224), ("efficientnet_lite1", 240), ("efficientnet_lite2", 260))},
}


def get_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; valid: {', '.join(MODELS)}")
    return MODELS[name]


def count_params(model: Any) -> dict[str, int]:
    import numpy as np

    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    non_trainable = int(sum(np.prod(w.shape) for w in model.non_trainable_weights))
    return {"total": trainable + non_trainable, "trainable": trainable, "non_trainable": non_trainable}
