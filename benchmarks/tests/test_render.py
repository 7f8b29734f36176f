"""The renderer of the result tables: every section renders from the real results, the documents are up to date, and
a missing input or a stray marker is a one-line error."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks import render
from benchmarks.render import RESULTS, ROOT, SECTIONS, RenderError, Results, render_docs

DOC = "# Title\n\nText a person wrote.\n\n<!-- results:{name} -->\nold table\n<!-- /results:{name} -->\n\nMore text.\n"


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_each_section_renders_a_table_from_the_real_results(name):
    text = SECTIONS[name](Results(RESULTS))
    assert "\n|---" in text
    lines = text.splitlines()
    assert lines[0].startswith("|") or lines[1] == ""  # a table, or one caption line and then a table
    assert all(line.startswith("|") for line in lines[(0 if lines[0].startswith("|") else 2):])


def test_the_documents_are_up_to_date():
    stale = [str(p.relative_to(ROOT)) for p, text in render_docs(RESULTS, ROOT).items() if p.read_text() != text]
    assert not stale, f"out of date (run python -m benchmarks render): {stale}"


def test_check_passes_on_the_repository(capsys):
    assert render.main(["--check"]) == 0


def _root(tmp_path, *names: str):
    """A document root whose README.md holds a marker for each of ``names``."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "README.md").write_text("".join(DOC.format(name=n) for n in names))
    return root


def test_a_missing_result_file_is_a_one_line_error_naming_it(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    root = _root(tmp_path, "memory")
    with pytest.raises(RenderError) as e:
        render_docs(results, root, {"memory": SECTIONS["memory"]})
    assert "memory.json is missing" in str(e.value) and "\n" not in str(e.value)

    assert render.main(["--results", str(results), "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "memory.json is missing" in err
    assert "old table" in (root / "README.md").read_text()  # nothing written


def test_a_missing_key_is_a_one_line_error_naming_the_file(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    memory = json.loads((RESULTS / "memory.json").read_text())
    del memory["before"]
    (results / "memory.json").write_text(json.dumps(memory))
    with pytest.raises(RenderError, match=r"memory\.json has no key 'before'") as e:
        render_docs(results, _root(tmp_path, "memory"), {"memory": SECTIONS["memory"]})
    assert "\n" not in str(e.value)


def test_a_marker_without_a_section_is_an_error(tmp_path):
    root = _root(tmp_path, "memory", "no_such_table")
    with pytest.raises(RenderError, match="results:no_such_table names no section"):
        render_docs(RESULTS, root, {"memory": SECTIONS["memory"]})


def test_a_section_without_a_marker_is_an_error(tmp_path):
    root = _root(tmp_path, "memory")
    with pytest.raises(RenderError, match="no document has a marker for the section.* study"):
        render_docs(RESULTS, root, {"memory": SECTIONS["memory"], "study": SECTIONS["study"]})


def test_an_unclosed_marker_is_an_error(tmp_path):
    root = _root(tmp_path)
    (root / "README.md").write_text("<!-- results:memory -->\nold table\n")
    with pytest.raises(RenderError, match="results:memory is not closed"):
        render_docs(RESULTS, root, {"memory": SECTIONS["memory"]})


def test_the_figures_come_from_the_result_file(tmp_path, monkeypatch):
    results = tmp_path / "results"
    shutil.copytree(RESULTS, results, ignore=lambda d, names: [n for n in names if n != "study.json"])
    study = json.loads((results / "study.json").read_text())
    study["runs"]["cnn"]["test_accuracy"] = 0.123456
    study["runs"]["cnn"]["command"] += " --epochs 7"
    (results / "study.json").write_text(json.dumps(study))
    root = _root(tmp_path, "study")
    (path, text), = render_docs(results, root, {"study": SECTIONS["study"]}).items()
    row = next(line for line in text.splitlines() if line.startswith("| cnn |"))
    assert "**12.35%**" in row and "--epochs 7" in row
    assert text.startswith("# Title\n\nText a person wrote.\n\n<!-- results:study -->\n_`")
    assert text.endswith("\n<!-- /results:study -->\n\nMore text.\n") and "old table" not in text

    monkeypatch.setattr(render, "SECTIONS", {"study": SECTIONS["study"]})
    assert render.main(["--results", str(results), "--root", str(root), "--check"]) == 1
    assert "old table" in path.read_text()
    assert render.main(["--results", str(results), "--root", str(root)]) == 0
    assert path.read_text() == text
    assert render.main(["--results", str(results), "--root", str(root), "--check"]) == 0


def test_the_readme_quotes_the_held_out_unknown_figures():
    """The README's sentence on `unknown` states make main's int8 TFLite figures on the held-out outlier photos."""
    import re

    d = json.loads((RESULTS / "outliers.json").read_text())
    a = next(a for a in d["artifacts"] if a["artifact"].endswith("main/train/export/model_int8.tflite"))
    readme = " ".join((ROOT / "README.md").read_text().split())
    m = re.search(r"make main's int8 model answers `unknown` for (\d+)% of the non-flower photos, (\d+)% of the nature "
                  r"ones and (\d+)% of the flowers of other species .*? at a cost of ([\d.]+) points", readme)
    assert m, "the README's sentence on the held-out figures is gone"
    h = a["heldout"]
    assert [int(v) for v in m.groups()[:3]] == [round(h["non_flower"]["unknown"] * 100),
                                                round(h["by_category"]["nature"]["unknown"] * 100),
                                                round(h["other_flowers_unseen_species"]["unknown"] * 100)]
    assert float(m.group(4)) == round(a["flowers"]["cost_pts"], 1)
