"""The emulated-Pi comparison fails loudly on any difference and passes on identical output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _write(d: Path, name: str, rows: list[dict]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def _row(name, label, scores):
    return {"name": name, "label": label, "top_k": [{"label": k, "score": v} for k, v in scores.items()]}


def _compare(a: Path, b: Path):
    return subprocess.run([sys.executable, str(ROOT / "scripts/pi_compare.py"), str(a), str(b)],
                          capture_output=True, text=True)


def test_identical_passes_and_differences_fail(tmp_path):
    host, pi = tmp_path / "host", tmp_path / "pi"
    rows = [_row("a.jpg", "roses", {"roses": 0.9, "tulips": 0.1}), _row("b.jpg", "daisy", {"daisy": 0.8, "roses": 0.2})]
    _write(host, "model_int8.tflite.jsonl", rows)
    _write(pi, "model_int8.tflite.jsonl", rows)
    _write(host, "model.onnx.jsonl", rows)
    _write(pi, "model.onnx.jsonl", [_row("a.jpg", "roses", {"roses": 0.900004, "tulips": 0.099996}), rows[1]])
    r = _compare(host, pi)
    assert r.returncode == 0 and "OK" in r.stdout
    # float LiteRT within 1e-5, int8 LiteRT exact
    _write(host, "model_float.tflite.jsonl", rows)
    _write(pi, "model_float.tflite.jsonl", [_row("a.jpg", "roses", {"roses": 0.900001, "tulips": 0.1}), rows[1]])
    assert _compare(host, pi).returncode == 0
    _write(pi, "model_int8.tflite.jsonl", [_row("a.jpg", "roses", {"roses": 0.900001, "tulips": 0.1}), rows[1]])
    r = _compare(host, pi)
    assert r.returncode == 1 and "beyond 0.0" in r.stdout
    # a different label, and a missing file
    _write(pi, "model_int8.tflite.jsonl", [_row("a.jpg", "tulips", {"tulips": 0.9, "roses": 0.1}), rows[1]])
    assert "host roses vs arm64 tulips" in _compare(host, pi).stdout
    (pi / "model.onnx.jsonl").unlink()
    assert "no output from the emulated root" in _compare(host, pi).stdout


def test_similarity_is_compared_too(tmp_path):
    host, pi = tmp_path / "host", tmp_path / "pi"
    row = {**_row("a.jpg", "roses", {"roses": 0.9, "tulips": 0.1}), "similarity": 0.75}
    _write(host, "model_int8.tflite.jsonl", [row])
    _write(pi, "model_int8.tflite.jsonl", [row])
    assert _compare(host, pi).returncode == 0
    _write(pi, "model_int8.tflite.jsonl", [{**row, "similarity": 0.7539}])
    r = _compare(host, pi)
    assert r.returncode == 1 and "similarity differs" in r.stdout


def test_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts/pi-emulated-check.sh")]).returncode == 0
