"""The one exception of modelsync.telemetry and the checks of untrusted numbers (pure: no I/O).

Counts are ``int64`` as TF Serving's exporter writes them (``NAME{labels} <int64>``,
``NAME_count{labels} <int64>`` in ``tensorflow_serving/util/prometheus_exporter.cc``), hence
:data:`MAX_COUNT`; a JSON number is accepted only when it is a finite ``int`` or ``float``.
"""

from __future__ import annotations

import math

MAX_COUNT = 2**63 - 1


class TelemetryError(ValueError):
    """Malformed telemetry (a bad histogram, a bad heartbeat document); the message says where."""


def _finite(value: object, where: str) -> float:
    """A JSON number as a finite float; TelemetryError for anything else (bools included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TelemetryError(f"{where}: expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        raise TelemetryError(f"{where}: number too large") from None
    if not math.isfinite(number):
        raise TelemetryError(f"{where}: expected a finite number, got {value!r}")
    return number


def _is_count(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_COUNT


__all__ = ["MAX_COUNT", "TelemetryError"]
