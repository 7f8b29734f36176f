"""The on-disk image store: reads like the array it holds, and memory that does not grow with the images."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgeflower.data import store
from edgeflower.data.store import ImageStore, join_rows, write_npy


@pytest.fixture
def stored(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "WINDOW_BYTES", 500)  # many small windows: the seams get exercised
    a = np.random.default_rng(0).integers(0, 256, (37, 6, 5, 3), dtype=np.uint8)
    write_npy(tmp_path / "a.npy", a.shape, np.uint8, iter(a))
    return a, ImageStore(tmp_path / "a.npy")


def test_written_file_is_a_normal_npy(stored, tmp_path):
    a, _ = stored
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), a)


@pytest.mark.parametrize("key", [0, 36, -1, slice(2, 9), slice(None), slice(30, 99), slice(None, None, 3),
                                 slice(9, 2, -2), [5, 1, 1, 36, 0], [[1, 2], [3, 4]], [], (slice(1, 4), 0), (2, 1)])
def test_store_indexes_like_numpy(stored, key):
    a, s = stored
    k = np.array(key, dtype=np.int64) if isinstance(key, list) else key
    np.testing.assert_array_equal(s[k], a[k])


def test_store_masks_and_bounds(stored):
    a, s = stored
    mask = a[:, 0, 0, 0] > 120
    np.testing.assert_array_equal(s[mask], a[mask])
    np.testing.assert_array_equal(np.asarray(s), a)
    assert len(s) == 37 and s.shape == a.shape and s.dtype == np.uint8
    for bad in (37, -38, np.array([0, 37])):
        with pytest.raises(IndexError):
            s[bad]
    with pytest.raises(IndexError):
        s[np.array([1.5])]


def test_joined_rows_read_across_the_seam(stored):
    a, s = stored
    b = np.random.default_rng(1).integers(0, 256, (4, 6, 5, 3), dtype=np.uint8)
    r, ab = join_rows([s, b]), np.concatenate([a, b])
    assert len(r) == 41
    for k in (40, -1, slice(30, 41), np.array([40, 0, 38, 5, 5]), ab[:, 0, 0, 0] > 120):
        np.testing.assert_array_equal(r[k], ab[k])
    assert isinstance(join_rows([a, b]), np.ndarray)  # all in memory: a plain concatenation


def test_truncated_store_is_refused(stored, tmp_path):
    _, s = stored
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "b.npy").write_bytes(data[:-7])
    with pytest.raises(ValueError, match="truncated"):
        ImageStore(tmp_path / "b.npy")


def test_load_split_decodes_into_a_store_and_redecodes_a_broken_cache(synth_data, synth_split):
    from edgeflower.data.arrays import load_split
    from edgeflower.data.split import load_manifest

    m = load_manifest(synth_split)
    first = load_split(synth_data, m, "val", 24)
    assert isinstance(first.x, ImageStore)
    cache = first.x.path
    want = np.asarray(first.x)
    again = load_split(synth_data, m, "val", 24)
    assert isinstance(again.x, ImageStore) and again.x.path == cache
    np.testing.assert_array_equal(np.asarray(again.x), want)
    with open(cache, "r+b") as f:  # a cut-off cache (a full disk, a killed process) is decoded again
        f.truncate(cache.stat().st_size - 100)
    fixed = load_split(synth_data, m, "val", 24)
    np.testing.assert_array_equal(np.asarray(fixed.x), want)
    assert ImageStore(cache).shape == want.shape


def test_training_batches_are_the_same_from_the_store(stored):
    tf = pytest.importorskip("tensorflow")
    from edgeflower.training.loop import _dataset

    a, s = stored
    y = np.arange(len(a)) % 3
    got = [(np.asarray(xb), np.asarray(yb)) for xb, yb in _dataset(tf, s, y, 3, 8, True, seed=5)]
    want = [(np.asarray(xb), np.asarray(yb)) for xb, yb in _dataset(tf, a, y, 3, 8, True, seed=5)]
    assert len(got) == len(want) == 5
    for (gx, gy), (wx, wy) in zip(got, want):
        np.testing.assert_array_equal(gx, wx)
        np.testing.assert_array_equal(gy, wy)
    # and they are the shuffled images with their own labels
    seen = np.concatenate([gx for gx, _ in got]).astype(np.uint8)
    order = [int(np.nonzero((a == img).all(axis=(1, 2, 3)))[0][0]) for img in seen]
    assert sorted(order) == list(range(len(a))) and order != list(range(len(a)))
    np.testing.assert_array_equal(np.concatenate([gy for _, gy in got]), np.eye(3)[y[order]])


def test_writing_and_reading_a_large_store_keeps_memory_flat(tmp_path):
    """Writing 256 MB of images into the store and reading all of them back in shuffled batches raises the peak
    resident set by far less than the images' size (an array in memory, or a mapping of the whole file, would
    add all of it). In its own process, so that the peak is this work's."""
    code = textwrap.dedent(f"""
        import resource, numpy as np
        from edgeflower.data.store import ImageStore, write_npy
        rows, shape = 2048, (2048, 128, 128, 8)   # 256 MiB
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        block = np.random.default_rng(0).integers(0, 256, shape[1:], dtype=np.uint8)
        write_npy({str(tmp_path / 'big.npy')!r}, shape, np.uint8, (block for _ in range(rows)))
        s = ImageStore({str(tmp_path / 'big.npy')!r})
        total = 0
        for idx in np.array_split(np.random.default_rng(1).permutation(rows), 64):
            total += int(s[idx][:, 0, 0, 0].sum())
        assert total == rows * int(block[0, 0, 0])
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    grown = int(out.stdout.split()[-1])
    assert grown < 96 * 2**20, f"peak RSS grew by {grown / 2**20:.0f} MiB for 256 MiB of images"
