"""Decoded images on disk, read a batch at a time: memory that does not grow with the dataset.

The decoded-image cache is a ``.npy`` file, written through a window of ``numpy.lib.format.open_memmap`` that is
unmapped after every few rows, and read with ``os.pread`` into fresh arrays. Neither keeps a mapping of the whole
file: a mapped page that has been touched stays in the process's resident set until it is unmapped, so a
long-lived memory map of a 4 GB cache, shuffled through for an epoch, makes a 4 GB process. The pages stay in
the kernel's page cache, which is what makes the second epoch fast, and which the kernel frees when it needs to.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

WINDOW_BYTES = 32 << 20  # rows written through one memory-map window before it is unmapped


def _header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """(shape, fortran order, dtype, data offset) of a ``.npy`` file, with numpy's public header readers."""
    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        return shape, fortran, np.dtype(dtype), f.tell()


class _RowSource:
    """The numpy-like surface shared by the row sources: ``src[i]``, ``src[a:b]``, ``src[int_array]``,
    ``src[bool_mask]`` and ``src[rows, ...]`` read only those rows into an ordinary array; ``np.asarray(src)``
    reads everything (for small sources). Subclasses set ``shape`` and ``dtype`` and implement ``_rows(idx)``
    (rows ``idx``, any order, repeats allowed); ``_span`` may read a contiguous range faster."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _rows(self, idx: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _span(self, start: int, stop: int) -> np.ndarray:
        return self._rows(np.arange(start, stop))

    def __getitem__(self, key):
        n = self.shape[0]
        if isinstance(key, tuple):  # src[rows, ...]: rows first, the rest on the array read
            head, rest = key[0], key[1:]
            return self[head][(slice(None),) + rest] if not np.isscalar(head) else self[head][rest]
        if isinstance(key, (int, np.integer)):
            i = int(key)
            if not -n <= i < n:
                raise IndexError(f"index {key} is out of bounds for {n} rows")
            return self._span(i % n, i % n + 1)[0]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step == 1:
                return self._span(start, max(start, stop))
            return self._rows(np.arange(start, stop, step))
        idx = np.asarray(key)
        if idx.dtype == bool:
            if idx.shape != (n,):
                raise IndexError(f"boolean index of shape {idx.shape} for {n} rows")
            return self._rows(np.nonzero(idx)[0])
        if idx.dtype.kind not in "iu":
            raise IndexError(f"rows must be integers, a slice or a boolean mask, not {idx.dtype}")
        flat = idx.reshape(-1).astype(np.int64)
        if flat.size and (flat.min() < -n or flat.max() >= n):
            raise IndexError(f"row index out of bounds for {n} rows")
        return self._rows(flat % n if flat.size else flat).reshape(idx.shape + self.shape[1:])

    def __array__(self, dtype=None, copy=None):
        a = self[:]
        return a if dtype is None else a.astype(dtype)

    def astype(self, dtype, **kwargs) -> np.ndarray:
        """Every row, read into memory and converted (for small sources, as ``np.asarray``)."""
        return self[:].astype(dtype, **kwargs)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


class ImageStore(_RowSource):
    """A read-only (N, H, W, C) array in a ``.npy`` file, indexed like a numpy array.

    ``store[i]``, ``store[a:b]``, ``store[int_array]`` and ``store[bool_mask]`` read only those rows and return
    ordinary arrays; ``np.asarray(store)`` reads everything (for small stores)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        shape, fortran, dtype, self.offset = _header(self.path)
        if fortran or len(shape) < 1:
            raise ValueError(f"{self.path}: not a C-ordered array of rows")
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        expected = self.offset + self.row_bytes * self.shape[0]
        if self.path.stat().st_size < expected:
            raise ValueError(f"{self.path}: truncated ({self.path.stat().st_size} of {expected} bytes)")
        self._fd: int | None = None
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return self.row_bytes * self.shape[0]

    def __repr__(self) -> str:
        return f"ImageStore({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def _fileno(self) -> int:
        with self._lock:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY)
            return self._fd

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def __getstate__(self):  # picklable (e.g. into a worker): the file descriptor is reopened there
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])

    def _read_run(self, start: int, n: int, out: np.ndarray) -> None:
        buf = memoryview(out.reshape(-1).view(np.uint8))
        want, pos, fd = n * self.row_bytes, self.offset + start * self.row_bytes, self._fileno()
        got = 0
        while got < want:
            k = os.preadv(fd, [buf[got:want]], pos + got)
            if k <= 0:
                raise OSError(f"{self.path}: short read at row {start}")
            got += k

    def _rows(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (any order, repeats allowed), reading runs of consecutive rows in one call each."""
        out = np.empty((len(idx),) + self.shape[1:], self.dtype)
        if len(idx) == 0:
            return out
        order = np.argsort(idx, kind="stable")
        sidx = idx[order]
        uniq = np.unique(sidx)
        rows = np.empty((len(uniq),) + self.shape[1:], self.dtype)
        breaks = np.nonzero(np.diff(uniq) != 1)[0] + 1
        for run_start, run in zip(np.concatenate([[0], breaks]), np.split(uniq, breaks)):
            self._read_run(int(run[0]), len(run), rows[run_start:run_start + len(run)])
        # map each requested position to its unique row
        pos_in_uniq = np.searchsorted(uniq, sidx)
        out[order] = rows[pos_in_uniq]
        return out

    def _span(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start,) + self.shape[1:], self.dtype)
        if stop > start:
            self._read_run(start, stop - start, out)
        return out


class Rows(_RowSource):
    """Several row sources (stores or arrays) read as one, e.g. a split followed by its background photos."""

    def __init__(self, parts: list):
        self.parts = [p for p in parts if len(p)]
        if not self.parts:
            self.parts = parts[:1]
        tail = {tuple(p.shape[1:]) for p in self.parts}
        if len(tail) != 1:
            raise ValueError(f"rows of different shapes cannot be joined: {sorted(tail)}")
        self.dtype = np.dtype(self.parts[0].dtype)
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])
        self.shape = (int(self.starts[-1]),) + tuple(self.parts[0].shape[1:])

    def _rows(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx),) + self.shape[1:], self.dtype)
        part = np.searchsorted(self.starts, idx, side="right") - 1
        for k in np.unique(part):
            sel = part == k
            out[sel] = self.parts[k][idx[sel] - self.starts[k]]
        return out


def join_rows(parts: list):
    """One row source for ``parts``: a plain concatenation when they are all in memory, else a ``Rows`` view."""
    if all(isinstance(p, np.ndarray) and not isinstance(p, np.memmap) for p in parts):
        return np.concatenate(parts)
    return Rows(parts)


def write_npy(path: str | os.PathLike, shape: tuple[int, ...], dtype, rows) -> None:
    """Write a ``.npy`` of ``shape`` from ``rows`` (an iterable of arrays of ``shape[1:]``) through windows of
    ``open_memmap``, unmapping each window after it is filled: the process never holds more than one window."""
    path = Path(path)
    dtype = np.dtype(dtype)
    np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape).flush()  # header + sparse file
    offset = _header(path)[3]
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    per_window = max(1, WINDOW_BYTES // max(1, row_bytes))
    it = iter(rows)
    for start in range(0, shape[0], per_window):
        n = min(per_window, shape[0] - start)
        win = np.memmap(path, dtype=dtype, mode="r+", offset=offset + start * row_bytes, shape=(n,) + tuple(shape[1:]))
        for i in range(n):
            win[i] = next(it)
        win.flush()
        del win  # unmapped: its pages leave this process's resident set
