"""Request telemetry as time series: ``GET /v1/models/<m>/metrics`` (read token)."""

from __future__ import annotations

import math
import re
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from master.api import ApiError, check_model, need, state
from master.telemetry import MINUTE, Figures, by_version_json, figures_json, merged, per_version

bp = Blueprint("telemetry", __name__)
DURATION_PATTERN = r"(\d+(?:\.\d+)?)([smhd])"  # 15m, 1h, 7d (the OpenAPI pattern is built on it)
DURATION_RE = re.compile(DURATION_PATTERN + r"\Z")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_POINTS = 1000


def when(text: str | None, now: float, name: str) -> float | None:
    """A time argument: a duration before now (``15m``, ``1h``, ``7d``) or a Unix time."""
    if text is None or text == "":
        return None
    m = DURATION_RE.match(text)
    if m:
        return now - float(m.group(1)) * UNITS[m.group(2)]
    try:
        value = float(text)
    except ValueError:
        raise ApiError(
            400, f"'{name}' must be a duration such as 15m, 1h, 7d or a Unix time, got {text!r}"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise ApiError(400, f"'{name}' must be a finite, non-negative time")
    return value


def step_arg(text: str | None, span: float, unit: int) -> int:
    if text:
        try:
            step = int(text)
        except ValueError:
            raise ApiError(400, f"'step' must be a whole number of seconds, got {text!r}") from None
        if step < unit or step % unit:
            raise ApiError(400, f"'step' must be a multiple of {unit} s here, got {step}")
    else:
        step = max(unit, math.ceil(span / 120 / unit) * unit)
    if span / step > MAX_POINTS:
        raise ApiError(400, f"at most {MAX_POINTS} points: raise 'step' or shorten the range")
    return step


def point(t: float, f: Figures, step: float, until: float) -> dict[str, Any]:
    """One step of a series; the rates of the last, unfinished step over the time it covers."""
    span = max(1.0, min(step, until - t))
    return {"t": t, **figures_json(f.whole, span), "by_version": by_version_json(f, span)}


@bp.get("/v1/models/<model>/metrics")
def model_metrics(model: str) -> Response:
    need("read")
    check_model(model)
    s = state()
    now = time.time()
    args = request.args
    since = when(args.get("since") or "1h", now, "since")
    until = when(args.get("until"), now, "until") or now
    assert since is not None
    if not since < until:
        raise ApiError(400, "'since' must be before 'until'")
    if since < now - s.settings.telemetry_retention_s - 86400:
        raise ApiError(
            400,
            "'since' reaches back beyond the telemetry kept "
            f"(MODELSYNC_TELEMETRY_RETENTION_S={s.settings.telemetry_retention_s:g})",
        )
    node = args.get("node")
    buckets: dict[float, Figures] = {}
    if node:
        step = step_arg(args.get("step"), until - since, 1)
        for t, fig in s.telemetry.node_rows(model, node, since, until):
            buckets.setdefault(t // step * step, Figures()).add(fig.interval, per_version(fig))
    else:
        step = step_arg(args.get("step"), until - since, MINUTE)
        for minute, f in s.telemetry.model_minutes(model, since, until).items():
            buckets.setdefault(minute // step * step, Figures()).merge(f)
    start = since // step * step
    series = [
        point(t, buckets.get(t, Figures()), step, until)
        for t in (start + i * step for i in range(int((until - start) // step) + 1))
    ]
    total = merged(buckets.values())
    return jsonify(
        {
            "model": model,
            "node": node,
            "since": since,
            "until": until,
            "step": step,
            "series": series,
            "total": {
                **figures_json(total.whole, until - since),
                "by_version": by_version_json(total, until - since),
            },
        }
    )


@bp.get("/v1/metrics/sparklines")
def sparklines() -> Response:
    """Requests per minute of every model over the last ``since`` (default 15m), for tables."""
    need("read")
    now = time.time()
    since = when(request.args.get("since") or "15m", now, "since")
    assert since is not None
    if now - since > 86400:
        raise ApiError(400, "'since' may reach back one day at most here")
    start = int(since // MINUTE) * MINUTE
    minutes = list(range(start, int(now) + 1, MINUTE))
    rows = state().telemetry.sparklines(since)
    return jsonify(
        {
            "minutes": minutes,
            "step": MINUTE,
            # the last minute is under way until now + its rest: a table leaves it out (or
            # draws it as partial) instead of showing a dip that is not there
            "now": now,
            "partial": minutes[-1] if minutes and minutes[-1] + MINUTE > now else None,
            "models": {m: [per.get(t, 0) for t in minutes] for m, per in rows.items()},
        }
    )
