"""JPEG photos decoded by libjpeg-turbo straight into a reused buffer (simplejpeg, optional): Pillow's pixels, sooner.

Around a 5 ms int8 invoke, Pillow's way with a dataset photo took 1.3-1.5 ms here, where libjpeg-turbo's decode
takes 0.6: the header parsed in Python, a new zeroed image for every photo, the pixels handed to numpy through one
more copy, each slower with the caches cold after the invoke (docs/studies/jpeg-decode.md). simplejpeg calls
libjpeg-turbo with Pillow's settings (accurate DCT, smooth chroma upsampling) and writes into a buffer kept per
thread, so a photo costs its decode and the resize. The pixels are Pillow's: tests compare the two on every kind of
JPEG, and ``preprocess`` takes this path only for a photo that Pillow would decode whole and keep as it is. One that
needs a turn (EXIF or XMP orientation), a draft (twice the input size or more: Pillow's DCT scaling already makes it
cheap), another colour space or depth, a multi-picture file, or a header this module does not read, is Pillow's; so
is every decoding error, which Pillow words. Without simplejpeg (a platform it has no wheel for) Pillow decodes
everything, to the same pixels.
"""

from __future__ import annotations

import re
import struct
import threading

import numpy as np

_UNLOADED = object()
#: The simplejpeg module, None without it; imported at the first photo, so that importing edgeflower.edge stays light.
simplejpeg = _UNLOADED

#: A thread keeps a buffer for photos up to 1 megapixel (4 bytes a pixel); a larger photo gets one of its own.
BUFFER_MAX = 1 << 22
_local = threading.local()

_SOF_PLAIN = {0xC0, 0xC1, 0xC2}  # baseline, extended and progressive Huffman: what both decode the same
_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # lossless, hierarchical, arithmetic
_XMP = b"http://ns.adobe.com/xap/1.0/\x00"
_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(="|>)([0-9])')  # Pillow's own pattern (Image.getexif)


def plain_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a JPEG that Pillow would decode as it is: 8-bit Huffman-coded, one or three components,
    upright (EXIF orientation 1 or none, read as Pillow reads it: the first EXIF block, else the last XMP packet),
    one picture. None for anything else, and for any header this function cannot follow to the start of the scan."""
    if not data.startswith(b"\xff\xd8"):
        return None
    try:
        return _plain_size(data)
    except (IndexError, struct.error):
        return None


def _plain_size(data: bytes) -> tuple[int, int] | None:
    i, n, size = 2, len(data), None
    orientation, xmp, exif_blocks = None, None, 0
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the header is read
            break
        length = (data[i + 2] << 8) | data[i + 3]
        body = i + 4
        if marker in _SOF_OTHER:
            return None
        if marker in _SOF_PLAIN:
            precision, height, width, components = struct.unpack_from(">BHHB", data, body)
            if precision != 8 or components not in (1, 3) or not height or not width:
                return None
            size = (width, height)
        elif marker == 0xE1 and data.startswith(b"Exif\x00\x00", body):
            exif_blocks += 1  # Pillow joins several; one is what photos have
            orientation = _exif_orientation(data[body + 6:i + 2 + length])
            if exif_blocks > 1 or orientation is False:
                return None
        elif marker == 0xE1 and data.startswith(_XMP, body):
            xmp = data[body + len(_XMP):i + 2 + length]
        elif marker == 0xE2 and data.startswith(b"MPF\x00", body):
            return None  # a multi-picture file: Pillow opens it as MPO
        i += 2 + length
    else:
        return None
    if orientation is None and xmp is not None:
        match = _XMP_ORIENTATION.search(xmp)
        orientation = int(match[2]) if match else None
    return size if orientation in (None, 1) else None


def _exif_orientation(tiff: bytes) -> int | None | bool:
    """IFD0's orientation (0x0112) in a TIFF block; None without one; False where it is not a plain SHORT."""
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(tiff[:4])
    if order is None:
        return False
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for k in range(count):
        tag, kind, values = struct.unpack_from(order + "HHI", tiff, ifd + 2 + 12 * k)
        if tag == 0x0112:
            return struct.unpack_from(order + "H", tiff, ifd + 10 + 12 * k)[0] if (kind, values) == (3, 1) else False
    return None


def decode(data: bytes, side: int, max_pixels: int, channels: str = "RGB") -> np.ndarray | None:
    """The JPEG ``data`` as a uint8 array (height, width, 3 for ``channels`` RGB, 4 for RGBX) over this thread's
    buffer, where Pillow would decode it whole for an input of ``side`` pixels (its draft scales by 2 or more only
    from twice that size); None where Pillow decodes it (see the module's note). The array lives until the thread's
    next decode: copy what is kept."""
    decoder = _decoder()
    if decoder is None or not isinstance(data, (bytes, bytearray)):
        return None
    size = plain_size(data)
    if size is None or size[0] * size[1] > max_pixels or min(size) // max(1, side) >= 2:
        return None
    width, height = size
    try:
        pixels = decoder.decode_jpeg(data, channels, buffer=_buffer(width * height * len(channels)), strict=True)
    except ValueError:  # a damaged or unusual file (strict: libjpeg's warnings too): Pillow decides and words it
        return None
    return pixels if pixels.shape[:2] == (height, width) else None


def _decoder():
    global simplejpeg
    if simplejpeg is _UNLOADED:
        try:
            import simplejpeg as module
        except ImportError:  # a platform without its wheel: Pillow decodes every photo
            module = None
        simplejpeg = module
    return simplejpeg


def _buffer(nbytes: int) -> np.ndarray:
    if nbytes > BUFFER_MAX:
        return np.empty(nbytes, np.uint8)
    buf = getattr(_local, "buffer", None)
    if buf is None or buf.size < nbytes:
        buf = _local.buffer = np.empty(nbytes, np.uint8)
    return buf
