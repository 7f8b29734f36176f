"""The device runtime: numpy, Pillow and one interpreter (ai-edge-litert, tflite-runtime or onnxruntime).

Never imports TensorFlow; training and export import *from* here so that every side sees the same pixels.
"""

from edgeflower.edge.backends import BACKENDS, Backend
from edgeflower.edge.classifier import UNKNOWN, Classifier, Prediction, Smoother
from edgeflower.edge.loader import load_backend
from edgeflower.edge.metadata import read_metadata, sidecar_path
from edgeflower.edge.preprocess import PREPROCESSING, preprocess

__all__ = ["BACKENDS", "Backend", "Classifier", "PREPROCESSING", "Prediction", "Smoother", "UNKNOWN",
           "load_backend", "preprocess", "read_metadata", "sidecar_path"]
