"""What makes a validation pass (pure: no I/O): every float output finite, expectations held,
and the requests to send when a version brings none of its own.

A version may carry ``assets.extra/modelsync_expectations.json``::

    {"requests": [{"inputs": {"x": [1.0, 2.0]}, "outputs": {"y": [3.0, 5.0]},
                   "tolerance": 1e-5, "signature_name": "serving_default"}]}

``inputs`` and ``outputs`` are TF Serving REST's columnar ``inputs`` form (a list per tensor);
``tolerance`` is the absolute difference allowed per element (default 1e-6).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelsync.tensors import Array, Signature

MAX_EXPECTATIONS = 1000
SHADOW_PREFIX = "_validate."  # no model name can start with "_": layout.MODEL_NAME_RE


def shadow_name(model: str) -> str:
    """The reserved name a version is validated under, out of every client's reach."""
    return SHADOW_PREFIX + model


def shadowed(name: str) -> str | None:
    """The model a shadow name validates (None: not a shadow name)."""
    return name[len(SHADOW_PREFIX) :] if name.startswith(SHADOW_PREFIX) else None


class ExpectationError(ValueError):
    """``modelsync_expectations.json`` is malformed."""


@dataclass(frozen=True)
class Expectation:
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    tolerance: float = 1e-6
    signature_name: str = ""


def parse_expectations(data: bytes) -> list[Expectation]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ExpectationError(f"not valid JSON: {exc}") from None
    requests = doc.get("requests") if isinstance(doc, dict) else None
    if not isinstance(requests, list) or not requests or len(requests) > MAX_EXPECTATIONS:
        raise ExpectationError(f'expected {{"requests": [...]}} with 1-{MAX_EXPECTATIONS} entries')
    out = []
    for i, r in enumerate(requests):
        where = f"requests[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("inputs"), dict) or not r["inputs"]:
            raise ExpectationError(f"{where}: expected an object with 'inputs'")
        outputs = r.get("outputs", {})
        tolerance = r.get("tolerance", 1e-6)
        if not isinstance(outputs, dict):
            raise ExpectationError(f"{where}.outputs: expected an object")
        if (
            not isinstance(tolerance, int | float)
            or isinstance(tolerance, bool)
            or not math.isfinite(tolerance)
            or tolerance < 0
        ):
            raise ExpectationError(f"{where}.tolerance: expected a non-negative number")
        out.append(
            Expectation(r["inputs"], outputs, float(tolerance), str(r.get("signature_name", "")))
        )
    return out


def non_finite(outputs: Mapping[str, Array]) -> str | None:
    """Why the outputs are unusable: a NaN or an infinity in a float output."""
    for name, arr in sorted(outputs.items()):
        if arr.dtype.kind in "fc" and arr.size and not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            first = np.argwhere(~np.isfinite(arr))[0].tolist()
            return (
                f"output {name!r} has {bad} non-finite value(s) (e.g. {arr[tuple(first)]} "
                f"at {first})"
            )
    return None


def mismatch(
    expected: Mapping[str, Any], outputs: Mapping[str, Array], tolerance: float
) -> str | None:
    for name, want in sorted(expected.items()):
        if name not in outputs:
            return f"output {name!r} expected, not answered (outputs: {sorted(outputs)})"
        got = outputs[name]
        try:
            target = np.asarray(want, dtype=got.dtype if got.dtype.kind in "fiub" else object)
        except (TypeError, ValueError):
            return f"output {name!r}: the expected value does not fit its dtype {got.dtype}"
        if target.shape != got.shape:
            return f"output {name!r}: shape {list(got.shape)}, expected {list(target.shape)}"
        if got.dtype.kind in "fc":
            diff = np.abs(got.astype(np.float64) - target.astype(np.float64))
            if not np.all(diff <= tolerance):
                i = int(np.argmax(diff))
                return (
                    f"output {name!r}: {got.reshape(-1)[i]} where {target.reshape(-1)[i]} "
                    f"was expected (tolerance {tolerance:g})"
                )
        elif not np.array_equal(got, target):
            return f"output {name!r}: {got.tolist()!r} where {target.tolist()!r} was expected"
    return None


_ZEROS = {"string": b"", "bool": False}


def default_inputs(signature: Signature) -> dict[str, Array]:
    """One request from the signature's input spec: every unknown dimension 1, zeros."""
    out: dict[str, Array] = {}
    for name, spec in sorted(signature.inputs.items()):
        shape = tuple(1 if d is None or d < 0 else d for d in (spec.shape or (1,)))
        if spec.dtype == "string":
            arr: Array = np.full(shape, b"", dtype=object)
        else:
            arr = np.zeros(shape, dtype=np.dtype(spec.dtype))
        out[name] = arr
    return out


@dataclass(frozen=True)
class ValidationResult:
    ok: bool
    reason: str
    source: str = ""  # "warmup" | "expectations" | "signature"
    requests: int = 0
    latencies_ms: tuple[float, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {
            "ok": self.ok,
            "reason": self.reason,
            "source": self.source,
            "requests": self.requests,
            "p50_ms": round(lat[len(lat) // 2], 3) if lat else None,
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3) if lat else None,
            "max_ms": round(lat[-1], 3) if lat else None,
        }
