"""export_report.md: the gate's rule, one row per artifact, each artifact's unknown rule and its details."""

from __future__ import annotations

from pathlib import Path

from edgeflower.exporting import ood
from edgeflower.exporting.unknown import NEVER_KEPT


def render_table(report: dict) -> str:
    """export_report.md: the gate's rule, one table row per artifact, then each one's unknown rule and details."""
    lines = [
        f"# Export report: {report['source']}",
        "",
        f"Keras float test accuracy: {report['keras_test_accuracy'] * 100:.2f}% on {report['test_images']} images. "
        f"The gate decides on the {report.get('validation_images', '?')} validation images: an artifact fails when "
        f"its drop is clearly over --max-drop {report['max_drop_pts']:g} (more than one standard error of the paired "
        "drop over it) or it changes clearly over 10% of the answers; float artifacts must also agree with Keras "
        "on every test answer. The test figures are reported, not decided on.",
        "",
        "| artifact | format | size (KiB) | val drop (pts) | less 1 s.e. | test acc | test drop (pts) | "
        "test agree | x float | passed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    lines += [_table_row(a) for a in report["artifacts"]]
    lines += [f"warning: {a['speed']['warning']}" for a in report["artifacts"] if (a.get("speed") or {}).get("warning")]
    lines.append("x float: an int8 artifact's speed-up over its float sibling, timed here at one thread")
    lines.append("")
    for a in report["artifacts"]:
        lines += _unknown_lines(a)
    lines.append("")
    for a in report["artifacts"]:
        lines += _detail_lines(a)
    return "\n".join(lines) + "\n"


def _table_row(a: dict) -> str:
    g = a.get("gate") or {}
    remedy = "" if a.get("remedy", "default") == "default" else f" ({a['remedy']})"
    speed = (a.get("speed") or {}).get("speedup_vs_float")
    return (f"| {Path(a['path']).name} | {a['format']} | {a['size_bytes'] / 1024:,.0f} | "
            f"{g.get('drop_pts', float('nan')):+.2f} | {g.get('drop_lower_pts', float('nan')):+.2f} | "
            f"{a['accuracy'] * 100:.2f}% | {a['drop_pts']:+.2f} | {a['argmax_agreement'] * 100:.2f}% | "
            f"{f'{speed:.2f}x' if speed else '-'} | "
            f"{'yes' + remedy if a['passed'] else 'NO: ' + a['reason']} |")


def _unknown_lines(a: dict) -> list[str]:
    """The artifact's unknown rule, what it does on the test photos, and its budget on new photos."""
    u = a.get("unknown") or {}
    if "test" not in u:
        return []
    rule = (f"similarity to the {ood.ordinal(u.get('neighbours', 1))} training photo"
            f"{' of the predicted class' if u.get('per_class') else ''} "
            f">= {u['similarity_threshold']:.4f}"
            if "similarity_threshold" in u else f"confidence >= {u.get('confidence_threshold', 0):.4f}")
    if u.get("similarity_threshold", 0) <= NEVER_KEPT:
        rule = ("no similarity threshold: the flowers the background class takes spend the whole budget on val, so "
                "only the background class answers unknown")
    lines = [f"- unknown, {Path(a['path']).name}: {rule} (calibrated on val); test photos answered unknown "
             f"{u['test']['answered_unknown'] * 100:.1f}%, test accuracy counting them wrong "
             f"{u['test']['accuracy_with_unknown'] * 100:.2f}%"
             + (f"; background photos answered unknown {u['test']['background_answered_unknown'] * 100:.1f}%"
                if u["test"].get("background_answered_unknown") is not None else "")]
    t = u["test"]
    if t.get("flower_accuracy_without_rejection") is not None:
        lines.append(f"  - the test photos of the classes: {t['flower_accuracy_without_rejection'] * 100:.2f}% without "
                     f"any unknown answer -> {t['flower_accuracy_with_unknown'] * 100:.2f}% counting unknown as wrong "
                     f"({t['flowers_answered_background'] * 100:.1f}% taken by the background class)")
    sh = (u.get("calibration") or {}).get("split_half")
    if sh:
        asked = (u.get("calibration") or {}).get("budget_asked")
        if asked is not None and abs(asked * 100 - sh["budget_pts"]) > 1e-9:
            lines.append(f"  - the {asked * 100:g}-point budget was lowered to {sh['budget_pts']:.2g}: with "
                         f"{u['calibration']['n']} validation photos, it went over {sh['limit_pts']:g} point "
                         "on new photos too often")
        lines.append(f"  - the {sh['budget_pts']:.2g}-point budget on new photos (validation split halves, "
                     f"{sh['rounds']} splits): median {sh['median_pts']:.2f} points, 90th percentile "
                     f"{sh['p90_pts']:.2f}; over {sh['limit_pts']:g} point in {sh['share_over_limit'] * 100:.0f}% "
                     "of the splits")
    return lines


def _detail_lines(a: dict) -> list[str]:
    """The artifact's hash, per-class deltas, changed answers, the remedies tried and the float layers' costs."""
    deltas = ", ".join(f"{c} {d:+.1f}" for c, d in a["per_class_delta_pts"].items())
    lines = [f"- {Path(a['path']).name}: sha256 `{a['sha256'][:16]}...`, per-class delta (pts): {deltas}"]
    for ch in a["changed"][:10]:
        lines.append(f"  - changed: {ch['path']} (true {ch['true']}): Keras {ch['keras']} -> {ch['artifact']}")
    for at in a.get("attempts", []):
        lines.append(f"  - tried {at['remedy']}: validation drop {at['val_drop_pts']:+.2f} pts (less one s.e. "
                     f"{at['val_drop_lower_pts']:+.2f}), test {at['accuracy'] * 100:.2f}% "
                     f"({'pass' if at['passed'] else 'fail'})")
    steps = (a.get("options") or {}).get("steps")
    if steps:  # the accuracy-controlled remedy: what each layer returned to float bought and cost
        base = steps[0]["p50_ms_1_thread"]
        for st in steps[1:]:
            lines.append(f"  - float layer {st['float_layers']}: `{st['layer']}`: validation drop "
                         f"{st['val_drop_pts']:+.2f} pts, one-thread p50 {st['p50_ms_1_thread']:.2f} ms "
                         f"({st['p50_ms_1_thread'] / base:.2f}x of all-int8)")
    return lines
