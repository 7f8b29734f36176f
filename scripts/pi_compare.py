"""Compare `edgeflower classify` JSON lines from the emulated Pi root with the host's.

    python scripts/pi_compare.py HOST_DIR PI_DIR --models EXPORT_DIR

Each ``HOST_DIR/<artifact>.jsonl`` is compared with ``PI_DIR/<artifact>.jsonl``; ``EXPORT_DIR/<artifact>`` is the
model that produced both, read for its output quantization. What is promised:

- **Quantized outputs** (int8 LiteRT and int8 onnxruntime): every class score and the similarity agree within one
  quantization step of *that output tensor* (its scale, read from the model). With a per-class similarity output
  (``similarity_per_class`` in the JSON lines), every class's value is compared, the one the answer reads (the top
  class's) among them. LiteRT's int8 kernels requantize
  through float arithmetic, and NEON and AVX round a value at a .5 boundary differently now and then, so one step
  is the honest promise; the values that differ by one step are counted and reported. Two steps or more fail.
- **Float outputs** (float LiteRT, float onnxruntime): within 1e-5 (float kernels sum in another order on NEON than
  on AVX; the float TFLite fixture was measured to differ in the sixth decimal).
- **Labels** are identical, except where the host's top two scores are themselves within that tolerance of each
  other (a tie that a one-step difference can flip). Such ties are reported separately, never silently.

Exit 1 with a message naming every artifact's first failure.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

FLOAT_TOL = 1e-5
# JSON lines round scores to 6 decimals, so two dequantized values that are one step apart can read up to 1e-6
# further apart than the step itself.
JSON_ROUNDING = 2e-6


@dataclass(frozen=True)
class Steps:
    """Quantization step of each output; None means a float output (compared within FLOAT_TOL)."""

    scores: float | None = None
    similarity: float | None = None


@dataclass
class Comparison:
    artifact: str
    values: int = 0  # scores and similarities compared
    frames: int = 0
    one_step: int = 0  # values that differ by exactly one quantization step
    ties: list[str] = field(default_factory=list)  # label flips at a host top-two within tolerance
    failures: list[str] = field(default_factory=list)


def load(p: Path) -> list[dict]:
    return [json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()]


def output_steps(model: Path) -> Steps:
    """Read the class-score and similarity outputs' quantization steps from a .tflite or .onnx file."""
    if model.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        outs = [(d["name"], tuple(d["shape"]), float(d["quantization"][0]))
                for d in Interpreter(str(model)).get_output_details()]
    elif model.suffix == ".onnx":
        outs = _onnx_output_steps(model)
    else:
        raise ValueError(f"{model.name}: not a .tflite or .onnx model")
    steps = {"scores": None, "similarity": None}
    named = {"probs": "scores", "similarity": "similarity"}  # every edgeflower artifact names its outputs so
    for name, shape, scale in outs:
        # else (artifacts from before the names): the similarity output has one value per image, the class
        # scores one per class
        key = named.get(name) or ("similarity" if shape and shape[-1] == 1 else "scores")
        steps[key] = scale if scale > 0 else None
    return Steps(**steps)


def _onnx_output_steps(model: Path) -> list[tuple[str, tuple[int, ...], float]]:
    """An ONNX output is quantized when a DequantizeLinear with a constant scale produces it (QDQ models)."""
    import onnx
    from onnx import numpy_helper

    g = onnx.load(str(model)).graph
    producer = {o: n for n in g.node for o in n.output}
    inits = {i.name: i for i in g.initializer}
    out = []
    for o in g.output:
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in o.type.tensor_type.shape.dim)
        n = producer.get(o.name)
        scale = 0.0
        if n is not None and n.op_type == "DequantizeLinear" and n.input[1] in inits:
            scale = float(numpy_helper.to_array(inits[n.input[1]]).reshape(-1)[0])
        out.append((o.name, shape, scale))
    return out


def _within(a: float, b: float, step: float | None) -> tuple[bool, bool]:
    """(within the promise, differs by one step) for two values of an output with quantization step ``step``."""
    d = abs(a - b)
    if step is None:
        return d <= FLOAT_TOL, False
    return d <= step + JSON_ROUNDING, d > JSON_ROUNDING


def _tol_text(step: float | None) -> str:
    return f"one step ({step:.6g})" if step is not None else f"{FLOAT_TOL:g}"


