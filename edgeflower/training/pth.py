"""A reader for legacy (pre-1.6, non-zip) PyTorch ``.pth`` state dicts, with ``pickle`` and numpy only.

PyTorch is a multi-gigabyte install; the EfficientNet-Lite ImageNet weights that edgeflower uses are plain state
dicts in the legacy format, which is simple enough to read directly. The file is a sequence of pickles:

1. the magic number ``0x1950a86a20f9469cfc6c``, 2. the protocol version (1001), 3. system information (byte order),
4. the object itself, where each tensor is ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
   and each storage a *persistent id* ``("storage", StorageType, key, location, numel[, view])``,
5. the sorted list of storage keys; then, for each key in that order, an int64 element count and the storage's raw
   little-endian bytes.

Only the globals such a file needs are resolved (``collections.OrderedDict``, the tensor rebuild functions and the
storage types); anything else is refused, so reading an untrusted file runs no code from it.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeflower.errors import ModelError

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class PthError(ModelError):
    """A .pth file that cannot be read as a legacy PyTorch state dict."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_STORAGE_DTYPES[self.name])


@dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:  # pragma: no cover - every storage is read before tensors are materialized
            raise PthError(f"storage {self.storage.key} was never read")
        if not self.size:
            return data[self.offset].copy()
        need = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) + 1
        if need > len(data):
            raise PthError(f"a tensor reaches past the end of storage {self.storage.key}")
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(data[self.offset:], shape=self.size,
                                               strides=tuple(s * item for s in self.stride))
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *_rest):
    return _TensorRef(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, storages: dict[str, _Storage]):
        super().__init__(f, encoding="latin1")
        self.storages = storages

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise PthError(f"refusing to load {module}.{name}: not part of a plain state dict")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise PthError(f"unexpected persistent id {pid!r:.80}")
        _, stype, key, _location, numel, *view = pid
        if view and view[0] is not None:
            raise PthError("storage views are not supported (not written by torch.save of a state dict)")
        if not isinstance(stype, _StorageType):
            raise PthError(f"unexpected storage type {stype!r:.80}")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = _Storage(key, stype.dtype, int(numel))
        return self.storages[key]


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a legacy PyTorch state dict into ``{name: numpy array}`` in the file's order."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise PthError(f"cannot read weights file {p}: {exc.strerror}") from exc
    if raw[:2] == b"PK":
        raise PthError(f"{p.name} is a zip-format (PyTorch >= 1.6) checkpoint; edgeflower reads the legacy format "
                       "only: re-save it with torch.save(obj, f, _use_new_zipfile_serialization=False)")
    f = io.BytesIO(raw)
    storages: dict[str, _Storage] = {}
    try:
        if pickle.load(f) != MAGIC:
            raise PthError(f"{p.name} is not a PyTorch .pth file (wrong magic number)")
        if pickle.load(f) != PROTOCOL:
            raise PthError(f"{p.name}: unsupported PyTorch file protocol")
        sys_info = pickle.load(f)
        if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
            raise PthError(f"{p.name} was written on a big-endian machine, which is not supported")
        obj = _Unpickler(f, storages).load()
        keys = pickle.load(f)
    except PthError:
        raise
    except Exception as exc:  # pickle raises UnpicklingError, EOFError, ValueError, ... on a damaged file
        raise PthError(f"{p.name} is damaged or not a legacy PyTorch state dict ({type(exc).__name__}: "
                       f"{str(exc)[:120]})") from exc
    if not isinstance(obj, dict):
        raise PthError(f"{p.name} holds a {type(obj).__name__}, not a state dict")
    # which tensor owns each storage, to name the first one a truncated file loses
    owner = {}
    for name, t in obj.items():
        if isinstance(t, _TensorRef):
            owner.setdefault(t.storage.key, name)
    for key in keys:
        s = storages.get(str(key))
        if s is None:
            raise PthError(f"{p.name}: storage {key} is listed but no tensor uses it")
        head = f.read(8)
        if len(head) < 8:
            raise PthError(f"{p.name} is truncated: the data of tensor {owner.get(s.key, s.key)!r} is missing")
        (numel,) = struct.unpack("<q", head)
        if numel != s.numel:
            raise PthError(f"{p.name}: tensor {owner.get(s.key, s.key)!r} has {numel} values in the file, "
                           f"{s.numel} in its header")
        nbytes = numel * s.dtype.itemsize
        buf = f.read(nbytes)
        if len(buf) < nbytes:
            raise PthError(f"{p.name} is truncated: tensor {owner.get(s.key, s.key)!r} has {len(buf)} of its "
                           f"{nbytes} bytes")
        s.data = np.frombuffer(buf, dtype=s.dtype.newbyteorder("<"))
    missing = [n for n, t in obj.items() if isinstance(t, _TensorRef) and t.storage.data is None]
    if missing:
        raise PthError(f"{p.name} is truncated or damaged: no data for tensor {missing[0]!r}")
    return {name: (t.array() if isinstance(t, _TensorRef) else np.asarray(t)) for name, t in obj.items()}

