"""Training side: model registry, training loop, evaluation reports. Imports TensorFlow lazily."""
