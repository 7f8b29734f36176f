"""The CLI is thin and its help works without TensorFlow; the edge runtime never imports it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgeflower.cli import main

COMMANDS = [[], ["data"], ["data", "check"], ["data", "split"], ["train"], ["eval"], ["export"], ["classify"],
            ["bench"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "main")
def test_help(cmd):
    r = CliRunner().invoke(main, [*cmd, "--help"])
    assert r.exit_code == 0, r.output
    assert "Usage:" in r.output


def test_help_without_tensorflow_and_edge_import_is_light():
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "import edgeflower.edge\n"
        "from edgeflower.cli import main\n"
        "for c in (['--help'], ['classify', '--help'], ['bench', '--help'], ['train', '--help'],"
        " ['export', '--help']):\n"
        "    r = CliRunner().invoke(main, c)\n"
        "    assert r.exit_code == 0, r.output\n"
        "bad = [m for m in ('tensorflow', 'keras', 'tf2onnx', 'onnx', 'matplotlib') if m in sys.modules]\n"
        "print('HEAVY', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


# a meta-path blocker makes `import tensorflow` fail, as on a device without it
BLOCK_TENSORFLOW = (
    "import sys, importlib.abc\n"
    "class Block(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name.split('.')[0] in ('tensorflow', 'keras'): raise ImportError('blocked ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
)


def test_help_when_tensorflow_is_missing():
    code = BLOCK_TENSORFLOW + (
        "from click.testing import CliRunner\n"
        "from edgeflower.cli import main\n"
        "for c in (['train', '--help'], ['export', '--help'], ['eval', '--help']):\n"
        "    assert CliRunner().invoke(main, c).exit_code == 0\n"
        "print('HELP OK')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HELP OK" in out.stdout


def test_train_without_tensorflow_says_how_to_install(synth_data, tmp_path):
    """Valid data, so that train gets as far as importing TensorFlow: the one-line hint, exit 1, no run left."""
    code = BLOCK_TENSORFLOW + "from edgeflower.cli import main\nmain(sys.argv[1:], prog_name='edgeflower')\n"
    out = subprocess.run([sys.executable, "-c", code, "train", "--model", "cnn", "--data", str(synth_data),
                          "--input-size", "32", "--epochs", "1", "--out", str(tmp_path / "run")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert ('error: tensorflow is not installed (needed for training): pip install "edgeflower[train]" '
            "(or pip install tensorflow)") in out.stderr.splitlines()
    assert not (tmp_path / "run").exists()


def test_options_are_the_fields_of_the_config_they_fill():
    """train, export, data clean, bench and classify pass their options to the library's config by name."""
    from dataclasses import fields

    from edgeflower.benchmarking import BenchConfig
    from edgeflower.clean import CleanConfig
    from edgeflower.edge.app import DeviceOptions
    from edgeflower.exporting.pipeline import ExportConfig
    from edgeflower.training.loop import TrainConfig

    for cmd, cfg, own in [(main.commands["train"], TrainConfig, set()),
                          (main.commands["export"], ExportConfig, set()),
                          (main.commands["data"].commands["clean"], CleanConfig, set()),
                          (main.commands["bench"], BenchConfig, {"threads", "no_accuracy", "json_out", "plot_out"}),
                          (main.commands["classify"], DeviceOptions, {"quiet"})]:
        unknown = {p.name for p in cmd.params} - own - {f.name for f in fields(cfg)}
        assert not unknown, f"{cmd.name}: {unknown} are not fields of {cfg.__name__}"


def test_edge_import_pulls_in_only_numpy_and_pillow():
    """The device runtime stays light to import: no third-party package but numpy and Pillow at import time (the
    inference backend loads when a model is opened). Checked by what is imported, not by a wall-clock limit, which
    a busy machine would break."""
    code = ("import json, sys, sysconfig\n"
            "before = set(sys.modules)\n"
            "import edgeflower.edge\n"
            "site = sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']\n"
            "third = {n.split('.')[0] for n in set(sys.modules) - before\n"
            "         if (getattr(sys.modules[n], '__file__', None) or '').startswith(site)}\n"
            "print(json.dumps(sorted(third)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    third = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert "numpy" in third  # the check sees site-packages at all
    assert third <= {"numpy", "PIL", "edgeflower"}, third


def test_python_dash_m_and_version():
    out = subprocess.run([sys.executable, "-m", "edgeflower", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "edgeflower" in out.stdout


def test_require_names_the_extra(monkeypatch):
    from edgeflower.errors import MissingDependencyError
    from edgeflower.util import deps as _deps

    monkeypatch.setitem(_deps._EXTRAS, "definitely_missing_mod", ("definitely-missing", "train", ""))
    with pytest.raises(MissingDependencyError, match=r'pip install "edgeflower\[train\]"'):
        _deps.require("definitely_missing_mod", "testing")
