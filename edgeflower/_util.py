"""Small helpers shared by every layer: atomic writes, hashing, progress, JSON. Standard library only."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, TypeVar

T = TypeVar("T")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it onto ``dest`` only if the block succeeds.

    A failure (or Ctrl-C) removes the temporary file and leaves any existing ``dest`` untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix or ".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            # mkstemp creates 0600; give the artifact the permissions a normal file gets
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return Path(dest)


def atomic_write_text(dest: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(dest, text.encode("utf-8"))


def write_json(dest: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(dest, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    # numpy scalars/arrays without importing numpy here
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


LINE_EVERY_S = 15.0  # without a terminal: one progress line at most this often ($EDGEFLOWER_PROGRESS_EVERY)


def progress(it: Iterable[T], total: int | None = None, desc: str = "", disable: bool | None = None) -> Iterable[T]:
    """Progress on stderr for work a person waits for: a bar on a terminal (tqdm when installed, else a counter);
    under nohup, a pipe, systemd or CI, a plain line every ``LINE_EVERY_S`` seconds (EDGEFLOWER_PROGRESS_EVERY)
    and one at the end.
    EDGEFLOWER_NO_PROGRESS=1 turns it off."""
    if os.environ.get("EDGEFLOWER_NO_PROGRESS") == "1" or disable:
        return it
    if disable is None and not sys.stderr.isatty():
        return _line_progress(it, total, desc)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _plain_progress(it, total, desc)
    return tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _line_progress(it: Iterable[T], total: int | None, desc: str) -> Iterator[T]:
    import time

    try:
        every = float(os.environ.get("EDGEFLOWER_PROGRESS_EVERY", LINE_EVERY_S))
    except ValueError:
        every = LINE_EVERY_S
    t0 = last = time.monotonic()
    n = 0

    def line(now: float, final: bool = False) -> None:
        share = f" ({n / total * 100:.0f}%)" if total else ""
        sys.stderr.write(f"{desc}: {n}/{total if total else '?'}{share}, {now - t0:.0f} s"
                         + (" (done)" if final else "") + "\n")
        sys.stderr.flush()

    for n, x in enumerate(it, 1):
        yield x
        now = time.monotonic()
        if now - last >= every and n != total:  # the last item gets the final line
            line(now)
            last = now
    now = time.monotonic()
    if now - t0 >= min(1.0, every):  # a last line for work that took long enough to wonder about
        line(now, final=True)


def _plain_progress(it: Iterable[T], total: int | None, desc: str) -> Iterator[T]:
    n = 0
    for n, x in enumerate(it, 1):
        if n % 50 == 0 or n == total:
            sys.stderr.write(f"\r{desc} {n}/{total if total else '?'}")
            sys.stderr.flush()
        yield x
    sys.stderr.write("\n")


def cache_dir() -> Path:
    """User cache directory: $EDGEFLOWER_CACHE, else $XDG_CACHE_HOME/edgeflower, else ~/.cache/edgeflower."""
    env = os.environ.get("EDGEFLOWER_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edgeflower"


class Reservoir:
    """A uniform sample of at most ``size`` values from a stream of any length (Vitter's algorithm R), with the
    count of values seen: percentiles of a stream in fixed memory, for loops that run for months.

    Below ``size`` values it holds them all, so short runs report exact percentiles. Seeded, so a rerun over the
    same stream reports the same figures."""

    def __init__(self, size: int = 4096, seed: int = 0):
        if size < 1:
            raise ValueError(f"reservoir size must be at least 1, got {size}")
        self.size = size
        self.count = 0
        self._values: list[float] = []
        self._rng = random.Random(seed)

    def append(self, value: float) -> None:
        self.count += 1
        if len(self._values) < self.size:
            self._values.append(value)
            return
        j = self._rng.randrange(self.count)  # keep the new value with probability size / count
        if j < self.size:
            self._values[j] = value

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[float]:
        return iter(self._values)


def percentiles(values: Iterable[float], qs: Iterable[float] = (50, 90, 95, 99)) -> dict[str, float]:
    """Nearest-rank-interpolated percentiles without numpy (numpy's default linear method)."""
    xs = sorted(values)
    out: dict[str, float] = {}
    if not xs:
        return {f"p{int(q)}": float("nan") for q in qs}
    for q in qs:
        pos = (len(xs) - 1) * q / 100.0
        lo = int(pos)
        hi = min(lo + 1, len(xs) - 1)
        out[f"p{int(q)}"] = xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
    return out
