"""`edgeflower service install|uninstall`: the systemd unit it writes, checked by systemd's own verifier; nothing is
enabled or started."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeflower.edge.service import render_unit

from conftest import run_cli


@pytest.fixture(autouse=True)
def _camera(fake_camera_env, monkeypatch):
    """`service install` checks that the camera's package is there: stand-ins on this machine without one."""
    monkeypatch.setenv("PYTHONPATH", fake_camera_env["PYTHONPATH"])


@pytest.fixture()
def model(tiny_export, tmp_path) -> Path:
    """A real artifact: `service install` loads it before it writes the unit."""
    m = tmp_path / "export" / "model_int8.tflite"
    m.parent.mkdir(parents=True)
    shutil.copyfile(tiny_export / "model_int8.tflite", m)
    return m


def test_install_writes_a_unit_that_runs_classify_from_this_environment(tmp_path, model):
    m = model
    units = tmp_path / "units"
    out = run_cli("service", "install", m, "--camera", "--smooth", "5", "--serve", "0.0.0.0:8080", "--jsonl",
                  "log.jsonl", "--name", "garden", "--unit-dir", units)
    assert out.returncode == 0, out.stderr
    text = (units / "garden.service").read_text()
    exe = str(Path(sys.executable).with_name("edgeflower"))
    start = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
    assert start.split("=", 1)[1].split() == [exe, "classify", str(m.resolve()), "--camera", "--smooth", "5",
                                               "--serve", "0.0.0.0:8080", "--jsonl",
                                               str((Path.cwd() / "log.jsonl").resolve())]
    assert "Restart=on-failure" in text and f"WorkingDirectory={Path.cwd().resolve()}" in text
    assert "network-online.target" not in text  # no network sink
    assert "WantedBy=multi-user.target" in text
    # the two commands: enable and start, and the log
    assert "systemctl enable --now garden" in out.stdout and "journalctl -u garden -f" in out.stdout
    # a second install refuses to overwrite without --force
    again = run_cli("service", "install", m, "--camera", "--name", "garden", "--unit-dir", units)
    assert again.returncode != 0 and "--force" in again.stderr


def test_network_sinks_wait_for_the_network_and_user_units_go_to_the_user_folder():
    text = render_unit("/m.tflite", ["--camera", "--mqtt", "mqtt://hub/flowers"], "ef", user_unit=True,
                       executable="/usr/bin/true", cwd="/")
    assert "After=network-online.target" in text and "Wants=network-online.target" in text
    assert "WantedBy=default.target" in text and "User=" not in text


def test_quoting_keeps_arguments_whole():
    text = render_unit("/m.tflite", ["--images", "/photos/my garden/*.jpg", "--top-k", "3"], "ef", False,
                       executable="/usr/bin/true", cwd="/", run_as="pi")
    start = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
    assert '"/photos/my garden/*.jpg"' in start and "User=pi" in text


@pytest.mark.parametrize("args, message", [
    (["--camera", "--no-such-option"], "no such option"),
    (["--threads", "0", "--camera"], "classify options"),
    (["--smooth", "3"], "exactly one source"),
])
def test_bad_classify_options_are_refused_at_install(tmp_path, model, args, message):
    out = run_cli("service", "install", model, *args, "--unit-dir", tmp_path / "u")
    assert out.returncode != 0 and message in out.stderr.lower(), out.stderr
    assert not (tmp_path / "u").exists()


def test_uninstall_removes_the_unit_and_its_boot_link(tmp_path, model):
    m = model
    units = tmp_path / "units"
    assert run_cli("service", "install", m, "--camera", "--unit-dir", units).returncode == 0
    wants = units / "multi-user.target.wants"
    wants.mkdir()
    (wants / "edgeflower.service").symlink_to(units / "edgeflower.service")  # what `systemctl enable` makes
    out = run_cli("service", "uninstall", "--unit-dir", units)
    assert out.returncode == 0, out.stderr
    assert not (units / "edgeflower.service").exists() and not list(wants.iterdir())
    assert run_cli("service", "uninstall", "--unit-dir", units).returncode != 0


def test_the_unit_verifies_with_systemd(tmp_path, model):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (apt install systemd)")
    units = tmp_path / "units"
    out = run_cli("service", "install", model, "--camera", "--serve", "8080", "--unit-dir", units)
    assert out.returncode == 0, out.stderr
    v = subprocess.run([analyze, "verify", str(units / "edgeflower.service")], capture_output=True, text=True,
                       timeout=60)
    assert v.returncode == 0, v.stderr + v.stdout
    # a unit with network sinks (After=/Wants=network-online.target) verifies too
    out = run_cli("service", "install", model, "--camera", "--mqtt", "mqtt://hub.local/flowers",
                  "--post", "http://hub.local/hook", "--name", "networked", "--unit-dir", units)
    assert out.returncode == 0, out.stderr
    text = (units / "networked.service").read_text()
    assert "After=network-online.target" in text
    v = subprocess.run([analyze, "verify", str(units / "networked.service")], capture_output=True, text=True,
                       timeout=60)
    assert v.returncode == 0, v.stderr + v.stdout
    # and the verifier does fail on a broken unit (a relative ExecStart), so the pass above means something
    bad = units / "broken.service"
    bad.write_text((units / "edgeflower.service").read_text().replace("ExecStart=/", "ExecStart=", 1))
    v = subprocess.run([analyze, "verify", str(bad)], capture_output=True, text=True, timeout=60)
    assert v.returncode != 0
