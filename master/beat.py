"""A heartbeat as the master takes it: every name and number a node reports, checked.

A node's report is untrusted input. The master keeps only what it knows, in the shape it knows:
model names by the one rule (``modelsync.layout.is_model_name``), versions as integers
(``is_version``), times as finite numbers, counts and sizes as bounded integers, texts bounded.
Whatever fails is dropped — the one entry, or the one field — and listed in ``Beat.problems``
(the route records them as one event); the rest of the report is kept. A beat whose frame is
unusable (no valid node id or role, a status that is no object) is a ``BadBeat`` (400).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from modelsync.layout import MODEL_NAME_RE, is_model_name, is_node_id, is_version, parse_version
from modelsync.reports import MAX_EVENTS_PER_BEAT, ROLES

MAX_MODELS = 5000  # per map in one report
MAX_VERSIONS = 1000  # per model in one report
MAX_TEXT = 500
MAX_ERROR_TEXT = 2000
MAX_LIST = 200  # failures, recent requests
MAX_DETAIL_CHARS = 4096  # an event's details, as JSON
MAX_PROBLEMS = 20
MAX_COUNT = 2**63 - 1
MAX_TIME = 1e11  # seconds since the epoch (year 5138): anything later is no time
PROBLEM_REPEAT_S = 600.0  # the same problems of one daemon are recorded again after this
EVENT_RE = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
FIELD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
HOSTNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}\Z")
BUILD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}\Z")
WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}\Z")
STATUS_CODE_RE = re.compile(r"[1-5][0-9]{2}\Z")
FAILURE_RE = re.compile(r"(?P<model>[^/]+)/(?P<version>[0-9]+): (?P<kind>[A-Za-z0-9_ -]{1,64})\Z")
CONVENTIONS = ("mlflow", "kraken", "tfserving-rest", "")
UNANSWERED_RING = ""  # the gateway's ring of names that never answered (never read here)


class BadBeat(ValueError):
    """The heartbeat's frame is unusable: answered 400."""


@dataclass(frozen=True)
class Beat:
    node_id: str
    role: str
    hostname: str
    version: str
    heartbeat_s: float
    status: dict[str, Any]
    events: list[dict[str, Any]]
    telemetry: dict[str, Any] | None  # master.telemetry.parse_beat checks its figures
    problems: tuple[str, ...]


@dataclass
class Problems:
    """What was dropped, as short lines (a node's text in them is cut and quoted)."""

    lines: list[str] = field(default_factory=list)
    more: int = 0

    def drop(self, where: str, why: str) -> None:
        if len(self.lines) < MAX_PROBLEMS:
            self.lines.append(f"{where}: {why}")
        else:
            self.more += 1

    def result(self) -> tuple[str, ...]:
        return (*self.lines, *([f"and {self.more} more"] if self.more else []))


