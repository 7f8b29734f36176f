"""Mutation check: break the code in places the tests must guard, one at a time, and expect a failure from each.

    .venv/bin/python scripts/mutants.py            # every mutant (about 10 minutes on 2 cores)
    .venv/bin/python scripts/mutants.py gate kth   # some of them

Each mutant replaces one exact piece of source text (it must occur once), runs the tests named for it, and
restores the file whatever happens. A mutant whose tests still pass is reported and makes the exit code 1.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name: (file, original text, mutated text, pytest arguments)
MUTANTS = {
    "gate": ("edgeflower/exporting/gate.py", "if lower * 100 > max_drop_pts + 1e-9:", "if False:",
             ["tests/test_gate.py", "tests/test_export.py", "-k", "clearly_worse or gate_fails"]),
    "gate-on-the-estimate": ("edgeflower/exporting/gate.py", "if lower * 100 > max_drop_pts + 1e-9:",
                             "if drop * 100 > max_drop_pts + 1e-9:", ["tests/test_gate.py", "-k", "within_the_noise"]),
    "gate-ignores-changed-answers": ("edgeflower/exporting/gate.py", "if changed_lower > max_changed:", "if False:",
                                     ["tests/test_gate.py", "-k", "many_changed"]),
    "budget-never-lowered": ("edgeflower/util/metrics.py", "        b *= 0.8\n", "        break\n",
                             ["tests/test_gate.py", "-k", "unknown_budget"]),
    "loop-keeps-every-latency": ("edgeflower/util/stats.py", "if len(self._values) < self.size:", "if True:",
                                 ["tests/test_longrun.py", "-k", "memory or reservoir"]),
    "page-keeps-idle-sockets": ("edgeflower/edge/serve.py", "            if len(self._pending) >= self.max_pending:\n"
                                "                self._drop(next(iter(self._pending)))  # the oldest waiting "
                                "connection\n", "", ["tests/test_longrun.py", "-k", "idle_sockets"]),
    "sigterm-kills": ("edgeflower/edge/app.py", "old = signal.signal(signal.SIGTERM, handler)",
                      "old = signal.getsignal(signal.SIGTERM)", ["tests/test_longrun.py", "-k", "sigterm"]),
    "exec-child-in-our-group": ("edgeflower/edge/sinks.py", "stderr=subprocess.PIPE, start_new_session=True)",
                                "stderr=subprocess.PIPE, start_new_session=False)",
                                ["tests/test_longrun.py", "-k", "exec_children"]),
    "logits-accepted": ("edgeflower/edge/classifier.py", "        self._check_probabilities()\n", "",
                        ["tests/test_longrun.py", "-k", "not_a_classifier"]),
    "unknown-inverted": ("edgeflower/edge/classifier.py", "similarity < self.min_similarity",
                         "similarity > self.min_similarity", ["tests/test_edge.py", "-k", "unknown_threshold"]),
    "zero-point-sign": ("edgeflower/edge/classifier.py", "(y.astype(np.float32) - info.zero_point) * info.scale",
                        "(y.astype(np.float32) + info.zero_point) * info.scale",
                        ["tests/test_edge.py", "-k", "quantize_roundtrip"]),
    "bgr-as-rgb": ("edgeflower/edge/sources.py", "self.cv2.cvtColor(bgr, self.cv2.COLOR_BGR2RGB)", "bgr",
                   ["tests/test_edge.py", "-k", "video_gives_the_same_labels"]),
    "kth-is-nearest": ("edgeflower/exporting/ood.py", "keras.ops.top_k(t[:, a:b], k, sorted=True)[0][:, k - 1:k]",
                       "keras.ops.top_k(t[:, a:b], k, sorted=True)[0][:, 0:1]",
                       ["tests/test_unknown.py", "-k", "kth or carry"]),
    "any-class-kth-is-nearest": ("edgeflower/exporting/ood.py", "keras.ops.top_k(t, k, sorted=True)[0][:, k - 1:k]",
                                 "keras.ops.top_k(t, k, sorted=True)[0][:, 0:1]",
                                 ["tests/test_unknown.py", "-k", "any_class_options"]),
    "similarity-of-any-class": ("edgeflower/edge/classifier.py", "return np.where(inside, picked, sims.max(axis=1))",
                                "return sims.max(axis=1)", ["tests/test_unknown.py", "-k", "carry"]),
    "outputs-unordered": ("edgeflower/exporting/convert.py",
                          "    sub.outputs = np.array([o.tensorIndex for o in outs], dtype=np.int32)\n", "",
                          ["tests/test_clients.py", "-k", "named_probs_first"]),
    "batchnorm-trains": ("edgeflower/training/loop.py",
                         "i >= cut and not isinstance(layer, keras.layers.BatchNormalization)", "i >= cut",
                         ["tests/test_train.py", "-k", "augment_and_fine_tune"]),
    "bench-ignores-run-split": ("edgeflower/benchmarking.py", "    cfg = with_run_split(cfg, say)\n", "",
                                ["tests/test_own_photos.py", "-k", "train_to_bench"]),
    "mediapipe-normalization": ("edgeflower/exporting/tflite_metadata.py", "norm_std=[1.0]", "norm_std=[255.0]",
                                ["tests/test_clients.py", "-k", "mediapipe"]),
    "cli-not-quiet": ("edgeflower/cli/__init__.py",
                      "    _quiet.configure(verbose)  # before any command imports TensorFlow\n",
                      "", ["tests/test_cli_quiet.py", "-k", "eval_prints"]),
    "quiet-fds-leaks": ("edgeflower/util/quiet.py", "            os.dup2(tmp.fileno(), fd)\n", "            pass\n",
                        ["tests/test_cli_quiet.py", "-k", "swallows"]),
    "missing-tensorflow-traceback": ("edgeflower/util/deps.py", "        raise missing(module, purpose) from exc\n",
                                     "        raise\n", ["tests/test_cli.py", "-k", "train_without_tensorflow"]),
    "pi-camera-bgr": ("edgeflower/edge/sources.py", "np.ascontiguousarray(arr[:, :, :3])",
                      "np.ascontiguousarray(arr[:, :, 2::-1])", ["tests/test_edge.py", "-k", "picamera2 or pi_camera"]),
    "usb-camera-bgr": ("edgeflower/edge/sources.py", "self.cv2.cvtColor(bgr, self.cv2.COLOR_BGR2RGB)", "bgr",
                       ["tests/test_edge.py", "-k", "usb_camera"]),
    "pi-check-unmounts-in-order": ("scripts/pi-emulated-check.sh", "for (( i=${#MOUNTS[@]}-1; i>=0; i-- )); do",
                                   "for (( i=0; i<${#MOUNTS[@]}; i++ )); do",
                                   ["tests/test_scripts.py", "-k", "reverse_order"]),
    "pi-check-any-cpu": ("scripts/pi-emulated-check.sh",
                         '*) die "PI_CPU must be cortex-a72 or cortex-a76, got $PI_CPU";; esac',
                         "*) PART=0xd08;; esac", ["tests/test_scripts.py", "-k", "known_cpu"]),
    "ratio-of-medians": ("edgeflower/util/timing.py", "return statistics.median(round_ratios(values, reference))",
                         "return statistics.median(list(values)) / statistics.median(list(reference))",
                         ["tests/test_timing.py", "-k", "ratio"]),
    "sensor-outputs-not-fed": ("edgeflower/edge/loop.py", "                clf.backend.feed(frame.outputs)\n",
                               "                pass\n", ["tests/test_imx500.py", "-k", "replayed"]),
    "sensor-outputs-reused": ("edgeflower/edge/imx500.py",
                              "        self._pending = None  # never reuse a frame's outputs for the next frame\n",
                              "", ["tests/test_imx500.py", "-k", "per_class_similarity"]),
    "sensor-nearest-not-kth": ("edgeflower/edge/imx500.py", "out.append(kth_largest(cols, k))",
                               "out.append(cols.max(axis=1))", ["tests/test_imx500.py", "-k", "kth or similarity"]),
    "graph-nested-not-inlined": ("edgeflower/exporting/imx500.py", "                alias[name] = outs[0]\n",
                                 "                alias[name] = ins[0]\n",
                                 ["tests/test_imx500_export.py", "-k", "portable_graph"]),
    "outliers-held-out-trained": ("edgeflower/data/outliers.py", '            out[r.file] = "heldout"\n',
                                  '            out[r.file] = "train"\n',
                                  ["tests/test_outliers.py", "-k", "held_out or whole"]),
    "outlier-download-unverified": ("edgeflower/data/outliers.py", "if digest != first.original_sha256:", "if False:",
                                    ["tests/test_outliers.py", "-k", "wrong_checksum"]),
    "outliers-never-claimed": ("edgeflower/data/claim.py", "claimed[:, j] = score[:, j] >= bar",
                               "claimed[:, j] = False", ["tests/test_outliers.py", "-k", "claim"]),
    "background-costs-nothing": ("edgeflower/exporting/unknown.py",
                                 "return np.where(probs.argmax(1) == background, NEVER_KEPT, sims)", "return sims",
                                 ["tests/test_background.py", "-k", "budget"]),
    "observer-misses-errors": ("edgeflower/edge/loop.py", "            for o in observers:\n",
                               "            for o in (observers if frame.image is not None else []):\n",
                               ["tests/test_edge.py", "-k", "observer"]),
    "format-problems-ignored": ("edgeflower/exporting/pipeline.py", '"; ".join(reasons + ev.problems)',
                                '"; ".join(reasons)', ["tests/test_export.py", "-k", "own_evaluation"]),
    "int8-slowness-unsaid": ("edgeflower/benchmarking.py", "    if speedup >= MIN_INT8_SPEEDUP:\n        return None\n",
                             "    return None\n", ["tests/test_export.py", "-k", "built_slower"]),
    "review-any-host": ("edgeflower/data/review_server.py", "        if self.allow_remote:\n            return True\n"
                        "        if not header:\n            return False\n", "        return True\n",
                        ["tests/test_review_page.py", "-k", "hostile"]),
    "review-sidecar-left-behind": ("edgeflower/data/sorting.py",
                                   "                    os.replace(side, home / side.name)",
                                   "                    pass", ["tests/test_review_page.py", "-k", "renames"]),
    "review-keys-dead": ("edgeflower/data/review_page.html", "else if(e.key==='b'){fileAs(f.name,'background');}",
                         "else if(e.key==='b'){}", ["tests/test_review_page.py", "-k", "click_and_by_key"]),
    "library-draws-bars": ("edgeflower/util/progress.py", " or disable or _OFF.get():", " or disable:",
                           ["tests/test_python_docs.py", "-k", "quiet"]),
    "export-never-timed": ("edgeflower/exporting/pipeline.py", "    _speeds(results, say)\n", "",
                           ["tests/test_export.py", "-k", "timed_against"]),
    "frame-similarity-of-any-class": ("edgeflower/edge/classifier.py",
                                      "return sims[top] if top < len(sims) else max(sims)", "return max(sims)",
                                      ["tests/test_unknown.py", "-k", "agree_with_the_batch"]),
    "dequantize-table-off-by-one": ("edgeflower/edge/classifier.py", "codes = np.arange(256, dtype=np.uint8)",
                                    "codes = np.roll(np.arange(256, dtype=np.uint8), 1)",
                                    ["tests/test_edge.py", "-k", "dequantizer"]),
    "slow-warning-never-withdrawn": ("edgeflower/benchmarking.py",
                                     'warning = speed_warning(r["name"], r["float_sibling"], sp["speedup_vs_float"]',
                                     'warning = r["speed_warning"] or speed_warning(r["name"], r["float_sibling"], '
                                     'sp["speedup_vs_float"]', ["tests/test_bench.py", "-k", "checked_side_by_side"]),
    "frames-resized-as-new-runs": ("edgeflower/edge/classifier.py",
                                   "return preprocess(frame, self.input_size, self.resize)",
                                   "return preprocess(frame, self.input_size)",
                                   ["tests/test_edge.py", "-k", "resizes_as_its_artifact"]),
    "export-ignores-the-runs-resize": ("edgeflower/exporting/pipeline.py", "resize=resize_of(run_cfg), root=root,",
                                       "resize=\"nearest\", root=root,",
                                       ["tests/test_export.py", "-k", "before_the_resize_choice"]),
    "jpeg-fast-path-ignores-orientation": ("edgeflower/edge/jpeg.py",
                                           "return size if orientation in (None, 1) else None", "return size",
                                           ["tests/test_jpeg.py", "-k", "only_pillow"]),
    "jpeg-fast-path-ignores-the-draft": ("edgeflower/edge/jpeg.py", " or min(size) // max(1, side) >= 2:", ":",
                                         ["tests/test_jpeg.py", "-k", "only_pillow"]),
    "jpeg-nearest-by-the-other-axis": ("edgeflower/edge/preprocess.py", "_nearest_index(pixels.shape[1], w), 1",
                                       "_nearest_index(pixels.shape[0], w), 1",
                                       ["tests/test_jpeg.py", "-k", "plain_jpegs"]),
    "jpeg-photo-left-in-the-buffer": ("edgeflower/edge/preprocess.py", "return fast.copy()  # the decode's buffer",
                                      "return fast  # the decode's buffer", ["tests/test_jpeg.py", "-k", "folder"]),
}

def run(name: str) -> bool:
    """True when the tests caught the mutant."""
    rel, old, new, args = MUTANTS[name]
    path = ROOT / rel
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"{name}: the text to mutate occurs {text.count(old)} times in {rel}; update the mutant")
    try:
        path.write_text(text.replace(old, new))
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *args],
                           cwd=ROOT, capture_output=True, text=True)
    finally:
        path.write_text(text)
    caught = r.returncode != 0
    tail = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"{'caught' if caught else 'MISSED'} {name}: {tail}", flush=True)
    return caught


def main() -> None:
    names = sys.argv[1:] or list(MUTANTS)
    unknown = [n for n in names if n not in MUTANTS]
    if unknown:
        raise SystemExit(f"unknown mutants {unknown}; known: {', '.join(MUTANTS)}")
    missed = [n for n in names if not run(n)]
    if missed:
        raise SystemExit(f"{len(missed)} mutant(s) survived: {', '.join(missed)}")
    print(f"all {len(names)} mutants caught")


if __name__ == "__main__":
    main()
