"""The one preprocessing function: training, export checks and the device all see the same pixels.

Decode with Pillow, honour EXIF orientation, convert to RGB, resize (no aspect preservation: the whole photo is
squeezed into the model's square input, as the study did) and return uint8 HxWx3. Models take raw 0-255 pixels and
scale them inside their own graph, so nothing else is needed. Most JPEG photos are decoded by simplejpeg where it is
installed, to Pillow's very pixels in less time (``edgeflower.edge.jpeg``).

The resize is the run's (``RESIZE_FILTERS``): ``nearest`` for new runs, ``bilinear`` (Pillow's, antialiased) for runs
trained before it was a choice. Both come after a box reduction by the largest whole factor that keeps the input's
size, so nearest samples a photo shrunk by less than 2x on its short side; it resizes a 320x240 frame in 0.03 ms
against 0.6 ms, at the same validation accuracy (docs/studies/nearest-resize.md). A run records its resize in its config
and an artifact in its metadata (``preprocessing.resize``); one that names none is ``bilinear``.
"""

from __future__ import annotations

import functools
import io
import os
import struct
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from edgeflower.edge import jpeg
from edgeflower.errors import ImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

def is_image_file(path: Path, root: Path | None = None) -> bool:
    """An image by its suffix, and not hidden: files and folders whose name starts with a dot (temporaries of
    interrupted copies, ``.partial`` staging) are never read as photos."""
    rel = path.relative_to(root) if root is not None else Path(path.name)
    return (path.suffix.lower() in IMAGE_SUFFIXES and not any(p.startswith(".") for p in rel.parts)
            and path.is_file())


def image_files(root: str | os.PathLike) -> list[Path]:
    """The images under ``root``, recursively, sorted; hidden files and folders skipped."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if is_image_file(p, root))


ImageLike = Union[str, os.PathLike, bytes, Image.Image, np.ndarray]

#: The resize of each name: Pillow's nearest neighbour (pixel centres), and its antialiased bilinear.
RESIZE_FILTERS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR}
#: The resize of new runs.
RESIZE = "nearest"
#: The resize of runs and artifacts that name none: everything trained before the choice existed.
LEGACY_RESIZE = "bilinear"


def check_resize(resize: str) -> str:
    """``resize`` if edgeflower knows it, else a one-line error naming those it knows."""
    if resize not in RESIZE_FILTERS:
        raise ImageError(f"unknown resize {resize!r}: expected one of {', '.join(RESIZE_FILTERS)} (an artifact from a "
                         "newer edgeflower needs that version on the device)")
    return resize


def resize_of(described: dict | None) -> str:
    """The resize a run's config (``resize``) or an artifact's metadata (``preprocessing.resize``) names;
    LEGACY_RESIZE for one that names none."""
    described = described or {}
    name = described.get("resize") or (described.get("preprocessing") or {}).get("resize") or LEGACY_RESIZE
    return check_resize(name)


def preprocessing(resize: str = RESIZE) -> dict:
    """The steps, as written into every artifact so the device can check it applies the same ones."""
    return {**_STEPS, "resize": check_resize(resize)}


_STEPS = {
    "library": "Pillow",
    "color": "RGB",
    "exif_transpose": True,
    "aspect": "stretch",
    "jpeg_draft": True,
    "reduce_large": True,  # an image of twice the input or more is box-reduced first (open_image)
    "dtype": "uint8",
    "range": [0, 255],
    "layout": "HWC",
}
#: The steps of new runs.
PREPROCESSING = preprocessing()

# Pillow returns an image's memory to the system when the image goes, and asks for it again for the next frame: a
# 320x240 frame's three buffers (the frame, the resize's two passes) cost 0.2-0.3 ms of page faults per frame here,
# a quarter of the preprocessing. Keeping a few freed 1 MB blocks for reuse removes that, for at most 16 MB.
PILLOW_BLOCK_SIZE, PILLOW_BLOCKS_MAX = 1 << 20, 16


def reuse_pillow_memory() -> None:
    """Let Pillow reuse freed image memory (the device's frame loop); PILLOW_BLOCK_SIZE / PILLOW_BLOCKS_MAX in the
    environment (Pillow's own settings) take precedence."""
    if "PILLOW_BLOCKS_MAX" in os.environ or "PILLOW_BLOCK_SIZE" in os.environ:
        return
    core = Image.core
    if core.get_blocks_max() < PILLOW_BLOCKS_MAX:
        core.set_block_size(PILLOW_BLOCK_SIZE)
        core.set_blocks_max(PILLOW_BLOCKS_MAX)


def _as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) from an int or a pair."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode (L, P, RGBA, LA, CMYK, I;16, F...) to RGB; transparent areas become white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(scaled.astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


# The largest image edgeflower decodes (a decompression bomb is refused before its pixels are decoded): 64 megapixels,
# above any phone or DSLR photo (a 48 MP phone photo is 8000 x 6000). Pillow's own limit warns at 89 MP.
MAX_PIXELS = 64_000_000


def open_image(src: str | os.PathLike | bytes, draft_size: tuple[int, int] | None = None,
               name: str | None = None) -> Image.Image:
    """Decode an image file (or bytes) into an RGB Pillow image, EXIF orientation applied.

    ``draft_size`` (height, width) lets decoding skip detail that the resize would throw away: JPEG's DCT scaling
    by 1/2, 1/4 or 1/8, then for any format a box reduction by a whole factor, never below the requested size.
    ``name`` is the file that bytes came from, for errors.
    """
    name = name or ("<bytes>" if isinstance(src, (bytes, bytearray)) else os.fspath(src))
    try:
        fp = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else open(src, "rb")
    except OSError as exc:
        raise ImageError(f"cannot open image {name}: {exc.strerror or exc}") from exc
    try:
        with fp:
            img = Image.open(fp)
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(f"{name} is {img.width}x{img.height} pixels, more than edgeflower decodes "
                                 f"({MAX_PIXELS // 1_000_000} megapixels): resize it first")
            if draft_size is not None and img.format == "JPEG":
                # Request the larger side in both directions: EXIF rotation may swap them later.
                side = max(draft_size)
                img.draft("RGB", (side, side))
            img.load()
            if draft_size is not None:
                img = _reduce(img, max(draft_size))
            return to_rgb(upright(img))
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name} is not an image Pillow can read (zero-byte, truncated or another format): "
                         "remove it or replace it with a JPEG/PNG") from exc
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow refuses sizes far above its own limit in open()
        raise ImageError(f"{name} claims more pixels than edgeflower decodes ({MAX_PIXELS // 1_000_000} megapixels; "
                         f"{str(exc)[:60]}): resize it first") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning,
            EOFError, IndexError, KeyError, TypeError, struct.error, ZeroDivisionError, MemoryError) as exc:
        # what Pillow's decoders raise on damaged files; one line, never a traceback
        raise ImageError(f"{name} is corrupt or truncated ({type(exc).__name__}: {str(exc)[:120]}): remove it or "
                         "re-download it") from exc


