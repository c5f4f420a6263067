"""Small helpers of the GCS store's HTTP side: timestamps, unreachable endpoints, the pool."""

from __future__ import annotations

import datetime
from typing import Any


def rfc3339(text: str) -> float | None:
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def unreachable_reason(exc: BaseException) -> str | None:
    """A short reason when ``exc`` (or what it wraps) says the endpoint cannot be reached."""
    import requests

    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            break
        if isinstance(seen, requests.exceptions.ConnectTimeout | TimeoutError):
            return "timed out connecting"
        if isinstance(seen, requests.exceptions.ReadTimeout):
            return "timed out waiting for an answer"
        if isinstance(seen, requests.exceptions.ConnectionError | ConnectionError):
            text = str(seen)
            for hint in (
                "Connection refused",
                "Name or service not known",
                "Temporary failure in name resolution",
                "No route to host",
                "Network is unreachable",
                "Connection reset",
            ):
                if hint in text:
                    return hint.lower()
            return "connection failed"
        seen = seen.__cause__ or seen.__context__ or getattr(seen, "cause", None)
    return None


def widen_pool(client: Any, pool_size: int) -> None:
    """Let parallel transfers share one client without "connection pool is full" churn."""
    import requests.adapters

    session = getattr(client, "_http", None)
    if session is None or not hasattr(session, "mount"):
        return
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
