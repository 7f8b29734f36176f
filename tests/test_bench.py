"""`edgeflower bench` on the tiny artifacts: documented keys, sane values, bad input does not stop the others."""

from __future__ import annotations

import json

import pytest

from edgeflower.benchmarking import BenchConfig, bench, render
from edgeflower.errors import BenchError

from conftest import run_cli, without_metadata


@pytest.fixture(scope="module")
def report(tiny_export, synth_data, synth_split):
    arts = [str(tiny_export / n) for n in ("model_float.tflite", "model_int8.tflite", "model.onnx",
                                           "model_int8.onnx")]
    return bench(BenchConfig(artifacts=tuple(arts + ["missing.tflite"]), threads=(1, 2), runs=20, warmup=3,
                             e2e_images=5, data=str(synth_data), split=str(synth_split)))


def test_keys_and_sane_values(report):
    ok = [r for r in report["results"] if "error" not in r]
    assert len(ok) == 8
    for r in ok:
        lat = r["latency_ms"]
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"]
        assert r["e2e_ms"]["p50"] > 0 and r["throughput_ips"] > 0 and r["load_ms"] > 0
        assert r["peak_rss_mb"] > 10 and r["size_bytes"] > 0
        assert 0.0 <= r["accuracy"] <= 1.0
        assert r["backend"] in ("litert", "onnxruntime") and r["backend_version"] != "unknown"
    env = report["environment"]
    assert {"cpu_model", "cpu_count", "python", "versions"} <= set(env) and "numpy" in env["versions"]
    int8 = next(r for r in ok if r["name"] == "model_int8.tflite")
    assert int8["float_reference"] == "model_float.tflite" and "drop_pts" in int8
    assert set(int8["per_class_accuracy"]) == {"blue", "green", "red"}


def test_missing_artifact_does_not_stop_the_others(report):
    err = [r for r in report["results"] if "error" in r]
    assert len(err) == 1 and "not found" in err[0]["error"]
    assert "error: not found" in render(report)


def test_bench_agrees_with_the_export_report(report, tiny_export):
    exp = {a["name"]: a["accuracy"] for a in json.loads((tiny_export / "export_report.json").read_text())["artifacts"]}
    for r in report["results"]:
        if "error" not in r:
            assert r["accuracy"] == pytest.approx(exp[r["name"]])


def test_bad_threads():
    with pytest.raises(BenchError, match="at least 1"):
        bench(BenchConfig(artifacts=("x.tflite",), threads=(0,)))


def test_cli_json_plot_and_no_metadata(tiny_export, synth_data, synth_split, tmp_path):
    lone = without_metadata(tiny_export / "model_int8.tflite", tmp_path / "lone.tflite")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not onnx")
    out = run_cli("bench", lone, corrupt, tiny_export / "model_int8.tflite", "--threads", "1", "--runs", 10,
                  "--warmup", 2, "--e2e-images", 3, "--data", synth_data, "--split", synth_split, "--json",
                  tmp_path / "b.json")
    assert out.returncode == 1  # the corrupt one failed, and says so
    assert "corrupt.onnx" in out.stderr and "cannot load" in out.stderr
    rep = json.loads((tmp_path / "b.json").read_text())
    by = {r["name"]: r for r in rep["results"]}
    assert by["lone.tflite"]["accuracy"] is None and "no edgeflower metadata" in by["lone.tflite"]["accuracy_note"]
    assert by["lone.tflite"]["latency_ms"]["p50"] > 0
    assert by["model_int8.tflite"]["accuracy"] is not None
    assert (tmp_path / "b.png").is_file()


def test_data_dir_without_test_images(tiny_export, tmp_path, synth_split):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = bench(BenchConfig(artifacts=(str(tiny_export / "model_int8.tflite"),), threads=(1,), runs=5, warmup=1,
                          data=str(empty), split=str(synth_split)))
    res = r["results"][0]
    assert res["accuracy"] is None and "missing" in res["accuracy_note"]
    assert res["latency_ms"]["p50"] > 0 and res["e2e_ms"] is None


def test_cli_threads_zero_is_a_clear_error(tiny_export):
    out = run_cli("bench", tiny_export / "model_int8.tflite", "--threads", "0")
    assert out.returncode == 1 and "at least 1" in out.stderr


def test_bench_finds_the_runs_data_from_the_metadata(tmp_path):
    """Without --data, the dataset folder the artifact was exported from (its metadata), with the run's own split
    or, for flower_photos, the frozen one (split None)."""
    import json as _json

    from edgeflower.benchmarking import BenchConfig, with_run_split

    data = tmp_path / "photos"
    data.mkdir()
    split = tmp_path / "split.json"
    split.write_text("{}")
    for meta, want in (({"data_dir": str(data), "split": None}, (str(data), None)),
                       ({"data_dir": str(data), "split": str(split)}, (str(data), str(split))),
                       ({"data_dir": str(tmp_path / "gone"), "split": None}, (None, None))):
        art = tmp_path / "m.tflite"
        art.write_bytes(b"TFL3")
        (tmp_path / "m.tflite.json").write_text(_json.dumps(meta))
        cfg = with_run_split(BenchConfig(artifacts=[str(art)]))
        assert (cfg.data, cfg.split) == want, meta


