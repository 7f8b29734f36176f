"""Quiet by default: TensorFlow's start-up and converter noise stays out of the terminal unless -v.

TensorFlow's C++ libraries write to the process's file descriptors, not to Python's streams: absl's "All log
messages before absl::InitializeLog()", "cudart_stub", "failed call to cuInit", oneDNN and CPU-feature notes when it
loads, and the TFLite quantizer's "fully_quantize: 0, inference_type: 6, ..." when it converts. Python adds the
converter's UserWarning and the tensorflow/absl loggers. None of it is an error of the user's run.

``configure(verbose)`` (the CLI calls it before any command) sets TF_CPP_MIN_LOG_LEVEL before TensorFlow is imported
(a value the user set is kept), filters those packages' Python warnings and loggers, and makes the first
``import tensorflow`` run inside ``quiet_fds``. Code that calls a chatty C++ function (a converter, an interpreter)
wraps it in ``quiet_fds``. With -v nothing is hidden; when the wrapped code raises, what it printed is written to
stderr before the error goes on, so a failure is never silent. Standard library only: the device side may use it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys
import tempfile
import warnings
from typing import Iterator

_verbose = 0  # set by configure(); library use without the CLI is quiet too

NOISY = ("tensorflow", "keras", "tf_keras", "tf2onnx", "absl")  # their Python warnings and loggers


def configure(verbose: int) -> None:
    """Hide TensorFlow's noise for the rest of the process unless ``verbose`` (the CLI's -v count)."""
    global _verbose
    _verbose = verbose
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ INFO, WARNING and ERROR lines (cuInit, oneDNN)
    for name in NOISY:
        warnings.filterwarnings("ignore", module=rf"{name}(\.|$)")
        logging.getLogger(name).setLevel(logging.ERROR)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport("tensorflow"))


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):  # C stdio buffers: text printf'd inside the block stays inside it
        import ctypes

        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def quiet_fds() -> Iterator[None]:
    """Send what the block writes to file descriptors 1 and 2 (C++ included) to a temporary file, and drop it;
    when the block raises, write it to stderr first. Does nothing with -v or when the descriptors cannot be
    duplicated."""
    if _verbose:
        yield
        return
    saved: list[tuple[int, int]] = []
    try:
        for fd in (1, 2):
            saved.append((fd, os.dup(fd)))
    except OSError:
        for _, copy in saved:
            os.close(copy)
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        _flush()
        for fd, _ in saved:
            os.dup2(tmp.fileno(), fd)
        try:
            yield
        except BaseException:
            _restore(saved)
            tmp.seek(0)
            captured = tmp.read()
            if captured:
                os.write(2, captured)
            raise
        else:
            _restore(saved)


def _restore(saved: list[tuple[int, int]]) -> None:
    _flush()
    while saved:
        fd, copy = saved.pop()
        os.dup2(copy, fd)
        os.close(copy)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Runs the first import of one package inside ``quiet_fds`` (its C++ libraries log while they load), then
    steps aside: the module keeps its own loader, and a missing package fails as it would without this."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = module.__spec__.loader = self.loader
        with quiet_fds():
            self.loader.exec_module(module)

    def __getattr__(self, name):
        return getattr(self.loader, name)
