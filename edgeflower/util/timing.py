"""How edgeflower compares timings on a noisy machine: alternating rounds against a reference, the median of the
per-round ratios.

Each round measures every candidate once; the order alternates (ABC, CBA, ...) or rotates (ABC, BCA, CAB, ...) from
round to round, so that drift, warm caches and other jobs on the machine fall on every candidate alike. A figure is
then the median over rounds, and a comparison is the median of the ratios taken within each round, never a ratio of
figures measured at different times. The benchmarks and `edgeflower bench`'s documentation rely on this one method.
"""

from __future__ import annotations

import statistics
from typing import Callable, Hashable, Iterable, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


def order(names: list[K], round_index: int, how: str = "alternate") -> list[K]:
    """The order of round `round_index`: 'alternate' reverses every other round, 'rotate' shifts by one."""
    if how == "alternate":
        return list(names) if round_index % 2 == 0 else list(names)[::-1]
    if how == "rotate":
        k = round_index % len(names)
        return list(names[k:]) + list(names[:k])
    raise ValueError(f"unknown order {how!r}: use 'alternate' or 'rotate'")


def interleaved(measures: dict[K, Callable[[], T]], rounds: int, how: str = "alternate",
                after_round: Callable[[int, dict[K, list[T]]], None] | None = None) -> dict[K, list[T]]:
    """Run every measure once per round in the round's order; returns each measure's values, one per round."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    names = list(measures)
    values: dict[K, list[T]] = {k: [] for k in names}
    for r in range(rounds):
        for name in order(names, r, how):
            values[name].append(measures[name]())
        if after_round is not None:
            after_round(r, values)
    return values


def round_ratios(values: Iterable[float], reference: Iterable[float]) -> list[float]:
    """Per-round ratios of a candidate's values to the reference's values of the same rounds."""
    values, reference = list(values), list(reference)
    if len(values) != len(reference):
        raise ValueError(f"{len(values)} values against {len(reference)} reference values: not the same rounds")
    return [a / b for a, b in zip(values, reference)]


def median_ratio(values: Iterable[float], reference: Iterable[float]) -> float:
    """The comparison figure: the median of the per-round ratios (not the ratio of the medians)."""
    return statistics.median(round_ratios(values, reference))


def quartiles(xs: Iterable[float]) -> list[float]:
    """First and third quartiles (the spread of per-round ratios); a single value is its own spread."""
    xs = list(xs)
    if len(xs) < 2:
        return [xs[0], xs[0]]
    q1, _, q3 = statistics.quantiles(xs, n=4)
    return [q1, q3]
