"""modelsync: keep a fleet of TensorFlow Serving nodes serving the right model versions.

``modelsync.Client`` (``modelsync.notebook``) is the master's API for notebooks; it is imported
on first use, so the daemons that import this package never load it."""

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("Client", "ModelsyncError"):
        from modelsync import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'modelsync' has no attribute {name!r}")
