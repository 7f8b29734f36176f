"""The environment a number was measured in: machine, CPU, Python and package versions (standard library only)."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip().strip("\x00")
    except OSError:
        return None


def raspberry_pi() -> dict | None:
    """Board model, CPU governor, temperature and throttling flags on a Raspberry Pi; None elsewhere."""
    model = _read("/proc/device-tree/model")
    if not model or "raspberry" not in model.lower():
        return None
    info: dict = {"board": model, "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")}
    temp = _read("/sys/class/thermal/thermal_zone0/temp")
    info["temperature_c"] = int(temp) / 1000 if temp and temp.isdigit() else None
    try:
        import subprocess

        out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=2).stdout
        info["throttled"] = out.strip().split("=")[-1] or None
    except (OSError, subprocess.SubprocessError):
        info["throttled"] = None
    return info


def environment(packages: tuple[str, ...] = ("numpy", "pillow", "simplejpeg", "ai-edge-litert", "onnxruntime",
                                             "tensorflow", "tf2onnx", "onnx", "edgeflower")) -> dict:
    versions = {}
    for p in packages:
        try:
            versions[p] = md.version(p)
        except md.PackageNotFoundError:
            pass
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "versions": versions,
    }
    pi = raspberry_pi()
    if pi:
        env["raspberry_pi"] = pi
    return env
