"""docs/python.md runs as written: its examples are doctests, on the tiny synthetic dataset."""

from __future__ import annotations

import doctest
import subprocess
import sys
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[1] / "docs" / "python.md"


@pytest.mark.slow
def test_the_python_page_runs_as_written(synth_data, tmp_path):
    result = doctest.testfile(str(PAGE), module_relative=False, globs={"photos": synth_data, "runs": tmp_path},
                              optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, report=True, verbose=False)
    assert result.attempted >= 15 and result.failed == 0, result


def test_import_edgeflower_loads_no_tensorflow_and_names_the_api():
    code = ("import sys, edgeflower\n"
            "assert callable(edgeflower.train) and callable(edgeflower.export) and callable(edgeflower.bench)\n"
            "assert edgeflower.Classifier.load and edgeflower.AccuracyDropError\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'onnxruntime', 'ai_edge_litert') if m in sys.modules]\n"
            "print(heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_library_is_quiet_unless_asked(synth_data, synth_split, tmp_path, capfd, monkeypatch):
    """No progress bar and no message on the terminal by default; progress=callable gets the messages and bars."""
    import edgeflower

    monkeypatch.delenv("EDGEFLOWER_NO_PROGRESS", raising=False)  # the suite's own setting: off
    monkeypatch.setenv("EDGEFLOWER_PROGRESS_EVERY", "0")  # a line for every photo, however quick
    edgeflower.check_data(synth_data)
    assert capfd.readouterr().err == ""
    said = []
    edgeflower.check_data(synth_data, progress=said.append)
    assert "checking images" in capfd.readouterr().err
    r = edgeflower.split_data(synth_data, out=tmp_path / "split.json")
    assert r["written"] == str(tmp_path / "split.json") and sum(r["counts"].values()) > 0


def test_results_are_typed_and_give_their_json(tiny_export):
    import json

    from edgeflower.api import ExportReport, Run

    run = Run.load(tiny_export.parent)
    assert run.classes == ["blue", "green", "red"] and 0 <= run.test_accuracy <= 1
    raw = json.loads((tiny_export / "export_report.json").read_text())
    rep = ExportReport.from_dict(raw)
    assert rep.to_dict() is raw and rep.path("model_int8.onnx") == tiny_export / "model_int8.onnx"
    assert rep.artifact("model_int8.onnx").speedup_vs_float == raw["artifacts"][3]["speed"]["speedup_vs_float"]
    with pytest.raises(KeyError, match="no artifact 'model.rpk'"):
        rep.artifact("model.rpk")
    from edgeflower.errors import RunDirError

    with pytest.raises(RunDirError, match="not a run folder"):
        Run.load(tiny_export)


def test_the_api_reference_names_only_what_exists():
    """scripts/api_docs.py's check (make api-docs builds the HTML too): every ``edgeflower.x`` in the reference's
    docstrings resolves; a renamed one is found."""
    from scripts.api_docs import broken_references, resolves

    assert broken_references() == []
    assert resolves("edgeflower.api.Run.export") and resolves("edgeflower.exporting.pipeline.ExportConfig")
    assert not resolves("edgeflower.api.Run.exportt") and not resolves("edgeflower.exporter.pipeline")
