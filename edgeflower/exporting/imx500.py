"""`edgeflower export --formats imx500`: the Raspberry Pi AI Camera (Sony IMX500), which runs the network on the sensor.

Sony's tools (Model Compression Toolkit, the IMX500 converter) need TensorFlow 2.15 and Keras 2, which cannot share
an environment with edgeflower's Keras 3. They run in a side environment, as a subprocess:

- the side environment is a virtual environment with ``edge-mdt[tf]`` (about 2.3 GB), created on first use in
  ``~/.cache/edgeflower/imx500-env`` (``EDGEFLOWER_IMX500_ENV`` names another one, e.g. made by hand with
  ``python3.11 -m venv DIR && DIR/bin/pip install "edge-mdt[tf]==1.3.0"``);
- the converter needs Java 17 (``sudo apt install openjdk-17-jre-headless``).

This module writes the trained network as a portable graph (layer configs, inputs and weights), hands it with the
calibration and evaluation photos to ``imx500_worker.py``, and reads back the quantized model's outputs: MCT's
simulation of the chip on this machine, judged by the same gate as every other artifact. The network's second
output is its pooled features: the Pi computes the `unknown` similarity from them (``edgeflower.edge.imx500``),
because a bank of training features would not fit in the sensor's 8 MB beside the network.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgeflower.errors import ExportError

REQUIREMENT = "edge-mdt[tf]==1.3.0"
WORKER = Path(__file__).with_name("imx500_worker.py")
CHIP_MB = 8.0


def env_dir() -> Path:
    custom = os.environ.get("EDGEFLOWER_IMX500_ENV")
    if custom:
        return Path(custom).expanduser()
    from edgeflower.util.files import cache_dir

    return cache_dir() / "imx500-env"


def _base_python() -> str:
    """A Python that TensorFlow 2.15 supports (3.9 to 3.11): this one, or python3.11 on the PATH."""
    if (3, 9) <= sys.version_info[:2] <= (3, 11):
        return getattr(sys, "_base_executable", sys.executable)
    found = shutil.which("python3.11")
    if not found:
        raise ExportError(f"the IMX500 tools need Python 3.9 to 3.11 (this is {sys.version.split()[0]}): install "
                          "python3.11, or set EDGEFLOWER_IMX500_ENV to an environment with " + REQUIREMENT)
    return found


def side_python(create: bool = True, say: Callable[[str], None] = print) -> Path:
    """The side environment's Python; created on first use (a few minutes, 2.3 GB)."""
    env = env_dir()
    python = env / "bin" / "python"
    if (env / ".edgeflower-ready").is_file() and python.is_file():
        return python
    if not create or os.environ.get("EDGEFLOWER_IMX500_ENV"):
        raise ExportError(f"no IMX500 environment at {env}: create it with `python3.11 -m venv {env} && "
                          f"{env}/bin/pip install \"{REQUIREMENT}\"` and `touch {env}/.edgeflower-ready`")
    say(f"imx500: creating the side environment {env} with {REQUIREMENT} (first use only; about 2.3 GB)")
    env.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(env, ignore_errors=True)  # a half-made environment from an interrupted first use
    for cmd in ([_base_python(), "-m", "venv", str(env)], [str(python), "-m", "pip", "install", "-q", REQUIREMENT]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            shutil.rmtree(env, ignore_errors=True)
            raise ExportError(f"could not create the IMX500 environment ({last[0]}); make it by hand: "
                              f"python3.11 -m venv {env} && {env}/bin/pip install \"{REQUIREMENT}\"")
    (env / ".edgeflower-ready").write_text(REQUIREMENT + "\n")
    return python


def require_java() -> str:
    java = shutil.which("java")
    if not java:
        raise ExportError("the IMX500 converter needs Java 17: sudo apt install openjdk-17-jre-headless")
    out = subprocess.run([java, "-version"], capture_output=True, text=True)
    text = (out.stderr or out.stdout).splitlines()[:1]
    version = text[0].split('"')[1] if text and '"' in text[0] else ""
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major < 17:
        raise ExportError(f"the IMX500 converter needs Java 17 or newer, found {version or 'an unknown version'}: "
                          "sudo apt install openjdk-17-jre-headless")
    return java


# ---- the portable graph -------------------------------------------------------------------------------------------

def _histories(obj):
    """The (layer, node, tensor) references of a Keras 3 layer call's arguments."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            yield obj["config"]["keras_history"]
        else:
            for v in obj.values():
                yield from _histories(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _histories(v)


def _layer_names(spec) -> list[str]:
    """``input_layers``/``output_layers`` of a Functional config: [name, 0, 0] or a list of them."""
    return [spec[0]] if spec and isinstance(spec[0], str) else [s[0] for s in spec]


def portable_graph(model, extra_outputs: tuple[str, ...] = ()) -> tuple[dict, dict[str, list[np.ndarray]]]:
    """A Keras 3 functional model as one flat graph (nested models inlined): nodes in call order, each with its
    class, config and input node names; the weights of each layer by name. Each layer must be called once."""
    nodes: list[dict] = []
    weights: dict[str, list[np.ndarray]] = {}

    def walk(m, feed: dict[str, str]) -> list[str]:
        cfg = m.get_config()
        alias = dict(feed)
        for lc in cfg["layers"]:
            name, cls = lc["name"], lc["class_name"]
            if cls == "InputLayer":
                if name not in alias:
                    nodes.append({"name": name, "class_name": cls, "inputs": [],
                                  "config": {"shape": list(lc["config"]["batch_shape"][1:])}})
                    alias[name] = name
                continue
            if len(lc["inbound_nodes"]) != 1:
                raise ExportError(f"imx500: layer {name} is called {len(lc['inbound_nodes'])} times; the portable "
                                  "graph supports layers called once")
            ins = [alias[h[0]] for h in _histories(lc["inbound_nodes"][0]["args"])]
            layer = m.get_layer(name)
            if "layers" in lc["config"]:  # a nested model: inline it
                outs = walk(layer, dict(zip(_layer_names(layer.get_config()["input_layers"]), ins)))
                alias[name] = outs[0]
                continue
            nodes.append({"name": name, "class_name": cls, "config": lc["config"], "inputs": ins})
            w = [np.asarray(a) for a in layer.get_weights()]
            if w:
                weights[name] = w
            alias[name] = name
        return [alias[n] for n in _layer_names(cfg["output_layers"])]

    outputs = walk(model, {})
    return {"nodes": nodes, "outputs": outputs + list(extra_outputs)}, weights


def _json_default(o):
    return o.tolist() if hasattr(o, "tolist") else str(o)


# ---- the conversion -------------------------------------------------------------------------------------------------

@dataclass
class Imx500Result:
    """What the worker left: ``info`` and ``memory`` at once, the networks' outputs (tens of MB) when first asked."""
    info: dict  # step times, the converter's exit status
    memory: dict | None  # the converter's memory report, when converted
    files: Path  # the worker's output folder (packerOut.zip, dnnParams.xml, ...)
    evals: tuple[str, ...]  # the evaluation sets' names

    @functools.cached_property
    def quantized(self) -> dict[str, list[np.ndarray]]:
        """Per evaluation set: [probabilities (N, C), features (N, D)] of the quantized network."""
        return self._outputs("quantized")

    @functools.cached_property
    def rebuilt(self) -> dict[str, list[np.ndarray]]:
        """The Keras 2 float rebuild's outputs on the same photos."""
        return self._outputs("float")

    def _outputs(self, prefix: str) -> dict[str, list[np.ndarray]]:
        res = {}
        for name in self.evals:
            with np.load(self.files / f"{prefix}_{name}.npz") as z:
                res[name] = [z[f"arr_{i}"] for i in range(len(z.files))]
        return res


def run_worker(model, feature_layer: str | None, calibration: np.ndarray, evals: dict[str, np.ndarray], work: Path,
               convert: bool = True, python: Path | None = None, timeout: float = 3600,
               say: Callable[[str], None] = lambda m: None, log_path: Path | None = None) -> Imx500Result:
    """Quantize (and convert) ``model`` for the IMX500 in the side environment; outputs on each of ``evals``.
    The side environment's output goes to ``log_path`` (default WORK/worker.log)."""
    python = python or side_python(say=say)
    if convert:
        require_java()
    graph, weights = portable_graph(model, (feature_layer,) if feature_layer else ())
    work.mkdir(parents=True, exist_ok=True)
    (work / "graph.json").write_text(json.dumps(graph, default=_json_default))
    np.savez(work / "weights.npz", **{f"{k}/{i}": a for k, ws in weights.items() for i, a in enumerate(ws)})
    np.save(work / "calibration.npy", np.asarray(calibration, np.uint8))
    for name, x in evals.items():
        np.save(work / f"eval_{name}.npy", np.asarray(x, np.uint8))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": "", "PYTHONUNBUFFERED": "1"}
    cmd = [str(python), str(WORKER), str(work)] + (["--convert"] if convert else [])
    lines: list[str] = []
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        log_path = log_path or work / "worker.log"
        with open(log_path, "w") as log:
            for line in proc.stdout:
                log.write(line)
                if line.startswith("@@ "):
                    say(f"imx500: {line[3:].strip()}")
                elif line.strip():
                    lines.append(line.strip())
                    del lines[:-20]
        rc = proc.wait()
    finally:
        timer.cancel()
    if rc != 0:
        why = f"killed after {timeout:.0f} s" if rc < 0 else (lines[-1] if lines else f"exit {rc}")
        raise ExportError(f"imx500: the side environment failed ({why}); its log: {log_path}")
    return read_result(work, tuple(evals), convert)


def read_result(work: Path, evals: tuple[str, ...], convert: bool = True) -> Imx500Result:
    """What the worker left in ``work``: the quantized and rebuilt networks' outputs on each evaluation set, its
    step times, and the converter's memory report (a refused conversion raises, with the converter's first error)."""
    out = work / "out"
    info = json.loads((out / "info.json").read_text())
    memory = None
    if convert:
        if info.get("converter_exit") != 0:
            log_text = (out / "converter.log").read_text() if (out / "converter.log").is_file() else ""
            errors = [ln for ln in log_text.splitlines() if "ERROR" in ln or "unsupported" in ln.lower()]
            raise ExportError("imx500: the converter refused the network: "
                              + (errors[0].strip() if errors else f"exit {info.get('converter_exit')}"))
        reports = list((out / "converted").glob("*MemoryReport.json"))
        memory = json.loads(reports[0].read_text())["Memory Report"] if reports else None
    return Imx500Result(info=info, memory=memory, files=out, evals=tuple(evals))


def memory_figures(memory: dict | None) -> dict:
    """The converter's memory report as numbers: MB used of the chip's 8, and whether it fits."""
    if not memory:
        return {}

    def mb(text: str) -> float:
        value, unit = float(text[:-2]), text[-2:].upper()
        return value / 1024 if unit == "KB" else value

    return {"memory_used_mb": mb(memory["Memory Usage"]), "chip_mb": mb(memory["Total Memory Available On Chip"]),
            "model_mb": mb(memory["Model Memory Physical Size"]),
            "runtime_mb": mb(memory["Runtime Memory Physical Size"]), "fits": bool(memory["Fit In Chip"])}


def write_package(files: Path, dest: Path, metadata: dict, bank: np.ndarray | None,
                  bank_labels: np.ndarray | None) -> list[str]:
    """The files the Pi needs, from the worker's output folder ``files`` into ``dest``: packerOut.zip (for
    `imx500-package`), labels.txt, the metadata beside the network.rpk that `imx500-package -o DEST` will write
    (network.rpk.json), and the feature bank for `unknown`.
    Written to a sibling folder first and moved into place whole, so a failure leaves the previous package."""
    from edgeflower.util.files import write_json

    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ("packerOut.zip", "dnnParams.xml"):
        shutil.copyfile(files / "converted" / name, staging / name)
    (staging / "labels.txt").write_text("\n".join(metadata["labels"]) + "\n")
    if bank is not None:
        np.savez_compressed(staging / "bank.npz", bank=np.asarray(bank, np.float16),
                            labels=np.asarray([] if bank_labels is None else bank_labels, np.int16))
    write_json(staging / "network.rpk.json", metadata)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    return sorted(p.name for p in dest.iterdir())


def similarity(features: np.ndarray, bank: np.ndarray, bank_labels: np.ndarray | None, k: int) -> np.ndarray:
    """What the Pi computes from the sensor's features, with the bank as bank.npz stores it (float16)."""
    from edgeflower.edge.imx500 import sensor_similarity

    return sensor_similarity(features, np.asarray(bank, np.float16), None if bank_labels is None
                             else np.asarray(bank_labels), k)
