"""Export: Keras -> float/int8 TFLite and float/int8 ONNX, each measured through the edge runtime and gated."""
