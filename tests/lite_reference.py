"""An independent forward pass of EfficientNet-Lite in numpy (float64), straight from a PyTorch state dict.

It follows the PyTorch reference implementation (``efficientnet_lite_pytorch``: static "same" padding with the
extra pixel at the bottom and right, BatchNorm eps 1e-3, ReLU6, (x - 127) / 128) and derives the block structure
from the state dict's tensor shapes, so it shares no code with ``edgeflower.training.efficientnet_lite``.
"""

from __future__ import annotations

import math

import numpy as np

# the stride of each stage in the reference's block strings ('r1_k3_s11', 'r2_k3_s22', ...)
STAGE_STRIDES = [1, 2, 2, 2, 1, 2, 1]


def _pad_same(x: np.ndarray, k: int, s: int) -> np.ndarray:
    h, w = x.shape[:2]
    ph = max((math.ceil(h / s) - 1) * s + k - h, 0)
    pw = max((math.ceil(w / s) - 1) * s + k - w, 0)
    return np.pad(x, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


def _conv(x: np.ndarray, w: np.ndarray, s: int) -> np.ndarray:
    k = w.shape[-1]
    xp = _pad_same(x, k, s)
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(0, 1))[::s, ::s]  # oh, ow, cin, k, k
    return np.einsum("hwcij,ocij->hwo", win, w, optimize=True)


def _depthwise(x: np.ndarray, w: np.ndarray, s: int) -> np.ndarray:
    k = w.shape[-1]
    xp = _pad_same(x, k, s)
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(0, 1))[::s, ::s]  # oh, ow, c, k, k
    return np.einsum("hwcij,cij->hwc", win, w[:, 0], optimize=True)


def _bn(x: np.ndarray, sd: dict, p: str) -> np.ndarray:
    return (x - sd[p + ".running_mean"]) / np.sqrt(sd[p + ".running_var"] + 1e-3) * sd[p + ".weight"] + sd[p + ".bias"]


def _relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 6)


def forward(state: dict[str, np.ndarray], image: np.ndarray) -> np.ndarray:
    """ImageNet logits of one HxWx3 image of pixels 0-255."""
    sd = {k: v.astype(np.float64) for k, v in state.items() if not k.endswith("num_batches_tracked")}
    x = (image.astype(np.float64) - 127.0) / 128.0
    x = _relu6(_bn(_conv(x, sd["_conv_stem.weight"], 2), sd, "_bn0"))
    n_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
    stage = -1
    for b in range(n_blocks):
        p = f"_blocks.{b}."
        cout, cin_exp = sd[p + "_project_conv.weight"].shape[:2]
        cin = sd[p + "_expand_conv.weight"].shape[1] if p + "_expand_conv.weight" in sd else cin_exp
        first = cin != cout or b == 0
        stage += first
        s = STAGE_STRIDES[stage] if first else 1
        y = x
        if p + "_expand_conv.weight" in sd:
            y = _relu6(_bn(_conv(y, sd[p + "_expand_conv.weight"], 1), sd, p + "_bn0"))
        y = _relu6(_bn(_depthwise(y, sd[p + "_depthwise_conv.weight"], s), sd, p + "_bn1"))
        y = _bn(_conv(y, sd[p + "_project_conv.weight"], 1), sd, p + "_bn2")
        x = y + x if (s == 1 and cin == cout) else y
    x = _relu6(_bn(_conv(x, sd["_conv_head.weight"], 1), sd, "_bn1"))
    return x.mean(axis=(0, 1)) @ sd["_fc.weight"].T + sd["_fc.bias"]
