"""edgeflower: train an image classifier, export it to int8 TFLite/ONNX with an accuracy gate, run it on a Pi."""

__version__ = "0.1.0"
