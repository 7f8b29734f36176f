"""edgeflower: train an image classifier, export it to int8 TFLite/ONNX with an accuracy gate, run it on a Pi.

    import edgeflower
    run = edgeflower.train("my_photos", out="runs/mine")
    report = run.export(int8=True)
    label = edgeflower.Classifier.load(report.path("model_int8.tflite")).classify("photo.jpg").label

The library's functions and results are in ``edgeflower.api`` (docs/python.md); they are imported on first use,
so ``import edgeflower`` loads neither TensorFlow nor an interpreter.
"""

from edgeflower.util.version import __version__

_API = ("Artifact", "BenchReport", "BenchResult", "ExportReport", "Run", "add_photos", "bench", "check_data",
        "clean_data", "evaluate", "export", "model_names", "review", "split_data", "train")
_EDGE = ("Classifier", "Prediction", "UNKNOWN")
_ERRORS = ("EdgeflowerError", "AccuracyDropError", "ExportError", "DataError", "ModelError", "BackendError",
           "ImageError")

__all__ = ["__version__", *_API, *_EDGE, *_ERRORS]


def __getattr__(name: str):
    if name in _API:
        from edgeflower import api

        return getattr(api, name)
    if name in _EDGE:
        from edgeflower import edge

        return getattr(edge, name)
    if name in _ERRORS:
        from edgeflower import errors

        return getattr(errors, name)
    raise AttributeError(f"module 'edgeflower' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