def test_a_bad_artifact_is_one_error_line_with_its_fix(tmp_path):
    """A file of another type, and a .tflite cut short: one line each however many thread counts, the name once,
    and the fix named."""
    txt = tmp_path / "x.txt"
    txt.write_text("hello")
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(b"TFL3" + b"\0" * 60)
    out = run_cli("bench", txt, cut, "--threads", "1,2,4", "--runs", 3, "--warmup", 1, "--no-accuracy")
    assert out.returncode == 1
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 2, out.stderr
    assert errors[0].startswith("error: x.txt: unknown model type '.txt'") and errors[0].count("x.txt") == 1
    assert errors[1].startswith("error: cut.tflite:") and "export it again with `edgeflower export RUN`" in errors[1]


def _row(name, fmt, quantized, p50, threads=1, backend="litert", src="a"):
    return {"artifact": f"x/{name}", "name": name, "format": fmt, "quantized": quantized, "threads": threads,
            "backend": backend, "source_model_sha256": src, "latency_ms": {"p50": p50}}


def test_int8_speedup_against_its_float_sibling_and_the_not_faster_warning():
    from edgeflower.benchmarking import MIN_INT8_SPEEDUP, _speedups

    rows = [_row("model_float.tflite", "tflite_float", False, 10.0),
            _row("model_int8.tflite", "tflite_int8", True, 4.0),
            _row("model_float.tflite", "tflite_float", False, 6.0, threads=2),
            _row("model_int8.tflite", "tflite_int8", True, 5.0, threads=2),  # built slower: 1.2x at 2 threads
            _row("model.onnx", "onnx_float", False, 10.0, backend="onnxruntime"),
            _row("model_int8.onnx", "onnx_int8", True, 10.5, backend="onnxruntime"),  # slower than float
            _row("other_int8.tflite", "tflite_int8", True, 1.0, src="b")]  # no float sibling of its source
    _speedups(rows)
    by = {(r["name"], r["threads"]): r for r in rows}
    fast = by[("model_int8.tflite", 1)]
    assert fast["speedup_vs_float"] == 2.5 and "speed_warning" not in fast
    slow2 = by[("model_int8.tflite", 2)]
    assert slow2["speedup_vs_float"] == 1.2 and slow2["float_sibling"] == "model_float.tflite"
    assert slow2["speed_warning"].startswith("model_int8.tflite is 1.20x as fast as model_float.tflite at 2 thread")
    onnx = by[("model_int8.onnx", 1)]
    assert onnx["float_sibling"] == "model.onnx" and onnx["speedup_vs_float"] < 1 < MIN_INT8_SPEEDUP
    assert "speedup_vs_float" not in by[("other_int8.tflite", 1)]
    assert all("speedup_vs_float" not in r for r in rows if not r["quantized"])
    text = render({"results": [dict(r, e2e_ms=None, throughput_ips=1, load_ms=1, peak_rss_mb=1, size_bytes=1,
                                    latency_ms={"p50": r["latency_ms"]["p50"], "p90": 1, "p99": 1}) for r in rows]})
    assert "| 2.50x |" in text and text.count("\nwarning: ") == 2


def test_bench_report_has_the_speedup_of_each_int8_artifact(report):
    int8 = [r for r in report["results"] if "error" not in r and r.get("format") in ("tflite_int8", "onnx_int8")]
    assert len(int8) == 4 and all(r["speedup_vs_float"] > 0 for r in int8)
    assert {r["float_sibling"] for r in int8} == {"model_float.tflite", "model.onnx"}
    assert "x float" in render(report)


def test_bench_warns_about_an_int8_artifact_built_slower(tiny_export, synth_data, synth_split, tmp_path):
    """bench's own timings of a float ONNX and an int8 ONNX built to do more work (conftest.slower_onnx): the int8
    row's speed-up is far under 1.3x and it carries the warning, in the report and in its text."""
    import shutil

    from conftest import slower_onnx

    shutil.copy(tiny_export / "model.onnx", tmp_path / "model.onnx")
    slow = slower_onnx(tiny_export / "model_int8.onnx", tmp_path / "model_int8.onnx")
    rep = bench(BenchConfig(artifacts=(str(tmp_path / "model.onnx"), str(slow)), threads=(1,), runs=20, warmup=3,
                            e2e_images=2, accuracy=False, data=str(synth_data), split=str(synth_split)))
    row = next(r for r in rep["results"] if r["name"] == "model_int8.onnx")
    assert row["float_sibling"] == "model.onnx" and row["speedup_vs_float"] < 0.5, row.get("speedup_vs_float")
    assert row["speed_warning"].startswith(f"model_int8.onnx is {row['speedup_vs_float']:.2f}x as fast as model.onnx")
    assert f"warning: {row['speed_warning']}" in render(rep)


def test_a_slow_figure_from_separate_runs_is_checked_side_by_side(tiny_export, tmp_path):
    """bench's separate measurements (other processes, other moments) said an int8 artifact was no faster; timed side
    by side it is far faster, so the figure is replaced and the warning withdrawn. The pair is real: the tiny int8
    ONNX against a float sibling built to do more work (conftest.slower_onnx)."""
    from edgeflower.benchmarking import _confirm_slow

    from conftest import slower_onnx

    slow_float = slower_onnx(tiny_export / "model.onnx", tmp_path / "model.onnx")
    row = {"name": "model_int8.onnx", "artifact": str(tiny_export / "model_int8.onnx"), "threads": 1,
           "float_sibling": "model.onnx", "float_sibling_artifact": str(slow_float), "speedup_vs_float": 1.02,
           "speed_warning": "model_int8.onnx is 1.02x as fast as model.onnx at 1 thread(s)"}
    said = []
    _confirm_slow([row], None, said.append)
    assert row["speedup_vs_float"] > 2 and row["speedup_timing"] == "side by side", row
    assert "speed_warning" not in row
    assert said == ["checking model_int8.onnx against model.onnx side by side (threads=1)"]
