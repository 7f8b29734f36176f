"""JPEG photos through simplejpeg: Pillow's pixels exactly, and Pillow for everything it alone decodes the same."""

from __future__ import annotations

import importlib
import io
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from edgeflower.edge import jpeg
from edgeflower.errors import ImageError

from conftest import SHARED_DATA, needs_shared

pytest.importorskip("simplejpeg")
pre = importlib.import_module("edgeflower.edge.preprocess")  # the module (edgeflower.edge exports the function)


def photo(size=(333, 251), seed=0) -> Image.Image:
    """A photo-like picture: smooth shading, an edge and fine noise (what JPEG's DCT and chroma upsampling meet)."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    arr = np.stack([120 + 100 * np.sin(x / 17.0), 90 + 80 * np.cos(y / 23.0), 60 + (x + y) / (w + h) * 150], -1)
    arr[h // 3:, w // 2:] *= 0.5
    arr += rng.normal(0, 12, arr.shape)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def encode(img: Image.Image, fmt="JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def exif(orientation: int) -> Image.Exif:
    e = Image.Exif()
    e[0x0112] = orientation
    e[0x010F] = "edgeflower"  # a second tag: the orientation is not the only entry
    return e


def xmp(orientation: int, element: bool = False) -> bytes:
    tag = f"<tiff:Orientation>{orientation}</tiff:Orientation>" if element else f'tiff:Orientation="{orientation}"'
    return (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description ' + tag.encode()
            + b"/></rdf:RDF></x:xmpmeta>")


def with_pillow(monkeypatch, *args) -> np.ndarray:
    with monkeypatch.context() as m:
        m.setattr(jpeg, "simplejpeg", None)
        return pre.preprocess(*args)


PLAIN = {
    "baseline 4:2:0": lambda: encode(photo(), quality=90),
    "4:2:2": lambda: encode(photo(), quality=85, subsampling=1),
    "4:4:4": lambda: encode(photo(), quality=95, subsampling=0),
    "progressive, optimized": lambda: encode(photo(), quality=80, progressive=True, optimize=True),
    "grayscale": lambda: encode(photo().convert("L"), quality=90),
    "odd size": lambda: encode(photo((301, 227)), quality=75),
    "EXIF orientation 1": lambda: encode(photo(), exif=exif(1)),
    "XMP orientation 1": lambda: encode(photo(), xmp=xmp(1)),
    "XMP without orientation": lambda: encode(photo(), xmp=b"<x:xmpmeta/>"),
    "EXIF 1 over XMP 6": lambda: encode(photo(), exif=exif(1), xmp=xmp(6)),  # Pillow reads XMP only without EXIF's
    "ICC profile": lambda: encode(photo(), icc_profile=b"\x00" * 300),
    "restart markers, a wide photo": lambda: encode(photo((224 * 2 - 1, 230)), quality=90, restart_marker_blocks=2),
}


@pytest.mark.parametrize("kind", PLAIN)
@pytest.mark.parametrize("resize", ["nearest", "bilinear"])
def test_plain_jpegs_give_pillows_pixels(monkeypatch, kind, resize):
    data = PLAIN[kind]()
    assert jpeg.decode(data, 224, pre.MAX_PIXELS) is not None  # simplejpeg decoded it
    for size in (224, (48, 64), (300, 400), Image.open(io.BytesIO(data)).size[::-1]):  # the last: as it is
        got = pre.preprocess(data, size, resize)
        np.testing.assert_array_equal(got, with_pillow(monkeypatch, data, size, resize))
        assert got.dtype == np.uint8 and got.shape[2] == 3


@needs_shared
def test_real_photos_give_pillows_pixels(monkeypatch):
    """Every 50th photo of flower_photos (all 3670 were compared once, both resizes: none differed)."""
    photos = sorted(SHARED_DATA.glob("*/*.jpg"))[::50]
    assert len(photos) > 70
    for path in photos:
        assert jpeg.decode(path.read_bytes(), 224, pre.MAX_PIXELS) is not None, path
        np.testing.assert_array_equal(pre.preprocess(path, 224), with_pillow(monkeypatch, path, 224))


def big_endian_exif(orientation: int) -> bytes:
    ifd = b"\x00\x02" + b"\x01\x0f\x00\x02\x00\x00\x00\x04edg\x00" + b"\x01\x12\x00\x03\x00\x00\x00\x01" \
        + orientation.to_bytes(2, "big") + b"\x00\x00" + b"\x00\x00\x00\x00"
    return b"Exif\x00\x00MM\x00*\x00\x00\x00\x08" + ifd


PILLOWS = {
    "EXIF orientation 6": lambda: encode(photo(), exif=exif(6)),
    "EXIF orientation 3, big-endian": lambda: encode(photo(), exif=big_endian_exif(3)),
    "XMP orientation 6": lambda: encode(photo(), xmp=xmp(6)),
    "XMP orientation 8 as an element": lambda: encode(photo(), xmp=xmp(8, element=True)),
    "CMYK": lambda: encode(photo().convert("CMYK")),
    "twice the input: a draft": lambda: encode(photo((448, 460))),
    "multi-picture": lambda: encode(photo(), "MPO", save_all=True, append_images=[photo(seed=1)]),
    "PNG": lambda: encode(photo(), "PNG"),
}


@pytest.mark.parametrize("kind", PILLOWS)
def test_what_only_pillow_decodes_the_same_is_left_to_it(monkeypatch, kind):
    data = PILLOWS[kind]()
    assert jpeg.decode(data, 224, pre.MAX_PIXELS) is None
    np.testing.assert_array_equal(pre.preprocess(data, 224), with_pillow(monkeypatch, data, 224))
    if "orientation" in kind:  # turned, as the same photo without the orientation is not
        assert not np.array_equal(pre.preprocess(data, 224), pre.preprocess(encode(photo()), 224))


def test_a_big_endian_exif_orientation_1_is_read():
    assert jpeg.decode(encode(photo(), exif=big_endian_exif(1)), 224, pre.MAX_PIXELS) is not None


def test_damaged_jpegs_are_pillows_to_word(monkeypatch, tmp_path):
    data = encode(photo(), quality=90)
    truncated = data[: len(data) // 2]
    assert jpeg.decode(truncated, 224, pre.MAX_PIXELS) is None  # libjpeg's warning, strict: Pillow decides
    (tmp_path / "t.jpg").write_bytes(truncated)
    with pytest.raises(ImageError, match=r"t\.jpg is corrupt or truncated"):
        pre.preprocess(tmp_path / "t.jpg", 224)
    for junk in (data[:2], data[:2] + b"\xff", data[:40], b"\xff\xd8\x00\x00" + data[4:]):
        assert jpeg.plain_size(junk) is None
    big = encode(photo((64, 48)))
    assert jpeg.decode(big, 16, max_pixels=64 * 48 - 1) is None  # over the limit: Pillow refuses it, in one line


def test_each_thread_decodes_into_its_own_buffer():
    datas = [encode(photo(seed=s), quality=90) for s in range(4)]
    expected = [pre.preprocess(d, 224) for d in datas]
    errors = []

    def work(k):
        for i in range(25):
            j = (k + i) % 4
            if not np.array_equal(pre.preprocess(datas[j], 224), expected[j]):
                errors.append((k, i))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_the_kept_buffer_is_bounded(monkeypatch):
    monkeypatch.setattr(jpeg, "BUFFER_MAX", 100 * 100 * 4)
    monkeypatch.setattr(jpeg, "_local", threading.local())
    small, large = encode(photo((100, 80))), encode(photo((300, 200)))
    assert jpeg.decode(small, 100, pre.MAX_PIXELS) is not None
    kept = jpeg._local.buffer
    assert jpeg.decode(large, 200, pre.MAX_PIXELS) is not None
    assert jpeg._local.buffer is kept and kept.size <= jpeg.BUFFER_MAX  # the large photo's buffer was its own


def test_files_are_read_once_whole_and_large_ones_left_to_pillow(monkeypatch, tmp_path):
    f = tmp_path / "p.jpg"
    f.write_bytes(encode(photo()))
    assert pre._read(f) == (f.read_bytes(), str(f))
    monkeypatch.setattr(pre, "READ_WHOLE_MAX", 100)
    assert pre._read(f) == (f, str(f))
    np.testing.assert_array_equal(pre.preprocess(f, 224), with_pillow(monkeypatch, f.read_bytes(), 224))
    for missing in (tmp_path / "nope.jpg", tmp_path):
        with pytest.raises(ImageError, match="cannot open image"):
            pre.preprocess(missing, 224)


def test_a_folder_of_photos_gives_open_images_pixels_and_keeps_each(monkeypatch, tmp_path):
    """`classify --images`: each photo as np.asarray(open_image(...)) gave it, and a photo read earlier (a saved frame
    waiting for the disk) is not overwritten by the next decode."""
    from edgeflower.edge.sources import ImageSource

    kinds = {**PLAIN, **{k: PILLOWS[k] for k in ("EXIF orientation 6", "twice the input: a draft", "PNG")}}
    for k, make in enumerate(kinds.values()):
        (tmp_path / f"{k:02d}.jpg").write_bytes(make())
    frames = list(ImageSource(str(tmp_path), size_hint=(224, 224)).frames())
    assert len(frames) == len(kinds) and not any(f.error for f in frames)
    for frame in frames:
        expected = np.asarray(pre.open_image(tmp_path / frame.name, draft_size=(224, 224)))
        np.testing.assert_array_equal(frame.image, expected)
    assert sum(jpeg.decode((tmp_path / f.name).read_bytes(), 224, pre.MAX_PIXELS) is not None for f in frames) >= 12


def test_without_simplejpeg_pillow_decodes_everything(monkeypatch):
    """A platform without simplejpeg's wheel: the import fails at the first photo, and every photo is Pillow's."""
    data = PLAIN["baseline 4:2:0"]()
    expected = pre.preprocess(data, 224)
    monkeypatch.setitem(sys.modules, "simplejpeg", None)  # import simplejpeg raises ImportError
    monkeypatch.setattr(jpeg, "simplejpeg", jpeg._UNLOADED)
    assert jpeg.decode(data, 224, pre.MAX_PIXELS) is None and jpeg.simplejpeg is None
    np.testing.assert_array_equal(pre.preprocess(data, 224), expected)
