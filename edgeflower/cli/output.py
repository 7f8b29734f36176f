"""What the commands print once the library has returned: one function per result, text in, text out.

The CLI (edgeflower/cli/__init__.py) parses, calls one library function and echoes what these return, so the wording of
every report lives here and can be read, and tested, without click. Results are the library's plain dicts and
dataclasses; nothing here imports a subpackage.
"""

from __future__ import annotations


def data_check(root, d: dict) -> str:
    """``CheckReport.to_dict()`` of ``root``: counts, unreadable files, conversions, duplicates, near-duplicates."""
    lines = [f"dataset {root}: {d['total']} readable images in {len(d['counts'])} classes"]
    lines += [f"  {c:<12} {n:>5}" for c, n in d["counts"].items()]
    lines.append(f"unreadable files: {len(d['unreadable'])}")
    lines += [f"  {u['path']}: {u['error']}" for u in d["unreadable"]]
    if d["converted_modes"]:
        lines.append("converted on load: " + ", ".join(f"{k} x{v}" for k, v in d["converted_modes"].items()))
    lines.append(f"byte-identical duplicate groups: {len(d['identical_duplicates'])}")
    lines += ["  " + " = ".join(g) + ("  [filed under several classes]" if g in d["cross_class_duplicates"] else "")
              for g in d["identical_duplicates"]]
    lines.append(f"near-duplicate pairs: {len(d['near_duplicates'])}")
    lines += [f"  {p['a']} ~ {p['b']} (similarity {p['similarity']:.3f})" for p in d["near_duplicates"]]
    return "\n".join(lines)


def data_split(r: dict) -> str:
    """``api.split_data``'s result: the counts, and where it went or that it is the frozen split."""
    lines = ["regenerated split: " + ", ".join(f"{k} {v}" for k, v in r["counts"].items())
             + f"; excluded {r['excluded']}"]
    if r["written"]:
        lines.append(f"manifest written to {r['written']}")
    else:
        lines.append(f"identical to the frozen split (manifest sha256 {r['frozen_sha256'][:16]}...)")
    return "\n".join(lines)


def data_clean(r: dict, out) -> str:
    lines = [f"identical duplicate groups {len(r['identical_duplicates'])}, near-duplicate pairs "
             f"{len(r['near_duplicates'])}, filed under two classes {len(r['cross_class_duplicates'])}"]
    lines += [f"{k}: {v}" for k, v in r["flagged_counts"].items()]
    lines.append(f"out-of-fold accuracy {r['out_of_fold_accuracy'] * 100:.2f}%; {len(r['exclude'])} training photos "
                 f"listed in {out}/exclude.txt; contact sheet: {r['contact_sheet']}; report: {out}/clean_report.json")
    return "\n".join(lines)


def data_review(r: dict, saved) -> str:
    return (f"{r['frames']} frames: " + ", ".join(f"{g} {n}" for g, n in r["groups"].items()) + "\n"
            f"look at {r['html']} (or {r['png']}); move the frames you recognise into {saved}/<class>/, then: "
            f"edgeflower data add {saved} --into DATASET")


def data_add(r, into) -> str:
    """An ``AddReport``: what was copied, skipped, not copied and cleaned up, and the next command."""
    lines = [f"added {sum(r.added.values())} photos to {into}: " + ", ".join(f"{c} {n}" for c, n in r.added.items())
             + (f"; {r.renamed} renamed (the name was taken)" if r.renamed else "")]
    lines += [f"already in the dataset, skipped: {src} (same bytes as {dup})" for src, dup in r.duplicates]
    lines += [f"not copied: {why}" if src in why else f"not copied: {src}: {why}" for src, why in r.not_images]
    if r.stale:
        lines.append(f"removed {r.stale} partial copies left by an interrupted earlier run")
    lines.append(f"train on it: edgeflower train --data {into}")
    return "\n".join(lines)


def train(model: str, r) -> str:
    m = r.metrics
    o = r.config.get("outlier_photos")
    return (f"{model}: test accuracy {m['test']['accuracy'] * 100:.2f}% (val {m['val']['accuracy'] * 100:.2f}%, "
            f"train {m['train']['accuracy'] * 100:.2f}%) in {r.config['train_seconds']:.0f} s -> {r.path}"
            + (f"\noutlier photos in the background class: {o['train'] + o['val']} ({o['train']} train, {o['val']} "
               "val)" if o else ""))


def evaluation(m: dict, subset: str) -> str:
    lines = [f"{subset}: accuracy {m['accuracy'] * 100:.2f}% loss {m['loss']:.4f} macro-F1 {m['macro_f1']:.3f} "
             f"({m['n']} images)"]
    lines += [f"  {c:<12} P {v['precision']:.3f}  R {v['recall']:.3f}  F1 {v['f1']:.3f}  n {v['support']}"
              for c, v in m["per_class"].items()]
    return "\n".join(lines)
