"""Quiet by default: what TensorFlow and its converters print at C level stays hidden unless -v; errors still show."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

from edgeflower.util import quiet as _quiet

# the start-up lines of issue 29: absl's pre-init banner, absl/glog-style lines (I/W/E + date), the converter's
NOISE = re.compile(r"absl::InitializeLog|^[IWE]\d{4} |cudart_stub|cuInit|oneDNN|XNNPACK|fully_quantize", re.M)


def _chatter(tag: str) -> None:
    """Write as TensorFlow's C++ does: straight to file descriptors 1 and 2, and through C stdio's buffer."""
    import ctypes

    os.write(2, f"E0000 00:00:1.0 1 cuda_platform.cc:52] failed call to cuInit ({tag})\n".encode())
    os.write(1, f"fully_quantize: 0, inference_type: 6 ({tag})\n".encode())
    ctypes.CDLL(None).printf(f"printf from C ({tag})\n".encode())


@pytest.fixture
def verbosity():
    old = _quiet._verbose
    yield
    _quiet._verbose = old


def test_quiet_fds_swallows_c_level_writes_unless_verbose(capfd, verbosity):
    _quiet._verbose = 0
    with _quiet.quiet_fds():
        _chatter("quiet")
    print("after the block")
    out, err = capfd.readouterr()
    assert out == "after the block\n" and err == ""
    _quiet._verbose = 1
    with _quiet.quiet_fds():
        _chatter("verbose")
    out, err = capfd.readouterr()
    assert "fully_quantize: 0, inference_type: 6 (verbose)" in out and "printf from C (verbose)" in out
    assert "failed call to cuInit (verbose)" in err


def test_quiet_fds_shows_what_was_printed_when_the_block_fails(capfd, verbosity):
    _quiet._verbose = 0
    with pytest.raises(RuntimeError, match="converter failed"):
        with _quiet.quiet_fds():
            _chatter("failing")
            raise RuntimeError("converter failed")
    out, err = capfd.readouterr()
    assert out == ""
    for line in ("failed call to cuInit (failing)", "fully_quantize: 0, inference_type: 6 (failing)",
                 "printf from C (failing)"):
        assert line in err


FAKE_TENSORFLOW = '''
import ctypes, os, warnings
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
os.write(2, b"I0000 00:00:1.0 1 cudart_stub.cc:31] Could not find cuda drivers on your machine\\n")
ctypes.CDLL(None).printf(b"oneDNN custom operations are on\\n")
warnings.warn("a converter UserWarning")
LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
'''


@pytest.mark.parametrize("verbose", [0, 1])
def test_first_tensorflow_import_is_quiet_unless_verbose(tmp_path, verbose):
    """configure() hides what a TensorFlow prints while it loads, sets its log level before the import, filters its
    Python warnings; with -v all of it shows."""
    (tmp_path / "tensorflow").mkdir()
    (tmp_path / "tensorflow" / "__init__.py").write_text(FAKE_TENSORFLOW)
    code = textwrap.dedent(f"""
        from edgeflower.util import quiet as _quiet
        _quiet.configure({verbose})
        import tensorflow
        print("level", tensorflow.LEVEL, type(tensorflow.__loader__).__name__)
    """)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    if verbose:
        assert "level None SourceFileLoader" in r.stdout
        for line in ("absl::InitializeLog", "cudart_stub", "oneDNN", "a converter UserWarning"):
            assert line in r.stdout + r.stderr
    else:
        assert r.stdout == "level 3 SourceFileLoader\n" and r.stderr == ""


def test_eval_prints_no_tensorflow_start_up_lines(tiny_run, synth_data, synth_split):
    """The real thing, on a cheap TensorFlow command: `edgeflower eval` in a shell without TF_CPP_MIN_LOG_LEVEL."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    r = subprocess.run([sys.executable, "-m", "edgeflower", "eval", str(tiny_run), "--data", str(synth_data),
                        "--split", str(synth_split)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("test: accuracy")
    assert not NOISE.search(r.stdout + r.stderr), r.stderr
