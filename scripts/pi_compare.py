"""Compare `edgeflower classify` JSON lines from the emulated Pi root with the host's.

    python scripts/pi_compare.py HOST_DIR PI_DIR

Labels must be identical everywhere. Scores (class probabilities and the unknown score's similarity): int8
LiteRT bit-identical (integer kernels have one right answer); float LiteRT and onnxruntime within 1e-5 (float
kernels sum in a different order on NEON than on AVX: measured, the float TFLite model differs in the sixth
decimal). Exit 1 with a message naming the first difference.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(p: Path) -> list[dict]:
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]


def main() -> int:
    host, pi = Path(sys.argv[1]), Path(sys.argv[2])
    failures, checked = [], 0
    for hf in sorted(host.glob("*.jsonl")):
        pf = pi / hf.name
        if not pf.exists():
            failures.append(f"{hf.name}: no output from the emulated root")
            continue
        a, b = load(hf), load(pf)
        tol = 0.0 if ("tflite" in hf.name and "int8" in hf.name) else 1e-5
        if len(a) != len(b) or not a:
            failures.append(f"{hf.name}: {len(a)} host frames vs {len(b)} on arm64")
            continue
        for x, y in zip(a, b):
            checked += 1
            if x["name"] != y["name"] or x["label"] != y["label"]:
                failures.append(f"{hf.name}: {x['name']}: host {x['label']} vs arm64 {y['label']}")
                break
            sx = {t["label"]: t["score"] for t in x["top_k"]}
            sy = {t["label"]: t["score"] for t in y["top_k"]}
            if sx.keys() != sy.keys() or any(abs(sx[k] - sy[k]) > tol for k in sx):
                failures.append(f"{hf.name}: {x['name']}: scores differ beyond {tol}: host {sx} vs arm64 {sy}")
                break
            # the unknown score (feature similarity), when the artifact has one, under the same tolerance
            if ("similarity" in x) != ("similarity" in y) or abs(x.get("similarity", 0) - y.get("similarity", 0)) > tol:
                failures.append(f"{hf.name}: {x['name']}: similarity differs beyond {tol}: host "
                                f"{x.get('similarity')} vs arm64 {y.get('similarity')}")
                break
    labels = {hf.name: [r["label"] for r in load(hf)] for hf in host.glob("*int8*.jsonl")}
    for name, ls in labels.items():
        if len(set(ls)) == 1 and len(ls) > 4:
            print(f"note: {name} gives one class for every image on the host; equality is still checked")
    if failures:
        print("FAIL: the device runtime on emulated arm64 differs from the host:\n  " + "\n  ".join(failures))
        return 1
    print(f"OK: {checked} predictions agree on emulated arm64 (same labels; int8 LiteRT scores bit-identical, "
          "float LiteRT and onnxruntime within 1e-5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