def quoted(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- values ---------------------------------------------------------------------------------------
Check = Callable[[Any, str, Problems], Any]
_DROP = object()  # a checker's "this field is dropped"


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def a_time(value: object) -> float | None:
    """A finite time in seconds since the epoch, or None."""
    return float(value) if _finite(value) and 0 <= float(value) < MAX_TIME else None  # type: ignore[arg-type]


def opt_time(value: Any, where: str, p: Problems) -> Any:
    if value is None or (t := a_time(value)) is not None:
        return None if value is None else t
    p.drop(where, f"{quoted(value)} is not a time")
    return _DROP


def opt_bool(value: Any, where: str, p: Problems) -> Any:
    if value is None or isinstance(value, bool):
        return value
    p.drop(where, f"{quoted(value)} is not true or false")
    return _DROP


def opt_count(value: Any, where: str, p: Problems) -> Any:
    if value is None or (
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT
    ):
        return value
    p.drop(where, f"{quoted(value)} is not a count")
    return _DROP


def opt_amount(value: Any, where: str, p: Problems) -> Any:
    """A finite, non-negative number (seconds, milliseconds, a share)."""
    if value is None or (_finite(value) and value >= 0):
        return value
    p.drop(where, f"{quoted(value)} is not a finite number >= 0")
    return _DROP


def text(limit: int, pattern: re.Pattern[str] | None = None) -> Check:
    def check(value: Any, where: str, p: Problems) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            p.drop(where, f"{quoted(value)} is not text")
            return _DROP
        if pattern is not None and not pattern.match(value):
            p.drop(where, f"{quoted(value)} is not of the expected form")
            return _DROP
        return value[:limit]

    return check


def model_key(name: object, where: str, p: Problems) -> bool:
    if isinstance(name, str) and is_model_name(name):
        return True
    p.drop(where, f"{quoted(name)} is not a model name")
    return False


def version_key(key: object, where: str, p: Problems) -> str | None:
    """A version given as a JSON object key: its canonical text, or None (dropped)."""
    version = parse_version(key) if isinstance(key, str) else None
    if version is None:
        p.drop(where, f"{quoted(key)} is not a version")
        return None
    return str(version)


def on_object(check: Callable[[Mapping[Any, Any], str, Problems], Any]) -> Check:
    """``check`` of an object field: an absent (null) field stays null, anything but an object
    is dropped."""

    def checked(value: Any, where: str, p: Problems) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            p.drop(where, f"expected an object, got {type(value).__name__}")
            return _DROP
        return check(value, where, p)

    return checked


def on_list(check: Callable[[list[Any], str, Problems], Any]) -> Check:
    """``check`` of a list field (at most ``MAX_LIST`` items are looked at)."""

    def checked(value: Any, where: str, p: Problems) -> Any:
        if value is None:
            return None
        if not isinstance(value, list):
            p.drop(where, "expected a list")
            return _DROP
        return check(value[:MAX_LIST], where, p)

    return checked


@on_object
def versions_map(raw: Mapping[Any, Any], where: str, p: Problems) -> Any:
    """model -> [versions]."""
    out: dict[str, list[int]] = {}
    for model, versions in list(raw.items())[:MAX_MODELS]:
        if not model_key(model, where, p):
            continue
        if not isinstance(versions, list) or len(versions) > MAX_VERSIONS:
            p.drop(f"{where}.{model}", "expected a list of versions")
            continue
        good = sorted({v for v in versions if is_version(v)})
        if len(good) != len(versions):
            bad = [v for v in versions if not is_version(v)]
            if bad:
                p.drop(f"{where}.{model}", f"{quoted(bad)} are not versions")
        out[model] = good
    if len(raw) > MAX_MODELS:
        p.drop(where, f"more than {MAX_MODELS} models")
    return out


def per_version(check: Check) -> Check:
    """model -> version (a JSON key) -> a value ``check`` keeps."""

    @on_object
    def nested(raw: Mapping[Any, Any], where: str, p: Problems) -> Any:
        out: dict[str, dict[str, Any]] = {}
        for model, versions in list(raw.items())[:MAX_MODELS]:
            if not model_key(model, where, p):
                continue
            if not isinstance(versions, dict):
                p.drop(f"{where}.{model}", "expected an object")
                continue
            inner = versions
            kept: dict[str, Any] = {}
            for key, item in list(inner.items())[:MAX_VERSIONS]:
                v = version_key(key, f"{where}.{model}", p)
                if v is None:
                    continue
                checked = check(item, f"{where}.{model}.{v}", p)
                if checked is not _DROP and checked is not None:
                    kept[v] = checked
            out[model] = kept
        return out

    return nested


@on_list
def failures(items: list[Any], where: str, p: Problems) -> Any:
    """The puller's ``["model/version: kind", ...]``."""
    out = []
    for item in items:
        m = FAILURE_RE.match(item) if isinstance(item, str) else None
        if m is None or not is_model_name(m["model"]) or parse_version(m["version"]) is None:
            p.drop(where, f"{quoted(item)} is not 'model/version: kind'")
            continue
        out.append(item)
    return out


def gateway_url(value: Any, where: str, p: Problems) -> Any:
    """Shown only: try-it never calls what a node says (see master.routes.scoring)."""
    if value is None:
        return None
    try:
        parts = urlsplit(value) if isinstance(value, str) and len(value) <= 300 else None
        port_ok = parts is not None and (parts.port is None or parts.port > 0)
    except ValueError:
        parts, port_ok = None, False
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        p.drop(where, f"{quoted(value)} is not an http(s) URL")
        return _DROP
    return value


def fields(spec: Mapping[str, Check]) -> Check:
    """An object with the fields of ``spec``; unknown fields are dropped."""

    @on_object
    def check(raw: Mapping[Any, Any], where: str, p: Problems) -> Any:
        out: dict[str, Any] = {}
        for key, item in raw.items():
            rule = spec.get(key) if isinstance(key, str) else None
            if rule is None:
                p.drop(where, f"unknown field {quoted(key)}")
                continue
            checked = rule(item, f"{where}.{key}" if where else key, p)
            if checked is not _DROP:
                out[key] = checked
        return out

    return check


def code(value: Any, where: str, p: Problems) -> Any:
    """A reload's result code: a gRPC status number, or its name."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**31:
        return value
    if isinstance(value, int):
        return _drop(p, where, value)
    return text(64, WORD_RE)(value, where, p)


@on_list
def entries(items: list[Any], where: str, p: Problems) -> Any:
    """The gateway's recent requests of one model."""
    entry = fields(
        {
            "ts": opt_time,
            "model": text(128, MODEL_NAME_RE),
            "version": lambda v, w, pr: v if v is None or is_version(v) else _drop(pr, w, v),
            "convention": lambda v, w, pr: v if v in CONVENTIONS else _drop(pr, w, v),
            "latency_ms": opt_amount,
            "status": lambda v, w, pr: (
                v
                if isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599
                else _drop(pr, w, v)
            ),
            "error": text(MAX_TEXT),
        }
    )
    out = []
    for i, item in enumerate(items):
        before = len(p.lines) + p.more
        checked = entry(item, f"{where}[{i}]", p)
        if isinstance(checked, dict) and len(p.lines) + p.more == before:
            out.append(checked)  # an entry with anything wrong is dropped whole
    return out


def _drop(p: Problems, where: str, value: object) -> object:
    p.drop(where, f"{quoted(value)} is not allowed here")
    return _DROP


@on_object
def by_status(raw: Mapping[Any, Any], where: str, p: Problems) -> Any:
    out: dict[str, int] = {}
    for key, n in list(raw.items())[:100]:
        if not (isinstance(key, str) and STATUS_CODE_RE.match(key)):
            p.drop(where, f"{quoted(key)} is not an HTTP status")
        elif opt_count(n, f"{where}.{key}", p) not in (_DROP, None):
            out[key] = n
    return out


@on_object
def gateway_models(raw: Mapping[Any, Any], where: str, p: Problems) -> Any:
    summary = fields(
        {
            "count": opt_count,
            "errors": opt_count,
            "ring": opt_count,
            "by_status": by_status,
            "p50_ms": opt_amount,
            "p99_ms": opt_amount,
            "last": entries,
        }
    )
    out: dict[str, Any] = {}
    for model, item in list(raw.items())[:MAX_MODELS]:
        if model == UNANSWERED_RING or not model_key(model, where, p):
            continue
        checked = summary(item, f"{where}.{model}", p)
        if isinstance(checked, dict):
            out[model] = checked
    return out


# --- each role's status ---------------------------------------------------------------------------
STATUS: dict[str, Check] = {
    "puller": fields(
        {
            "installed": versions_map,
            "wanted": versions_map,
            "source": text(32, WORD_RE),
            "disk_free_bytes": opt_count,
            "last_poll_ok": opt_bool,
            "last_ok_at": opt_time,
            "failures": failures,
        }
    ),
    "config_manager": fields(
        {
            "available": versions_map,
            "states": per_version(text(32, WORD_RE)),
            "tfserving_up": opt_bool,
            "available_since": per_version(opt_time),
            "failed": per_version(text(MAX_TEXT)),
            "last_reload": fields(
                {
                    "at": opt_time,
                    "code": code,
                    "error": text(MAX_ERROR_TEXT),
                    "seconds": opt_amount,
                    "settled": opt_bool,
                    "models": versions_map,
                }
            ),
        }
    ),
    "gateway": fields(
        {
            "url": gateway_url,
            "auth": opt_bool,
            "models": gateway_models,
            "sample": opt_amount,
            "per_model": opt_count,
            "containers": versions_map,
        }
    ),
}


# --- events ---------------------------------------------------------------------------------------
def _plain(value: Any) -> bool:
    """JSON made of finite numbers (no NaN or infinity), texts, lists and objects."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return value is None or isinstance(value, str | int | bool)


def event(raw: Any, where: str, p: Problems, now: float) -> dict[str, Any] | None:
    """One event, or None (dropped). A bad time becomes the master's time of receipt."""
    if not isinstance(raw, dict):
        p.drop(where, "an event must be an object")
        return None
    name = raw.get("event")
    if not isinstance(name, str) or not EVENT_RE.match(name):
        p.drop(where, f"{quoted(name)} is not an event name")
        return None
    model = raw.get("model")
    if model is not None and not model_key(model, f"{where}.model", p):
        return None
    at = raw.get("at")
    when = a_time(at) if at is not None else now
    if when is None:
        p.drop(f"{where}.at", f"{quoted(at)} is not a time (the master's time is kept)")
        when = now
    detail = {k: v for k, v in raw.items() if k not in ("event", "at", "model", "node")}
    bad_keys = [k for k in detail if not FIELD_RE.match(k)]
    if bad_keys or not _plain(detail):
        p.drop(where, f"event {name}: malformed details")
        return None
    if len(json.dumps(detail)) > MAX_DETAIL_CHARS:
        p.drop(where, f"event {name}: details longer than {MAX_DETAIL_CHARS} characters")
        return None
    return {"event": name, "at": when, **({"model": model} if model else {}), **detail}


def telemetry(raw: Any, p: Problems) -> dict[str, Any] | None:
    """The ``telemetry`` field with the figures of invalid model names dropped (the figures
    themselves are checked by ``master.telemetry.parse_beat``)."""
    if raw is None or not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
        return raw  # type: ignore[no-any-return]  # parse_beat refuses it with the reason
    models = {m: f for m, f in raw["models"].items() if model_key(m, "telemetry.models", p)}
    return {**raw, "models": models}


# --- the beat -------------------------------------------------------------------------------------
def parse_beat(doc: Mapping[str, Any], now: float) -> Beat:
    """The heartbeat ``doc`` checked (BadBeat if its frame is unusable)."""
    node_id, role = doc.get("node_id"), doc.get("role")
    if not is_node_id(node_id):
        raise BadBeat("'node_id' must be 1-128 of [A-Za-z0-9_.-]")
    if role not in ROLES:
        raise BadBeat(f"'role' must be one of {list(ROLES)}")
    raw_status = doc.get("status") or {}
    raw_events = doc.get("events") or []
    if not isinstance(raw_status, dict) or not isinstance(raw_events, list):
        raise BadBeat("'status' must be an object and 'events' a list")
    if len(raw_events) > MAX_EVENTS_PER_BEAT:
        raise BadBeat(f"at most {MAX_EVENTS_PER_BEAT} events per heartbeat")
    p = Problems()
    status = STATUS[str(role)](raw_status, "status", p)
    events = [
        e
        for i, raw in enumerate(raw_events)
        if (e := event(raw, f"events[{i}]", p, now)) is not None
    ]
    hostname = text(255, HOSTNAME_RE)(doc.get("hostname") or None, "hostname", p)
    build = text(64, BUILD_RE)(doc.get("version") or None, "version", p)
    hb = doc.get("heartbeat_s", 10)
    heartbeat_s = float(hb) if _finite(hb) and 0.5 <= hb <= 3600 else 10.0
    return Beat(
        node_id,
        str(role),
        hostname if isinstance(hostname, str) else "",
        build if isinstance(build, str) else "",
        heartbeat_s,
        status if isinstance(status, dict) else {},
        events,
        telemetry(doc.get("telemetry"), p),
        p.result(),
    )


class ProblemLog:
    """Which daemons' problems were recorded lately: the same problems again are recorded once
    per ``PROBLEM_REPEAT_S`` (a node that keeps sending a bad field makes no event flood)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], tuple[str, float]] = {}

    def fresh(self, node_id: str, role: str, problems: tuple[str, ...], now: float) -> bool:
        digest = hashlib.sha256("\n".join(problems).encode()).hexdigest()
        with self._lock:
            last = self._last.get((node_id, role))
            if last is not None and last[0] == digest and now - last[1] < PROBLEM_REPEAT_S:
                return False
            if len(self._last) >= 100_000:
                self._last.clear()
            self._last[(node_id, role)] = (digest, now)
            return True