def _beyond(c: Comparison, a: dict, b: dict, step: float | None) -> list:
    """The keys whose values in ``a`` and ``b`` differ beyond ``step``; every value is counted in ``c``."""
    far = []
    for k in a:
        c.values += 1
        ok, one = _within(a[k], b[k], step)
        c.one_step += ok and one
        if not ok:
            far.append(k)
    return far


def compare(artifact: str, host: list[dict], pi: list[dict], steps: Steps) -> Comparison:
    c = Comparison(artifact)
    if len(host) != len(pi) or not host:
        c.failures.append(f"{artifact}: {len(host)} host frames vs {len(pi)} on arm64")
        return c
    for x, y in zip(host, pi):
        c.frames += 1
        name = x["name"]
        if name != y["name"]:
            c.failures.append(f"{artifact}: frame {c.frames}: host {name} vs arm64 {y['name']}")
            continue
        sx = {t["label"]: t["score"] for t in x["top_k"]}
        sy = {t["label"]: t["score"] for t in y["top_k"]}
        if sx.keys() != sy.keys():
            c.failures.append(f"{artifact}: {name}: classes in top_k differ: host {sorted(sx)} vs arm64 {sorted(sy)}")
            continue
        if _beyond(c, sx, sy, steps.scores):
            c.failures.append(f"{artifact}: {name}: scores differ beyond {_tol_text(steps.scores)}: host {sx} vs "
                              f"arm64 {sy}")
        px, py = x.get("similarity_per_class"), y.get("similarity_per_class")
        if (px is None) != (py is None) or px is not None and px.keys() != py.keys():
            c.failures.append(f"{artifact}: {name}: per-class similarities differ in form: host {px} vs arm64 {py}")
        elif px is not None and _beyond(c, px, py, steps.similarity):
            c.failures.append(f"{artifact}: {name}: per-class similarities differ beyond "
                              f"{_tol_text(steps.similarity)}: host {px} vs arm64 {py}")
        if ("similarity" in x) != ("similarity" in y):
            c.failures.append(f"{artifact}: {name}: similarity output on one side only")
        elif "similarity" in x and px is None:  # per class, it is the top class's value, compared above
            c.values += 1
            ok, one = _within(x["similarity"], y["similarity"], steps.similarity)
            c.one_step += ok and one
            if not ok:
                c.failures.append(f"{artifact}: {name}: similarity differs beyond {_tol_text(steps.similarity)}: "
                                  f"host {x['similarity']} vs arm64 {y['similarity']}")
        if x["label"] != y["label"]:
            # allowed only where the host itself scored arm64's label within the tolerance of its top score
            tie = y["label"] in sx and _within(max(sx.values()), sx[y["label"]], steps.scores)[0]
            msg = f"{artifact}: {name}: host {x['label']} vs arm64 {y['label']} (host scores {sx})"
            (c.ties if tie else c.failures).append(msg)
    return c


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("host", type=Path)
    ap.add_argument("pi", type=Path)
    ap.add_argument("--models", type=Path, required=True, help="folder holding the artifacts named by the .jsonl files")
    args = ap.parse_args(argv)
    results: list[Comparison] = []
    for hf in sorted(args.host.glob("*.jsonl")):
        artifact = hf.name[: -len(".jsonl")]
        pf = args.pi / hf.name
        if not pf.exists():
            results.append(Comparison(artifact, failures=[f"{artifact}: no output from the emulated root"]))
            continue
        try:
            steps = output_steps(args.models / artifact)
        except Exception as exc:  # a missing or unreadable model: the promise cannot be checked
            results.append(Comparison(artifact, failures=[f"{artifact}: cannot read its output quantization from "
                                                          f"{args.models / artifact}: {exc}"]))
            continue
        results.append(compare(artifact, load(hf), load(pf), steps))
    if not results:
        print(f"FAIL: no .jsonl files in {args.host}")
        return 1
    for c in results:
        print(f"{c.artifact}: {c.frames} frames, {c.values} values compared, {c.one_step} differ by one "
              f"quantization step, {len(c.ties)} label flips at a host tie, {len(c.failures)} failures")
        for t in c.ties:
            print(f"  tie (allowed): {t}")
    failures = [f for c in results for f in c.failures]
    if failures:
        print("FAIL: the device runtime on emulated arm64 differs from the host beyond what is promised:\n  "
              + "\n  ".join(failures))
        return 1
    print(f"OK: {sum(c.frames for c in results)} predictions agree on emulated arm64 (same labels; quantized "
          f"outputs within one quantization step, {sum(c.one_step for c in results)} values one step apart; float "
          f"outputs within {FLOAT_TOL:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
