"""The benchmarks' entry point: every suite's steps are listed, printed and importable from `python -m benchmarks`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks import ROOT
from benchmarks.__main__ import SUITES, main


def test_list_names_every_step_and_its_result_file(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for _, steps in SUITES.values():
        for s in steps:
            assert s.name in out and s.writes in out


def test_dry_run_of_all_prints_every_step_with_the_run(capsys):
    assert main(["run", "all", "--dry-run", "--run", "runs/x/train"]) == 0
    lines = capsys.readouterr().out.splitlines()
    n = sum(len(steps) for _, steps in SUITES.values())
    assert len(lines) == n and lines[0].startswith(f"[1/{n}] training/study")
    assert any("benchmarks.outliers runs/x/train/export/model_int8.tflite" in ln for ln in lines)
    assert not any("{run}" in ln for ln in lines)


def test_a_run_without_its_export_is_a_one_line_error(tmp_path, capsys):
    assert main(["run", "export", "--run", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no export/model_int8.tflite" in err


@pytest.mark.parametrize("module", sorted({s.args[0] for _, steps in SUITES.values() for s in steps}))
def test_every_step_runs_as_a_module(module):
    # a step that cannot import (a sys.path hack, a moved module) fails here, not hours into a suite
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout


def test_every_import_in_the_benchmarks_resolves_without_sys_path_hacks():
    import ast
    import importlib.util

    local = {p.stem for p in (ROOT / "benchmarks").rglob("*.py")}
    bad = []
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        source = path.read_text()
        if "sys.path" in source and path.name != "test_main.py":
            bad.append(f"{path.name}: sys.path")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in local or (top in ("benchmarks", "edgeflower") and importlib.util.find_spec(name) is None):
                    bad.append(f"{path.relative_to(ROOT)}: import {name}")
    assert not bad
