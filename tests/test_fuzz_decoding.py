"""Fuzzing the image decoding: damaged JPEG, PNG, GIF and WebP bytes, random headers and absurd sizes reach
open_image / preprocess / Classifier.classify, and the only error that comes out is a one-line ImageError."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from edgeflower.edge.preprocess import MAX_PIXELS, open_image, preprocess
from edgeflower.errors import ImageError

FORMATS = ["JPEG", "PNG", "GIF", "WEBP"]
EXAMPLES = 60  # per test: enough to find the usual decoder exceptions, small enough for CI


def _encoded(fmt: str) -> bytes:
    rng = np.random.default_rng(len(fmt))
    img = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


SAMPLES = {f: _encoded(f) for f in FORMATS}


def _one_line_image_error_or_image(call, data):
    try:
        out = call(data)
    except ImageError as exc:
        assert "\n" not in str(exc) and str(exc)
        return None
    return out


@st.composite
def damaged(draw):
    """A valid small image, then truncated, bit-flipped, or with random bytes spliced in."""
    data = bytearray(SAMPLES[draw(st.sampled_from(FORMATS))])
    how = draw(st.sampled_from(["truncate", "flip", "splice", "header"]))
    if how == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif how == "flip":
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    elif how == "splice":
        i = draw(st.integers(0, len(data)))
        data[i:i] = draw(st.binary(min_size=1, max_size=64))
    else:  # a real header, then noise
        data = data[:draw(st.integers(2, 16))] + bytearray(draw(st.binary(min_size=0, max_size=256)))
    return bytes(data)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_fuzz_damaged_files_give_image_error_or_an_image(data):
    img = _one_line_image_error_or_image(open_image, data)
    if img is not None:
        assert img.mode == "RGB"
    arr = _one_line_image_error_or_image(lambda d: preprocess(d, 32), data)
    if arr is not None:
        assert arr.shape == (32, 32, 3) and arr.dtype == np.uint8


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(min_size=0, max_size=512))
def test_fuzz_random_bytes_give_image_error(data):
    _one_line_image_error_or_image(lambda d: preprocess(d, 16), data)


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (the pixel data is a few bytes)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + \
        chunk(b"IEND", b"")


@pytest.mark.parametrize("w, h", [(100_000, 100_000), (MAX_PIXELS // 1000 + 1, 1000), (2**31 - 1, 1), (1, 0)])
def test_absurd_sizes_are_refused_before_decoding(w, h):
    with pytest.raises(ImageError) as e:
        preprocess(_png_header(w, h), 32)
    assert "\n" not in str(e.value)
    if w * h > MAX_PIXELS:  # the documented limit, named in the message (under Pillow's own 89 MP warning too)
        assert "megapixels" in str(e.value)


def test_fuzzed_frames_through_the_classifier(tiny_export):
    from edgeflower.edge import Classifier

    clf = Classifier(tiny_export / "model_int8.tflite")
    for fmt in FORMATS:
        data = SAMPLES[fmt]
        for cut in (0, 1, len(data) // 3, len(data) - 1):
            try:
                p = clf.classify(data[:cut])
                assert p.label
            except ImageError as exc:
                assert "\n" not in str(exc)
