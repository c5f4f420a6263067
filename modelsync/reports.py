"""What node daemons send in their heartbeats (the node → master contract): each daemon's
``summary()`` returns its ``status`` type, the heartbeat sender builds the :class:`Heartbeat`.

The master treats every field as untrusted input: ``master/beat.py`` checks every report as it
arrives, and ``master/index.py`` reads these again with the same rules (a malformed field counts
as absent).
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from modelsync.layout import is_model_name, is_version, parse_version

ROLES = ("puller", "config_manager", "gateway")  # who sends heartbeats
MAX_EVENTS_PER_BEAT = 1000


class PullerStatus(TypedDict):
    """``remote_model_puller.daemon.Puller.summary()``."""

    installed: dict[str, list[int]]  # model -> versions on disk
    wanted: dict[str, list[int]]  # model -> versions the policy selects
    source: str  # "catalog" | "listing" | "none"
    disk_free_bytes: int | None  # None: the disk could not be asked
    last_poll_ok: bool | None  # None: no poll yet
    last_ok_at: float | None
    failures: list[str]  # "model/version: kind"


class ReloadReport(TypedDict):
    """The config manager's last reload of TF Serving."""

    at: float
    code: int  # TF Serving's status code (0: ok)
    error: str
    seconds: float
    settled: bool  # every version AVAILABLE or END within the load timeout
    models: dict[str, list[int]]  # model -> the versions pushed


class ConfigManagerStatus(TypedDict):
    """``config_manager.daemon.ConfigManager.summary()``: the real models only (no shadows)."""

    available: dict[str, list[int]]  # model -> versions TF Serving reports AVAILABLE
    states: dict[str, dict[str, str]]  # model -> version -> TF Serving state
    tfserving_up: bool | None  # None: not asked yet
    available_since: dict[str, dict[str, float]]  # model -> version -> when (node clock)
    failed: dict[str, dict[str, str]]  # model -> version -> why it is left out
    last_reload: ReloadReport | None


class ModelHistory(TypedDict):
    """What the gateway answered lately for one model (``gateway.history``)."""

    count: int  # requests since start, sampled or not
    errors: int
    by_status: dict[str, int]  # HTTP status -> requests
    ring: int  # entries kept
    p50_ms: float | None  # over the ring
    p99_ms: float | None
    last: list[dict[str, Any]]  # the newest entries, without captured bodies


class HistorySummary(TypedDict):
    models: dict[str, ModelHistory]
    sample: float
    per_model: int


class GatewayStatus(HistorySummary, total=False):
    """The gateway's heartbeat status: where the master reaches it (try-it), its history, and
    the container model versions whose ``/ping`` answered 200 on this node (model -> versions:
    what AVAILABLE is for a TF model)."""

    url: str
    auth: bool  # a token is required
    containers: dict[str, list[int]]


NodeStatus = PullerStatus | ConfigManagerStatus | GatewayStatus


class Heartbeat(TypedDict):
    """The body of ``POST /v1/nodes/heartbeat``."""

    node_id: str
    role: str  # one of ROLES
    hostname: str
    version: str  # modelsync's
    heartbeat_s: float
    status: NodeStatus
    events: list[dict[str, Any]]  # ``modelsync.events.Event.to_json()``, oldest first
    telemetry: NotRequired[dict[str, Any]]  # request telemetry (config manager), when there is


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
