"""The validation gate: no client request reaches a version that has not passed validation.

The planner keeps a version out of the real model's config until its content (fingerprint) has
a passing validation record, and meanwhile loads it under its shadow name; once TF Serving
reports the shadow AVAILABLE the gate replays the validation requests against it
(``validation.GrpcValidator``) and records the verdict in ``MODEL_ROOT/.modelsync/validated/``.
A pass lets the next reload put the version into the real model (the shadow is dropped); a
failure leaves it out, reported, until its content changes. Why this and not a separate
candidates directory: the version's files are already where TF Serving's real model will read
them, atomically installed and checksum-verified, so validation loads the very bytes that will
serve, and no second move can race a reader.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from config_manager.checks import ValidationResult, shadow_name
from config_manager.serving import AVAILABLE, VersionState
from config_manager.validation import Validator
from modelsync.events import EventLog
from modelsync.local import LocalLayout

Key = tuple[str, int]


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


@dataclass(frozen=True)
class ValidationRecord:
    """The gate's verdict on one version's content, as kept in
    ``MODEL_ROOT/.modelsync/validated/<model>/<version>.json`` and shown in ``/status``: the
    content it judged (fingerprint), the outcome and why, and the replay's figures. The fields
    are in the JSON's order (``to_json`` is ``asdict``)."""

    fingerprint: str
    at: float  # wall clock
    seconds: float  # the whole replay
    ok: bool
    reason: str
    source: str = ""  # "warmup" | "expectations" | "signature"
    requests: int = 0
    p50_ms: float | None = None  # latencies of the replayed requests
    p99_ms: float | None = None
    max_ms: float | None = None

    @classmethod
    def of(
        cls, fingerprint: str, result: ValidationResult, at: float, seconds: float
    ) -> ValidationRecord:
        return cls(fingerprint, at, round(seconds, 3), **result.to_json())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ValidationRecord:
        """A record read back (``LocalLayout.read_validations`` checked its fingerprint); a
        malformed field counts as absent, and anything but ``ok: true`` as a failure."""
        requests = doc.get("requests")
        if not isinstance(requests, int) or isinstance(requests, bool):
            requests = 0
        return cls(
            fingerprint=str(doc["fingerprint"]),
            at=_number(doc.get("at")) or 0.0,
            seconds=_number(doc.get("seconds")) or 0.0,
            ok=doc.get("ok") is True,
            reason=str(doc.get("reason", "")),
            source=str(doc.get("source", "")),
            requests=requests
            if isinstance(requests, int) and not isinstance(requests, bool)
            else 0,
            p50_ms=_number(doc.get("p50_ms")),
            p99_ms=_number(doc.get("p99_ms")),
            max_ms=_number(doc.get("max_ms")),
        )


class ValidationGate:
    def __init__(self, layout: LocalLayout, validator: Validator | None, events: EventLog) -> None:
        self.layout = layout
        self.validator = validator  # None: validation is off
        self.events = events
        self.last: dict[Key, ValidationRecord] = {}

    def verdicts(self) -> tuple[dict[Key, str] | None, dict[Key, str]]:
        """(validated, rejected): fingerprint per version; validated None when off."""
        if self.validator is None:
            return None, {}
        records = {
            k: ValidationRecord.from_json(doc) for k, doc in self.layout.read_validations().items()
        }
        self.last = records
        return (
            {k: r.fingerprint for k, r in records.items() if r.ok},
            {k: r.fingerprint for k, r in records.items() if not r.ok},
        )

    def reasons(self) -> dict[Key, str]:
        return {k: f"validation: {r.reason}" for k, r in self.last.items() if not r.ok}

    def run(
        self,
        pending: tuple[Key, ...],
        states: Mapping[str, Mapping[int, VersionState]],
        installed: Mapping[str, Mapping[int, str]],
    ) -> int:
        """Validate every pending version TF Serving reports AVAILABLE under its shadow name;
        returns how many verdicts were recorded."""
        if self.validator is None:
            return 0
        done = 0
        for model, version in pending:
            state = states.get(shadow_name(model), {}).get(version)
            fingerprint = installed.get(model, {}).get(version)
            if state is None or state.state != AVAILABLE or fingerprint is None:
                continue
            started = time.monotonic()
            result = self.validator.validate(
                shadow_name(model), version, self.layout.version_dir(model, version)
            )
            self.record(model, version, fingerprint, result, time.monotonic() - started)
            done += 1
        return done

    def record(
        self, model: str, version: int, fingerprint: str, result: ValidationResult, seconds: float
    ) -> None:
        record = ValidationRecord.of(fingerprint, result, time.time(), seconds)
        self.layout.write_validation(model, version, record.to_json())
        self.last[(model, version)] = record
        which = {"model": model, "version": version, "source": result.source}
        if result.ok:
            figures = {"p50_ms": record.p50_ms, "p99_ms": record.p99_ms}
            self.events.emit("version_validated", **which, requests=result.requests, **figures)
        else:
            why = {"error": result.reason, "requests": result.requests}
            self.events.emit("version_validation_failed", "error", **which, **why)

    def forget(self, model: str, version: int) -> None:
        self.layout.remove_validation(model, version)
        self.last.pop((model, version), None)

    def close(self) -> None:
        if self.validator is not None:
            self.validator.close()
