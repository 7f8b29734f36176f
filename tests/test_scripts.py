"""The emulated-Pi comparison keeps exactly its promise (docs/pi.md), and its fixture is reproducible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import pi_compare  # noqa: E402
import pi_fixture  # noqa: E402


def _write(d: Path, name: str, rows: list[dict]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text("".join(json.dumps(r) + "\n" for r in rows))


def _row(name, label, scores, similarity=None):
    r = {"name": name, "label": label, "top_k": [{"label": k, "score": v} for k, v in scores.items()]}
    if similarity is not None:
        r["similarity"] = similarity
    return r


def _compare(host: Path, pi: Path, models: Path):
    return subprocess.run([sys.executable, str(ROOT / "scripts/pi_compare.py"), str(host), str(pi),
                           "--models", str(models)], capture_output=True, text=True)


def test_steps_are_read_from_the_models(tiny_export):
    s = pi_compare.output_steps(tiny_export / "model_int8.tflite")
    assert s.scores == pytest.approx(1 / 256)  # softmax output: scale 1/256
    assert s.similarity is not None and 0 < s.similarity < 0.05
    o = pi_compare.output_steps(tiny_export / "model_int8.onnx")
    assert o.scores is not None and o.similarity is not None and 0 < o.scores < 0.05
    for float_model in ("model_float.tflite", "model.onnx"):
        assert pi_compare.output_steps(tiny_export / float_model) == pi_compare.Steps(None, None)


def test_int8_one_step_passes_and_is_counted_two_steps_fail(tiny_export, tmp_path):
    step = pi_compare.output_steps(tiny_export / "model_int8.tflite").scores
    host, pi = tmp_path / "host", tmp_path / "pi"
    g, b, r = 217 * step, 24 * step, 15 * step
    rows = [_row("a.jpg", "green", {"green": round(g, 6), "blue": round(b, 6), "red": round(r, 6)})]
    _write(host, "model_int8.tflite.jsonl", rows)
    _write(pi, "model_int8.tflite.jsonl", rows)
    out = _compare(host, pi, tiny_export)
    assert out.returncode == 0 and "0 differ by one quantization step" in out.stdout
    # the CI failure of issue 13: one score one step higher on arm64
    _write(pi, "model_int8.tflite.jsonl",
           [_row("a.jpg", "green", {"green": round(g, 6), "blue": round(b + step, 6), "red": round(r, 6)})])
    out = _compare(host, pi, tiny_export)
    assert out.returncode == 0, out.stdout
    assert "1 differ by one quantization step" in out.stdout and "1 values one step apart" in out.stdout
    _write(pi, "model_int8.tflite.jsonl",
           [_row("a.jpg", "green", {"green": round(g, 6), "blue": round(b + 2 * step, 6), "red": round(r, 6)})])
    out = _compare(host, pi, tiny_export)
    assert out.returncode == 1 and "scores differ beyond one step" in out.stdout


def test_similarity_within_one_step_of_its_own_tensor(tiny_export, tmp_path):
    step = pi_compare.output_steps(tiny_export / "model_int8.onnx").similarity
    host, pi = tmp_path / "host", tmp_path / "pi"
    scores = {"green": 0.9, "blue": 0.06, "red": 0.04}
    _write(host, "model_int8.onnx.jsonl", [_row("a.jpg", "green", scores, round(180 * step, 6))])
    _write(pi, "model_int8.onnx.jsonl", [_row("a.jpg", "green", scores, round(181 * step, 6))])
    out = _compare(host, pi, tiny_export)
    assert out.returncode == 0 and "1 differ by one quantization step" in out.stdout
    _write(pi, "model_int8.onnx.jsonl", [_row("a.jpg", "green", scores, round(182 * step, 6))])
    out = _compare(host, pi, tiny_export)
    assert out.returncode == 1 and "similarity differs beyond one step" in out.stdout


def test_label_flip_fails_except_at_a_one_step_tie():
    step = 1 / 256
    steps = pi_compare.Steps(scores=step)
    host = [_row("a.jpg", "green", {"green": 0.5, "blue": 0.5 - step, "red": 2 * step})]
    tie = [_row("a.jpg", "blue", {"green": 0.5 - step, "blue": 0.5, "red": 2 * step})]
    c = pi_compare.compare("model_int8.tflite", host, tie, steps)
    assert not c.failures and len(c.ties) == 1 and "host green vs arm64 blue" in c.ties[0]
    # the same flip where the host's top two are two steps apart is a failure
    host2 = [_row("a.jpg", "green", {"green": 0.5 + step, "blue": 0.5 - step, "red": 0.0})]
    flip = [_row("a.jpg", "blue", {"green": 0.5, "blue": 0.5, "red": 0.0})]
    c = pi_compare.compare("model_int8.tflite", host2, flip, steps)
    assert not c.ties and any("host green vs arm64 blue" in f for f in c.failures)
    # and a flip to a class the host scored far below its top
    far = [_row("a.jpg", "red", {"green": 0.5, "blue": 0.5 - step, "red": 2 * step})]
    assert pi_compare.compare("model_int8.tflite", host, far, steps).failures


def test_float_outputs_within_1e_5(tiny_export, tmp_path):
    host, pi = tmp_path / "host", tmp_path / "pi"
    rows = [_row("a.jpg", "roses", {"roses": 0.9, "tulips": 0.1}, 0.75)]
    for name in ("model_float.tflite.jsonl", "model.onnx.jsonl"):
        _write(host, name, rows)
        _write(pi, name, [_row("a.jpg", "roses", {"roses": 0.900005, "tulips": 0.099995}, 0.750004)])
    assert _compare(host, pi, tiny_export).returncode == 0
    _write(pi, "model.onnx.jsonl", [_row("a.jpg", "roses", {"roses": 0.90002, "tulips": 0.09998}, 0.75)])
    out = _compare(host, pi, tiny_export)
    assert out.returncode == 1 and "model.onnx: a.jpg: scores differ beyond 1e-05" in out.stdout
    _write(pi, "model.onnx.jsonl", [_row("a.jpg", "roses", {"roses": 0.9, "tulips": 0.1}, 0.75002)])
    assert "similarity differs beyond 1e-05" in _compare(host, pi, tiny_export).stdout


def test_missing_outputs_and_models_fail(tiny_export, tmp_path):
    host, pi = tmp_path / "host", tmp_path / "pi"
    rows = [_row("a.jpg", "roses", {"roses": 0.9, "tulips": 0.1})]
    _write(host, "model.onnx.jsonl", rows)
    pi.mkdir()
    assert "no output from the emulated root" in _compare(host, pi, tiny_export).stdout
    _write(pi, "model.onnx.jsonl", rows)
    out = _compare(host, pi, tmp_path / "nowhere")
    assert out.returncode == 1 and "cannot read its output quantization" in out.stdout
    _write(pi, "model.onnx.jsonl", rows + rows)
    assert "1 host frames vs 2 on arm64" in _compare(host, pi, tiny_export).stdout


def test_onnx_digest_ignores_internal_names_not_values():
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    def model(const_name: str, value: float):
        c = numpy_helper.from_array(np.array([value], np.float32), const_name)
        n = helper.make_node("Add", ["x", const_name], ["y"])
        g = helper.make_graph([n], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])], [c])
        return helper.make_model(g)

    d = pi_fixture.onnx_graph_digest
    assert d(model("const_fold_opt__90", 1.0)) == d(model("const_fold_opt__94", 1.0))
    assert d(model("const_fold_opt__90", 1.0)) != d(model("const_fold_opt__90", 1.5))


@pytest.mark.slow
def test_fixture_is_reproducible(tmp_path):
    """Two builds in different folders give the same weights, artifacts and photos (about 40 s)."""
    prints = []
    for out in (tmp_path / "a", tmp_path / "elsewhere" / "b"):
        r = subprocess.run([sys.executable, str(ROOT / "scripts/pi_fixture.py"), str(out)], capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        prints.append(json.loads((out / "fingerprint.json").read_text()))
    assert prints[0] == prints[1]
    expected = {"run/model.weights.h5", "export/model_int8.tflite (model)", "export/model_int8.onnx (graph)"}
    assert expected <= set(prints[0]["files"])


PI_CHECK = ROOT / "scripts/pi-emulated-check.sh"


def test_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", str(PI_CHECK)]).returncode == 0


def _stubbed(tmp_path: Path, uid: int) -> dict:
    """An environment in which the check runs as ``uid`` on x86_64 and every command that could change the machine
    (apt-get, debootstrap, mount, chroot, ...) is a stub that logs its call and fails."""
    bin_ = tmp_path / "bin"
    bin_.mkdir(parents=True)
    stubs = {"id": f"echo {uid}", "uname": "echo x86_64"}
    for cmd in ("apt-get", "debootstrap", "mount", "umount", "chroot", "update-binfmts", "sudo", "qemu-aarch64-static"):
        stubs[cmd] = f'echo "{cmd} $*" >> "{tmp_path}/calls"; exit 97'
    for name, body in stubs.items():
        (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_ / name).chmod(0o755)
    return {"PATH": f"{bin_}:{os.environ['PATH']}", "PYTHON": sys.executable, "PI_WORK": str(tmp_path / "work"),
            "HOME": str(tmp_path)}


def _pi_check(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(PI_CHECK)], env=env, capture_output=True, text=True, timeout=60)


def test_pi_check_needs_root_and_a_known_cpu(tmp_path):
    env = _stubbed(tmp_path, uid=1000)
    r = _pi_check(env)
    assert r.returncode == 1 and "[pi-check] FAIL: run as root" in r.stderr
    env = _stubbed(tmp_path / "root", uid=0)
    r = _pi_check({**env, "PI_CPU": "cortex-a53"})
    assert r.returncode == 1, r.stderr
    assert "[pi-check] FAIL: PI_CPU must be cortex-a72 or cortex-a76, got cortex-a53" in r.stderr
    r = _pi_check({**env, "PYTHON": str(tmp_path / "no-python")})
    assert r.returncode == 1 and "no host Python with edgeflower" in r.stderr
    assert not (tmp_path / "root" / "calls").exists()  # it stopped before touching anything


def _function(script: str, name: str) -> str:
    """The text of the shell function ``name() { ... }`` in ``script`` (it ends at the first line that is "}")."""
    lines = script.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"{name}() {{"))
    end = next(i for i in range(start, len(lines)) if lines[i] == "}")
    return "\n".join(lines[start:end + 1])


def test_pi_check_unmounts_what_it_mounted_in_reverse_order(tmp_path):
    """mnt remembers each mount and cleanup (the EXIT trap) unmounts them innermost first, lazily when a plain
    unmount fails, and says which one it could not unmount."""
    script = PI_CHECK.read_text()
    calls = tmp_path / "calls"
    code = "\n".join([
        "set -euo pipefail", "MOUNTS=()",
        f'mount() {{ echo "mount $*" >> {calls}; }}',
        f'umount() {{ echo "umount $*" >> {calls}; case "$*" in /root/dev|*/root/sys) return 1;; esac; }}',
        _function(script, "cleanup"), _function(script, "mnt"),
        "mnt /root/proc -t proc proc", "mnt /root/sys --bind /sys", "mnt /root/dev --bind /dev",
        "cleanup", 'echo "left: ${#MOUNTS[@]}"'])
    r = subprocess.run(["bash", "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "left: 0"
    assert calls.read_text().splitlines() == [
        "mount -t proc proc /root/proc", "mount --bind /sys /root/sys", "mount --bind /dev /root/dev",
        "umount /root/dev", "umount -l /root/dev", "umount /root/sys", "umount -l /root/sys", "umount /root/proc"]
    assert r.stderr.strip() == "[pi-check] warning: could not unmount /root/sys"


def test_per_class_similarities_are_each_within_one_step(tiny_export, tmp_path):
    """A per-class similarity output (the export default): every class's value is held to one step, also where a
    tie flips the top class and with it the similarity the answer reads."""
    step = pi_compare.output_steps(tiny_export / "model_int8.tflite").similarity
    host, pi = tmp_path / "host", tmp_path / "pi"
    s = 1 / 256
    scores = {"green": 0.5, "blue": 0.5 - s, "red": 2 * s}
    per = {"green": round(180 * step, 6), "blue": round(120 * step, 6), "red": round(60 * step, 6)}
    host_row = dict(_row("a.jpg", "green", scores, per["green"]), similarity_per_class=per)
    _write(host, "model_int8.tflite.jsonl", [host_row])
    # a one-step tie flip: arm64 reads blue's similarity, far from green's, and that is no failure
    flipped = {"green": 0.5 - s, "blue": 0.5, "red": 2 * s}
    near = dict(per, blue=round(121 * step, 6))
    _write(pi, "model_int8.tflite.jsonl", [dict(_row("a.jpg", "blue", flipped, near["blue"]),
                                                similarity_per_class=near)])
    out = _compare(host, pi, tiny_export)
    assert out.returncode == 0, out.stdout
    assert "3 differ by one quantization step" in out.stdout  # two scores and blue's similarity
    # two steps on a class that is not the top one still fail
    far = dict(per, red=round(62 * step, 6))
    _write(pi, "model_int8.tflite.jsonl", [dict(_row("a.jpg", "green", scores, per["green"]),
                                                similarity_per_class=far)])
    out = _compare(host, pi, tiny_export)
    assert out.returncode == 1 and "per-class similarities differ beyond one step" in out.stdout
