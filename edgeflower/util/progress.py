"""Progress on long work: a bar on a terminal, a plain line every 15 s elsewhere, nothing when turned off."""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_OFF = contextvars.ContextVar("edgeflower_progress_off", default=False)


@contextlib.contextmanager
def bars_off() -> Iterator[None]:
    """No progress output inside the block (the library's default: a script or a notebook asks for it)."""
    token = _OFF.set(True)
    try:
        yield
    finally:
        _OFF.reset(token)

LINE_EVERY_S = 15.0  # without a terminal: one progress line at most this often ($EDGEFLOWER_PROGRESS_EVERY)


def progress(it: Iterable[T], total: int | None = None, desc: str = "", disable: bool | None = None) -> Iterable[T]:
    """Progress on stderr for work a person waits for: a bar on a terminal (tqdm when installed, else a counter);
    under nohup, a pipe, systemd or CI, a plain line every ``LINE_EVERY_S`` seconds (EDGEFLOWER_PROGRESS_EVERY)
    and one at the end.
    EDGEFLOWER_NO_PROGRESS=1 turns it off."""
    if os.environ.get("EDGEFLOWER_NO_PROGRESS") == "1" or disable or _OFF.get():
        return it
    if disable is None and not sys.stderr.isatty():
        return _line_progress(it, total, desc)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _plain_progress(it, total, desc)
    return tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True)


def _line_progress(it: Iterable[T], total: int | None, desc: str) -> Iterator[T]:

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
