"""modelsync: keep a fleet of TensorFlow Serving nodes serving the right model versions."""

__version__ = "0.1.0"
