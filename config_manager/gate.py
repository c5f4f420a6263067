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
from typing import Any

from config_manager.checks import ValidationResult, shadow_name
from config_manager.serving import AVAILABLE, VersionState
from config_manager.validation import Validator
from modelsync.events import EventLog
from modelsync.local import LocalLayout

Key = tuple[str, int]


class ValidationGate:
    def __init__(self, layout: LocalLayout, validator: Validator | None, events: EventLog) -> None:
        self.layout = layout
        self.validator = validator  # None: validation is off
        self.events = events
        self.last: dict[Key, dict[str, Any]] = {}

    @property
    def on(self) -> bool:
        return self.validator is not None

    def verdicts(self) -> tuple[dict[Key, str] | None, dict[Key, str]]:
        """(validated, rejected): fingerprint per version; validated None when off."""
        if self.validator is None:
            return None, {}
        records = self.layout.read_validations()
        self.last = records
        return (
            {k: r["fingerprint"] for k, r in records.items() if r.get("ok")},
            {k: r["fingerprint"] for k, r in records.items() if not r.get("ok")},
        )

    def reasons(self) -> dict[Key, str]:
        return {
            k: f"validation: {r.get('reason', '')}" for k, r in self.last.items() if not r.get("ok")
        }

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
        doc = {
            "fingerprint": fingerprint,
            "at": time.time(),
            "seconds": round(seconds, 3),
            **result.to_json(),
        }
        self.layout.write_validation(model, version, doc)
        self.last[(model, version)] = doc
        if result.ok:
            self.events.emit(
                "version_validated",
                model=model,
                version=version,
                source=result.source,
                requests=result.requests,
                p50_ms=doc["p50_ms"],
                p99_ms=doc["p99_ms"],
            )
        else:
            self.events.emit(
                "version_validation_failed",
                "error",
                model=model,
                version=version,
                source=result.source,
                error=result.reason,
                requests=result.requests,
            )

    def forget(self, model: str, version: int) -> None:
        self.layout.remove_validation(model, version)
        self.last.pop((model, version), None)

    def close(self) -> None:
        if self.validator is not None:
            self.validator.close()
