"""The frozen split: a manifest of every image of train / val / test by relative path and sha256.

The test set has exactly the study's supports (360 images); the rest splits about 70:20 into train
and val, stratified, with a fixed seed. Byte-identical and near-duplicate photos are grouped so that
a group never straddles two splits; a photo filed under two classes is excluded.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from edgeflower.data.check import NEAR_DUP_BITS, NEAR_DUP_CORR, near_duplicate_pairs, scan
from edgeflower.data.source import IMAGE_SUFFIXES
from edgeflower.errors import DataError
from edgeflower.util.files import atomic_write_text, sha256_file

TEST_SUPPORTS = {"daisy": 63, "dandelion": 90, "roses": 60, "sunflowers": 70, "tulips": 77}
SEED = 1337
VAL_FRACTION = 2 / 9  # of what is left after the test set: train:val about 70:20
SPLITS = ("train", "val", "test")
FORMAT = "edgeflower-split/1"


def packaged_manifest_path() -> Path:
    return Path(__file__).with_name("flower_photos_split.json")


@dataclass(frozen=True)
class Manifest:
    classes: list[str]
    splits: dict[str, list[tuple[str, str]]]  # split -> [(relative path, sha256)]
    excluded: list[dict]
    seed: int
    sha256: str  # of the canonical JSON, recorded in every run's config
    raw: dict

    def items(self, split: str) -> list[tuple[str, str]]:
        if split not in self.splits:
            raise DataError(f"unknown split {split!r}; valid: {', '.join(self.splits)}")
        return self.splits[split]

    def label_of(self, rel: str) -> int:
        return self.classes.index(rel.split("/", 1)[0])


def _canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def manifest_from_dict(raw: dict) -> Manifest:
    splits = {k: [tuple(x) for x in raw["splits"][k]] for k in SPLITS}
    return Manifest(raw["classes"], splits, raw.get("excluded", []), raw.get("seed", SEED),
                    hashlib.sha256(_canonical(raw)).hexdigest(), raw)


MIN_PER_CLASS = 10  # an automatic split needs at least 1 test, 2 validation and 7 training photos per class


def class_folders(root: str | os.PathLike) -> list[str]:
    """The class names of a dataset folder: its subfolders (hidden ones left out)."""
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))


def is_packaged_dataset(root: str | os.PathLike, packaged: Manifest | None = None) -> bool:
    """Whether ``root`` has flower_photos' classes, so that the frozen split (``packaged``, loaded when not given)
    applies to it."""
    return class_folders(root) == sorted((packaged or load_manifest()).classes)


def auto_split(root: str | os.PathLike, seed: int = SEED, show_progress: bool = True) -> dict:
    """A split for a dataset that is not flower_photos: stratified and seeded, duplicates kept within one split,
    about 10% of each class for test and 2/9 of the rest for validation, 70:20:10 (as `edgeflower data split --out`)."""
    m = make_split(root, seed=seed, test_supports={}, show_progress=show_progress)
    empty = sorted(set(class_folders(root)) - set(m["classes"]))
    if empty:
        raise DataError(f"class folder(s) with no readable images: {', '.join(empty)} in {root}: add images or "
                        "remove the folder")
    per_class = Counter(rel.split("/", 1)[0] for k in SPLITS for rel, _ in m["splits"][k])
    too_few = {c: per_class[c] for c in m["classes"] if per_class[c] < MIN_PER_CLASS}
    if too_few:
        raise DataError("too few usable photos to split into train, validation and test: "
                        + ", ".join(f"{c} has {n}" for c, n in sorted(too_few.items()))
                        + f"; add photos (at least {MIN_PER_CLASS} per class, a few dozen is better) or pass your own "
                          "--split")
    return m


def load_manifest(path: str | os.PathLike | None = None) -> Manifest:
    path = Path(path) if path else packaged_manifest_path()
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise DataError(f"split manifest {path} not found: run `edgeflower data split --out {path}`") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"split manifest {path} is not valid JSON ({exc}): regenerate it with "
                        "`edgeflower data split`") from exc
    if raw.get("format") != FORMAT:
        raise DataError(f"{path} is not an edgeflower split manifest (format {raw.get('format')!r}, "
                        f"expected {FORMAT!r})")
    return manifest_from_dict(raw)


def split_items(manifest: Manifest, split: str, limit_per_class: int | None = None) -> list[tuple[str, int, str]]:
    """[(relative path, label index, sha256)] of one split, optionally the first N per class."""
    out, seen = [], defaultdict(int)
    for rel, digest in manifest.items(split):
        y = manifest.label_of(rel)
        if limit_per_class is not None and seen[y] >= limit_per_class:
            continue
        seen[y] += 1
        out.append((rel, y, digest))
    return out


def verify_files(root: str | os.PathLike, items: list[tuple[str, int, str]] | list[tuple[str, str]]) -> None:
    """Check that every listed file exists with the listed sha256; name the missing and changed ones."""
    root = Path(root)
    missing, changed = [], []
    for it in items:
        rel, digest = it[0], it[-1]
        p = root / rel
        if not p.is_file():
            missing.append(rel)
        elif sha256_file(p) != digest:
            changed.append(rel)
    if missing or changed:
        def few(xs: list[str]) -> str:
            return ", ".join(xs[:5]) + (f" and {len(xs) - 5} more" if len(xs) > 5 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({few(missing)})")
        if changed:
            parts.append(f"{len(changed)} changed ({few(changed)})")
        raise DataError(
            f"{root} does not match the split manifest: " + "; ".join(parts) + ". Restore the original "
            "flower_photos files (re-download), or for your own dataset make a manifest with "
            "`edgeflower data split --data DIR --out split.json` and pass --split split.json"
        )


class _UnionFind:
    def __init__(self, n: int):
        self.p = list(range(n))

    def find(self, i: int) -> int:
        while self.p[i] != i:
            self.p[i] = self.p[self.p[i]]
            i = self.p[i]
        return i

    def union(self, a: int, b: int) -> None:
        self.p[self.find(a)] = self.find(b)


def make_split(root: str | os.PathLike, seed: int = SEED, test_supports: dict[str, int] | None = None,
               show_progress: bool = True) -> dict:
    """Build the manifest dict for the dataset at ``root`` (deterministic for a given seed and files)."""
    files = [f for f in scan(root, show_progress) if Path(f.path).suffix.lower() in IMAGE_SUFFIXES]
    excluded = [{"path": f.path, "sha256": f.sha256, "reason": f"unreadable: {f.error}"} for f in files if f.error]
    good = sorted((f for f in files if not f.error), key=lambda f: f.path)
    classes = sorted({f.cls for f in good})
    if len(classes) < 2:
        raise DataError(f"{root} has {len(classes)} class(es) with readable images; need at least 2")
    if test_supports is None:
        test_supports = TEST_SUPPORTS if set(classes) == set(TEST_SUPPORTS) else None
    # photos filed under several classes: exclude every copy
    by_sha: dict[str, list] = defaultdict(list)
    for f in good:
        by_sha[f.sha256].append(f)
    multi = {s for s, g in by_sha.items() if len({f.cls for f in g}) > 1}
    for s in sorted(multi):
        for f in by_sha[s]:
            excluded.append({"path": f.path, "sha256": s,
                             "reason": "filed under several classes: " + ", ".join(sorted({g.cls for g in by_sha[s]}))})
    good = [f for f in good if f.sha256 not in multi]
    # groups: identical bytes or near-identical pixels, within a class
    uf = _UnionFind(len(good))
    first: dict[str, int] = {}
    for i, f in enumerate(good):
        if f.sha256 in first:
            uf.union(i, first[f.sha256])
        else:
            first[f.sha256] = i
    for i, j, _ in near_duplicate_pairs(good):
        uf.union(i, j)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(good)):
        groups[uf.find(i)].append(i)
    # a near-duplicate group that spans classes is ambiguous: exclude it like a cross-class duplicate
    per_class: dict[str, list[list[int]]] = defaultdict(list)
    for members in groups.values():
        cls = {good[i].cls for i in members}
        if len(cls) > 1:
            for i in members:
                excluded.append({"path": good[i].path, "sha256": good[i].sha256,
                                 "reason": "near-duplicate filed under several classes: " + ", ".join(sorted(cls))})
            continue
        per_class[cls.pop()].append(sorted(members))
    rng = random.Random(seed)
    splits: dict[str, list[tuple[str, str]]] = {k: [] for k in SPLITS}
    for c in classes:
        gs = sorted(per_class[c], key=lambda m: good[m[0]].path)
        rng.shuffle(gs)
        n = sum(len(g) for g in gs)
        n_test = test_supports.get(c, 0) if test_supports else round(n * 0.1)
        if n_test > n:
            raise DataError(f"class {c} has {n} usable images, fewer than the {n_test} the test split needs")
        exact = bool(test_supports)  # the frozen split's supports are exact; an automatic split is "about"
        test, rest = _take(gs, n_test, exact)
        n_val = round(sum(len(g) for g in rest) * VAL_FRACTION)
        val, train = _take(rest, n_val, exact)
        for name, chosen in (("test", test), ("val", val), ("train", train)):
            splits[name].extend((good[i].path, good[i].sha256) for g in chosen for i in g)
    for k in SPLITS:
        splits[k].sort()
    return {
        "format": FORMAT,
        "dataset": Path(root).name,
        "seed": seed,
        "classes": classes,
        "test_supports": test_supports,
        "val_fraction_of_rest": VAL_FRACTION,
        "near_duplicates": {"dhash_max_bits": NEAR_DUP_BITS, "min_thumbnail_corr": NEAR_DUP_CORR},
        "counts": {k: len(v) for k, v in splits.items()},
        "excluded": sorted(excluded, key=lambda e: e["path"]),
        "splits": {k: [list(x) for x in v] for k, v in splits.items()},
    }


def _take(groups: list[list[int]], n: int, exact: bool = True) -> tuple[list[list[int]], list[list[int]]]:
    """Pick whole groups totalling ``n`` members (singletons fill the remainder): exactly ``n`` (the frozen
    split's fixed test supports), or as close to ``n`` as whole groups allow without going over (a split of a
    user's folder, where "about 10%" is the promise and duplicate groups may all be large)."""
    chosen, rest, left = [], [], n
    for g in groups:
        if 0 < len(g) <= left:
            chosen.append(g)
            left -= len(g)
        else:
            rest.append(g)
    if left and exact:
        raise DataError(f"cannot pick exactly {n} images without splitting a duplicate group")
    return chosen, rest


def write_manifest(manifest: dict, path: str | os.PathLike) -> Path:
    """Write the manifest readably but compactly: one [path, sha256] pair per line."""
    head = {k: v for k, v in manifest.items() if k != "splits"}
    text = json.dumps(head, indent=1)[:-2] + ',\n "splits": {\n'
    blocks = []
    for k in SPLITS:
        rows = ",\n".join("  " + json.dumps(x, separators=(",", ":")) for x in manifest["splits"][k])
        blocks.append(f' "{k}": [\n{rows}\n ]')
    text += ",\n".join(blocks) + "\n}}\n"
    return atomic_write_text(path, text)


def diff_manifests(a: dict, b: dict) -> list[str]:
    """Human-readable differences between two manifests (empty when they are the same split)."""
    out = []
    if a["classes"] != b["classes"]:
        out.append(f"classes differ: {a['classes']} vs {b['classes']}")
    for k in SPLITS:
        sa, sb = {tuple(x) for x in a["splits"][k]}, {tuple(x) for x in b["splits"][k]}
        if sa != sb:
            out.append(f"{k}: {len(sa - sb)} only in the first, {len(sb - sa)} only in the second")
    return out
