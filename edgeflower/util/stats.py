"""Statistics in fixed memory: a reservoir sample of a stream and its percentiles."""

from __future__ import annotations

import random
from typing import Iterable, Iterator


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