# A file up to this size is read whole, once, for either decoder; a larger one Pillow reads as it decodes (so a huge
# file that is no image costs its header, not its size in memory).
READ_WHOLE_MAX = 32 << 20


def _read(src: str | os.PathLike | bytes) -> tuple[str | os.PathLike | bytes, str | None]:
    """(the file's bytes, or ``src`` itself for bytes and files over READ_WHOLE_MAX; the file's name)."""
    if isinstance(src, (bytes, bytearray)):
        return src, None
    name = os.fspath(src)
    try:
        with open(name, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            return (src, name) if size > READ_WHOLE_MAX else (f.read(size), name)  # one read: a regular file
    except OSError as exc:
        raise ImageError(f"cannot open image {name}: {exc.strerror or exc}") from exc


def load_photo(src: str | os.PathLike | bytes, draft_size: tuple[int, int]) -> np.ndarray:
    """A photo as an RGB array for a model of ``draft_size`` (height, width): the pixels of
    ``np.asarray(open_image(src, draft_size))``, a JPEG through simplejpeg where that applies (jpeg.py)."""
    data, name = _read(src)
    fast = jpeg.decode(data, max(draft_size), MAX_PIXELS)
    if fast is not None:
        return fast.copy()  # the decode's buffer is reused
    return np.asarray(open_image(data, draft_size=draft_size, name=name))


def upright(img: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation says. Most photos need no turn: they are returned as they are, where
    ImageOps.exif_transpose would copy them (a full copy of the decoded photo per frame, for the same pixels)."""
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block: let exif_transpose decide, as before
        orientation = None
    return img if orientation == 1 else ImageOps.exif_transpose(img)


def _reduce(img: Image.Image, side: int) -> Image.Image:
    """Shrink a decoded image by the largest whole factor that keeps both sides at least ``side`` (a box filter),
    before any copy is made: a 64-megapixel PNG then costs its decode and nothing more, as a JPEG's draft does.
    Images under twice the size are returned as they are (every photo of flower_photos is)."""
    factor = min(img.width, img.height) // max(1, side)
    if factor < 2:
        return img
    try:
        return img.reduce(factor)
    except (ValueError, NotImplementedError):  # modes Pillow cannot reduce (palette, 16-bit): resize later
        return img


def preprocess(src: ImageLike, size: int | tuple[int, int], resize: str = RESIZE) -> np.ndarray:
    """Any image (path, bytes, Pillow image, RGB array) -> uint8 array of shape (height, width, 3), resized with
    ``resize`` (a key of RESIZE_FILTERS: the run's or the artifact's, see ``resize_of``).

    Arrays are taken as RGB (convert OpenCV's BGR first); 2-D arrays as grayscale; 4-channel as RGBA.
    """
    h, w = _as_size(size)
    resample = RESIZE_FILTERS[check_resize(resize)]
    if isinstance(src, np.ndarray):
        img = _array_to_image(src)
    elif isinstance(src, Image.Image):
        img = to_rgb(upright(src))
    else:
        data, name = _read(src)
        nearest = resample == Image.Resampling.NEAREST
        fast = jpeg.decode(data, max(h, w), MAX_PIXELS, "RGB" if nearest else "RGBX")  # Pillow's pixels, sooner
        if fast is not None:  # a copy either way: the decode's buffer is reused
            return _nearest(fast, h, w) if nearest else _resized(fast, h, w, resample)
        img = open_image(data, draft_size=(h, w), name=name)
    img = _reduce(img, max(h, w))  # what open_image did for files, for frames and Pillow images too: same pixels
    if img.size != (w, h):
        img = img.resize((w, h), resample)
    return np.asarray(img, dtype=np.uint8)


def _nearest(pixels: np.ndarray, h: int, w: int) -> np.ndarray:
    """Pillow's nearest resize of an (H, W, C) array, in numpy: the same source pixel for each output pixel (its
    indices, per axis), columns then rows, into a new array; 0.1 ms less than through a Pillow image here."""
    return pixels.take(_nearest_index(pixels.shape[1], w), 1).take(_nearest_index(pixels.shape[0], h), 0)


@functools.lru_cache(maxsize=256)
def _nearest_index(n: int, m: int) -> np.ndarray:
    """The source index of each of ``m`` pixels that Pillow's nearest resize takes from ``n`` (asked of Pillow)."""
    line = Image.frombuffer("I", (n, 1), np.arange(n, dtype=np.int32).tobytes(), "raw", "I", 0, 1)
    index = np.frombuffer(line.resize((m, 1), Image.Resampling.NEAREST).tobytes(), np.int32).astype(np.intp)
    index.flags.writeable = False  # shared by every caller (the cache)
    return index


def _resized(rgbx: np.ndarray, h: int, w: int, resample: Image.Resampling) -> np.ndarray:
    """An RGBX array resized by Pillow's ``resample``, as a new RGB array."""
    img = Image.frombuffer("RGBX", (rgbx.shape[1], rgbx.shape[0]), rgbx, "raw", "RGBX", 0, 1)
    if img.size != (w, h):
        img = img.resize((w, h), resample)
    return np.frombuffer(img.tobytes("raw", "RGB"), np.uint8).reshape(h, w, 3)


def _array_to_image(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        return Image.fromarray(arr, "L").convert("RGB")
    if arr.ndim == 3 and arr.shape[2] == 3:
        # Image.fromarray would first fill a new image with zeros, then copy the frame over it
        img = Image.new("RGB", (arr.shape[1], arr.shape[0]), None)
        img.frombytes(np.ascontiguousarray(arr))
        return img
    if arr.ndim == 3 and arr.shape[2] == 4:
        return to_rgb(Image.fromarray(np.ascontiguousarray(arr), "RGBA"))
    if arr.ndim == 3 and arr.shape[2] == 1:
        return Image.fromarray(np.ascontiguousarray(arr[:, :, 0]), "L").convert("RGB")
    raise ImageError(f"expected an RGB frame of shape (H, W, 3), got an array of shape {arr.shape}")
