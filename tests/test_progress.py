"""Progress shows without a terminal too: under nohup, a pipe, systemd or CI, as plain lines."""

from __future__ import annotations

import time

from edgeflower.util.progress import progress

from conftest import run_cli


def test_lines_without_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv("EDGEFLOWER_NO_PROGRESS", raising=False)
    monkeypatch.delenv("EDGEFLOWER_PROGRESS_EVERY", raising=False)
    clock = iter(range(0, 1000, 10))  # each item takes 10 s
    monkeypatch.setattr(time, "monotonic", lambda: float(next(clock)))
    assert list(progress(range(6), total=6, desc="decoding train")) == list(range(6))
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("decoding train: 2/6 (33%)")  # not before 15 s had passed
    assert lines[1].startswith("decoding train: 4/6 (67%)")
    assert len(lines) == 3 and lines[-1].startswith("decoding train: 6/6 (100%)") and "done" in lines[-1]
    assert all("\r" not in ln for ln in lines)


def test_quick_work_and_the_off_switch_print_nothing(monkeypatch, capsys):
    monkeypatch.delenv("EDGEFLOWER_NO_PROGRESS", raising=False)
    assert list(progress(range(3), total=3, desc="quick")) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("EDGEFLOWER_NO_PROGRESS", "1")
    monkeypatch.setenv("EDGEFLOWER_PROGRESS_EVERY", "0")
    list(progress(range(3), total=3, desc="off"))
    assert capsys.readouterr().err == ""


def test_bench_relays_its_workers_progress(tiny_export, synth_data, synth_split, tmp_path):
    out = run_cli("bench", tiny_export / "model_int8.tflite", "--threads", 1, "--runs", 5, "--warmup", 1,
                  "--data", synth_data, "--split", synth_split, "--json", tmp_path / "b.json",
                  env={"EDGEFLOWER_NO_PROGRESS": "", "EDGEFLOWER_PROGRESS_EVERY": "0"})
    assert out.returncode == 0, out.stderr
    assert "model_int8.tflite accuracy: 18/18 (100%)" in out.stderr
