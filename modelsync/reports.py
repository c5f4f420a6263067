"""What node daemons report in their heartbeats' ``status`` (the node → master contract).

The master treats every field as untrusted input: ``master/beat.py`` checks every report as it
arrives, and ``master/index.py`` reads these again with the same rules (a malformed field counts
as absent).
"""

from __future__ import annotations

from typing import Any, TypedDict

from modelsync.layout import is_model_name, is_version, parse_version

ROLES = ("puller", "config_manager", "gateway")  # who sends heartbeats
MAX_EVENTS_PER_BEAT = 1000


class PullerStatus(TypedDict, total=False):
    installed: dict[str, list[int]]  # model -> versions on disk
    wanted: dict[str, list[int]]  # model -> versions the policy selects
    source: str  # "catalog" | "listing" | "none"
    last_poll_ok: bool | None
    last_ok_at: float | None
    failures: list[str]  # "model/version: kind"
    disk_free_bytes: int


class ConfigManagerStatus(TypedDict, total=False):
    available: dict[str, list[int]]  # model -> versions TF Serving reports AVAILABLE
    available_since: dict[str, dict[str, float]]  # model -> version -> when (node clock)
    states: dict[str, dict[str, str]]  # model -> version -> TF Serving state
    tfserving_up: bool | None
    failed: dict[str, dict[str, str]]  # model -> version -> why it is left out
    last_reload: dict[str, Any] | None
    telemetry: dict[str, Any]  # model -> interval figures (modelsync.telemetry)


def versions_of(status: Any, key: str) -> dict[str, set[int]]:
    """``status[key]`` as model -> versions; anything malformed is skipped."""
    raw = status.get(key) if isinstance(status, dict) else None
    if not isinstance(raw, dict):
        return {}
    out: dict[str, set[int]] = {}
    for model, versions in raw.items():
        if not isinstance(model, str) or not is_model_name(model) or not isinstance(versions, list):
            continue
        vs = {v for v in versions if is_version(v)}
        if vs:
            out[model] = vs
    return out


def nested_of(status: Any, key: str) -> dict[str, dict[int, Any]]:
    """``status[key]`` as model -> version -> value (version keys are JSON strings)."""
    raw = status.get(key) if isinstance(status, dict) else None
    if not isinstance(raw, dict):
        return {}
    out: dict[str, dict[int, Any]] = {}
    for model, versions in raw.items():
        if not isinstance(model, str) or not is_model_name(model) or not isinstance(versions, dict):
            continue
        for v, value in versions.items():
            version = parse_version(v) if isinstance(v, str) else None
            if version is not None:
                out.setdefault(model, {})[version] = value
    return out
