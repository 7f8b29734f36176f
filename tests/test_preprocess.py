"""One preprocessing function for every side: any input becomes the same uint8 RGB pixels."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from edgeflower.edge.preprocess import preprocess, preprocessing, resize_of
from edgeflower.errors import ImageError

from conftest import make_image


@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK", "RGBA", "P", "LA", "I;16", "F"])
def test_every_mode_becomes_rgb(tmp_path, mode):
    img = make_image((200, 40, 40)).convert(mode) if mode not in ("I;16", "F") else \
        Image.fromarray((np.arange(32 * 40).reshape(32, 40) % 256).astype(np.uint16 if mode == "I;16" else np.float32))
    ext = "png" if mode in ("RGBA", "P", "LA", "I;16") else ("tiff" if mode == "F" else "jpg")
    f = tmp_path / f"x.{ext}"
    img.save(f)
    out = preprocess(f, 24)
    assert out.shape == (24, 24, 3) and out.dtype == np.uint8


def test_exif_rotation_is_applied(tmp_path):
    img = make_image((40, 180, 60), size=(40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "r.jpg", exif=exif)
    out = preprocess(tmp_path / "r.jpg", (40, 20))  # (height, width) of the upright image
    assert out.shape == (40, 20, 3)
    from edgeflower.edge.preprocess import open_image

    assert open_image(tmp_path / "r.jpg").size == (20, 40)


@pytest.mark.parametrize("orientation", [None, 1, 2, 3, 4, 5, 6, 7, 8])
def test_upright_gives_exif_transposes_pixels_and_copies_nothing_it_need_not(tmp_path, orientation):
    from PIL import ImageOps

    from edgeflower.edge.preprocess import upright

    img = make_image((40, 180, 60), size=(40, 20), seed=orientation or 0)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    img.save(tmp_path / "o.jpg", exif=exif)
    with Image.open(tmp_path / "o.jpg") as im:
        im.load()
        got = upright(im)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(ImageOps.exif_transpose(im)))
        assert (got is im) == (orientation in (None, 1))  # an upright photo is not copied


def test_transparent_pixels_become_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    out = preprocess(rgba, 8)
    assert (out == 255).all()


def test_same_pixels_from_path_bytes_and_pillow(tmp_path):
    make_image((40, 60, 200), size=(300, 200)).save(tmp_path / "a.png")
    a = preprocess(tmp_path / "a.png", 32)
    b = preprocess((tmp_path / "a.png").read_bytes(), 32)
    c = preprocess(Image.open(tmp_path / "a.png"), 32)
    d = preprocess(np.asarray(Image.open(tmp_path / "a.png")), 32)
    for x in (b, c, d):
        np.testing.assert_array_equal(a, x)


def test_grayscale_and_float_arrays():
    assert preprocess(np.full((10, 12), 7, np.uint8), 4)[0, 0].tolist() == [7, 7, 7]
    assert preprocess(np.ones((10, 12, 3), np.float32), 4).max() == 255


@pytest.mark.parametrize("payload, match", [(b"", "not an image"), (b"GIF89a\x00", "corrupt|not an image"),
                                            (b"hello", "not an image")])
def test_bad_files_raise_image_error(payload, match):
    with pytest.raises(ImageError, match=match):
        preprocess(payload, 8)


def test_truncated_jpeg(tmp_path):
    buf = io.BytesIO()
    make_image((1, 2, 3), size=(64, 64)).save(buf, format="JPEG")
    with pytest.raises(ImageError, match="corrupt or truncated"):
        preprocess(buf.getvalue()[:200], 8)


def test_bad_array_shape():
    with pytest.raises(ImageError, match=r"shape \(4, 4, 5\)"):
        preprocess(np.zeros((4, 4, 5), np.uint8), 8)


def test_the_resize_is_the_named_one_after_a_whole_factor_reduction():
    """nearest and bilinear are Pillow's, on the frame or on its box reduction by the largest whole factor that keeps
    the input's size; the two give different pixels, so an artifact must say which it was trained with."""
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)  # fine texture: the filters disagree
    img = Image.fromarray(frame)
    nearest, bilinear = preprocess(frame, 224, "nearest"), preprocess(frame, 224, "bilinear")
    np.testing.assert_array_equal(nearest, np.asarray(img.resize((224, 224), Image.Resampling.NEAREST)))
    np.testing.assert_array_equal(bilinear, np.asarray(img.resize((224, 224), Image.Resampling.BILINEAR)))
    assert (nearest != bilinear).mean() > 0.5
    np.testing.assert_array_equal(preprocess(frame, 224), nearest)  # new runs' default
    big = np.repeat(np.repeat(frame, 2, axis=0), 2, axis=1)  # 640x480: reduced by 2 to the frame first
    np.testing.assert_array_equal(preprocess(big, 224, "nearest"),
                                  np.asarray(Image.fromarray(big).reduce(2).resize((224, 224),
                                                                                   Image.Resampling.NEAREST)))


def test_a_resize_is_read_from_a_run_or_an_artifact_and_checked():
    assert resize_of({"resize": "nearest"}) == "nearest"
    assert resize_of({"preprocessing": preprocessing("nearest")}) == "nearest"
    assert resize_of({}) == resize_of(None) == resize_of({"preprocessing": {}}) == "bilinear"  # before the choice
    assert preprocessing("bilinear")["resize"] == "bilinear"
    with pytest.raises(ImageError, match="unknown resize 'lanczos': expected one of nearest, bilinear"):
        resize_of({"resize": "lanczos"})
    with pytest.raises(ImageError, match="unknown resize"):
        preprocess(np.zeros((8, 8, 3), np.uint8), 4, "area")
