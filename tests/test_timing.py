"""edgeflower.util.timing: the one latency method (alternating rounds, the median of per-round ratios)."""

from __future__ import annotations

import pytest

from edgeflower.util import timing


def test_orders_alternate_and_rotate():
    names = ["a", "b", "c"]
    assert [timing.order(names, r) for r in range(3)] == [names, names[::-1], names]
    assert [timing.order(names, r, "rotate") for r in range(3)] == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    with pytest.raises(ValueError):
        timing.order(names, 0, "shuffle")


def test_interleaved_runs_each_measure_once_per_round_in_the_round_order():
    calls = []
    measures = {k: (lambda k=k: calls.append(k) or len(calls)) for k in ("ref", "x")}
    seen = []
    values = timing.interleaved(measures, 4, after_round=lambda r, v: seen.append((r, len(v["x"]))))
    assert calls == ["ref", "x", "x", "ref", "ref", "x", "x", "ref"]
    assert values == {"ref": [1, 4, 5, 8], "x": [2, 3, 6, 7]}
    assert seen == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_ratio_is_the_median_of_per_round_ratios_not_of_medians():
    # a machine that slows down over the rounds: within each round x takes half the reference's time
    ref = [10.0, 20.0, 40.0, 80.0, 160.0]
    x = [5.0, 10.0, 20.0, 40.0, 80.0]
    assert timing.median_ratio(x, ref) == 0.5
    # the same medians, but paired otherwise: the ratio of medians would still say 0.5
    assert timing.median_ratio([10.0, 20.0, 40.0, 5.0, 80.0], ref) == 1.0
    with pytest.raises(ValueError, match="not the same rounds"):
        timing.round_ratios([1.0], [1.0, 2.0])
    assert timing.quartiles([1.0]) == [1.0, 1.0]
