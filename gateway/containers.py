"""Container models on this node: where each version listens, and the call to it.

The master runs each container model version as a Swarm service whose container port is
published on every serving node at a host port of its own (``master.containers``). It tells
each node's gateway, in the answer to the gateway's heartbeat, the container versions that node
serves and their host ports (``ContainerRoutes.update``); with the master down the gateway keeps
the last routes it learned (the services do not change without the master either).

A request for a model the routes know goes to ``POST http://127.0.0.1:<host port>/invocations``
(the serving contract: JSON or CSV in, predictions out) instead of TF Serving; the answer
comes back as it is, and an error in the same shape as a TF model's.

Validation before traffic, on the node: a checker thread asks each route's ``GET /ping`` (every
``ping_s`` until it answers 200, then every ``recheck_s``), and a request without a version goes
to the newest version whose ``/ping`` answered 200 — never to one that is not ready (an image
that never turns ready is never routed to; the master rolls it back). A request naming a
version goes to it, ready or not.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError
from gateway.rest_proxy import RestProxy
from modelsync.layout import is_model_name, is_version, parse_version
from modelsync.log import get_logger

log = get_logger("gateway")
CONTENT_TYPES = ("application/json", "text/csv")
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class ContainerRoute:
    versions: Mapping[int, int]  # version -> host port
    latest: int
    labels: Mapping[str, int] = field(default_factory=dict)


Target = tuple[str, int, int]  # (model, version, host port)


def _targets(routes: Mapping[str, ContainerRoute]) -> set[Target]:
    return {(m, v, p) for m, r in routes.items() for v, p in r.versions.items()}


def parse_routes(doc: Any) -> dict[str, ContainerRoute]:
    """The heartbeat answer's ``containers`` (``master.containers.plan.node_routes``); what is
    malformed is left out (never trusted as a port)."""
    out: dict[str, ContainerRoute] = {}
    if not isinstance(doc, dict):
        return out
    for model, entry in doc.items():
        if not isinstance(model, str) or not is_model_name(model) or not isinstance(entry, dict):
            continue
        raw = entry.get("versions")
        versions = {}
        for text, port in raw.items() if isinstance(raw, dict) else ():
            v = parse_version(text) if isinstance(text, str) else None
            if v is not None and isinstance(port, int) and 1 <= port <= 65535:
                versions[v] = port
        latest = entry.get("latest")
        if not versions or not is_version(latest) or latest not in versions:
            continue
        labels = entry.get("labels")
        out[model] = ContainerRoute(
            versions,
            latest,
            {
                k: v
                for k, v in (labels.items() if isinstance(labels, dict) else ())
                if isinstance(k, str) and v in versions
            },
        )
    return out


class ContainerRoutes:
    """What this node's container models are, whether each answers ``/ping``, and the
    connections to them."""

    def __init__(
        self,
        timeout_s: float = 30.0,
        host: str = "127.0.0.1",
        ping_s: float = 1.0,
        recheck_s: float = 10.0,
    ) -> None:
        self.timeout_s = timeout_s
        self.host = host
        self.ping_s, self.recheck_s = ping_s, recheck_s
        self._routes: dict[str, ContainerRoute] = {}
        self._proxies: dict[int, RestProxy] = {}
        # (model, version, host port) -> (/ping answered 200, when): by all three, so a port
        # another version had before is not taken as ready for this one
        self._ready: dict[Target, tuple[bool, float]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._checker: threading.Thread | None = None

    def models(self) -> dict[str, list[int]]:
        """Container model -> its versions routed on this node (the OpenAPI document)."""
        with self._lock:
            return {m: sorted(r.versions) for m, r in self._routes.items()}

    def update(self, answer: Mapping[str, Any]) -> None:
        """From a heartbeat answer; one without ``containers`` (an older master) changes nothing."""
        if "containers" not in answer:
            return
        routes = parse_routes(answer["containers"])
        if routes != self._routes:
            log.info(
                "container_routes",
                models={m: sorted(r.versions) for m, r in sorted(routes.items())},
            )
        self.set(routes)

    def set(self, routes: dict[str, ContainerRoute]) -> None:
        with self._lock:
            self._routes = routes
            ports = {p for r in routes.values() for p in r.versions.values()}
            for port in [p for p in self._proxies if p not in ports]:
                self._proxies.pop(port).close()
            targets = _targets(routes)
            self._ready = {t: r for t, r in self._ready.items() if t in targets}
            if ports and self._checker is None:
                self._checker = threading.Thread(
                    target=self._check_loop, name="container-ping", daemon=True
                )
                self._checker.start()
        self._wake.set()

    # --- readiness ------------------------------------------------------------------------
    def ping(self, port: int) -> bool:
        """``GET /ping`` answered 200 (within a short deadline)."""
        conn = http.client.HTTPConnection(self.host, port, timeout=min(self.timeout_s, 2.0))
        try:
            conn.request("GET", "/ping")
            resp = conn.getresponse()
            resp.read()
            return resp.status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def check(self) -> None:
        """One round: ping every route that is due (not ready: every ``ping_s``; ready: every
        ``recheck_s``)."""
        now = time.monotonic()
        with self._lock:
            due = [
                t
                for t in sorted(_targets(self._routes))
                if t not in self._ready
                or now - self._ready[t][1] >= (self.recheck_s if self._ready[t][0] else self.ping_s)
            ]
        for target in due:
            ok = self.ping(target[2])
            with self._lock:
                before = self._ready.get(target)
                self._ready[target] = (ok, time.monotonic())
            if before is None or before[0] != ok:
                model, version, port = target
                event = "container_ready" if ok else "container_not_ready"
                log.info(event, model=model, version=version, port=port)

    def _check_loop(self) -> None:
        while not self._stop.is_set():
            self.check()
            self._wake.wait(self.ping_s)
            self._wake.clear()

    def ready_versions(self) -> dict[str, list[int]]:
        """Model -> the versions whose ``/ping`` answered 200 at their last check (for the
        master: a container version's AVAILABLE on this node)."""
        with self._lock:
            out: dict[str, list[int]] = {}
            for (model, version, port), (ok, _when) in sorted(self._ready.items()):
                route = self._routes.get(model)
                if ok and route is not None and route.versions.get(version) == port:
                    out.setdefault(model, []).append(version)
            return out

    def ready(self, model: str, version: int) -> bool:
        """The version's ``/ping`` on this node answered 200 at its last check."""
        route = self._routes.get(model)
        port = route.versions.get(version) if route is not None else None
        state = self._ready.get((model, version, port)) if port is not None else None
        return state is not None and state[0]

    def known(self) -> list[str]:
        return sorted(self._routes)

    def resolve(self, model: str, version: int | None) -> tuple[int, int] | None:
        """(version, host port) of a container model here; None when ``model`` is not one;
        GatewayError 404 for a version this node does not serve."""
        route = self._routes.get(model)
        if route is None:
            return None
        if version is None:
            newest_first = sorted(route.versions, reverse=True)
            ready = [v for v in newest_first if v <= route.latest and self.ready(model, v)]
            if not ready:
                raise GatewayError(
                    503,
                    f"container model {model!r} has no version ready on this node yet "
                    f"(GET /ping of {sorted(route.versions)} has not answered 200)",
                    "UNAVAILABLE",
                )
            return ready[0], route.versions[ready[0]]
        port = route.versions.get(version)
        if port is None:
            raise GatewayError(
                404,
                f"version {version} of container model {model!r} is not served on this node "
                f"(it serves {sorted(route.versions)})",
                "NOT_FOUND",
            )
        return version, port

    def _proxy(self, port: int) -> RestProxy:
        with self._lock:
            proxy = self._proxies.get(port)
            if proxy is None:
                proxy = RestProxy(f"{self.host}:{port}", self.timeout_s, name="the container")
                self._proxies[port] = proxy
            return proxy

    def invoke(
        self, model: str, version: int, port: int, body: bytes, content_type: str
    ) -> tuple[bytes, str]:
        """POST /invocations; (body, content type) of a 2xx answer, else GatewayError: the
        container's 4xx with its message, 502 for its 5xx, 503 when nothing listens."""
        try:
            status, data, ctype = self._proxy(port).forward(
                "POST", "/invocations", body, content_type
            )
        except GatewayError as exc:
            if exc.status == 503:
                raise GatewayError(
                    503,
                    f"container model {model!r} version {version} is not running on this node "
                    f"(nothing answers on port {port}): {exc.message}",
                    "UNAVAILABLE",
                ) from exc
            raise
        if 200 <= status < 300:
            return data, ctype
        message = _message(data)
        if 400 <= status < 500:
            raise GatewayError(status, message or f"the model refused the request (HTTP {status})")
        raise GatewayError(
            502,
            f"container model {model!r} version {version} failed (HTTP {status}): {message}",
        )

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._lock:
            proxies, self._proxies = list(self._proxies.values()), {}
        for proxy in proxies:
            proxy.close()


def _message(data: bytes) -> str:
    """A container's error text: its JSON's ``message`` or ``error`` (MLflow, SageMaker
    conventions), else its body's first characters."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict):
        for key in ("message", "error", "detail"):
            if isinstance(doc.get(key), str):
                return str(doc[key])[:MAX_ERROR_CHARS]
    return data[:MAX_ERROR_CHARS].decode("utf-8", errors="replace").strip()


def content_type(headers: Mapping[str, str]) -> str:
    """The request's media type, if the contract takes it (JSON or CSV); else 415."""
    ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype not in CONTENT_TYPES:
        raise GatewayError(
            415, f"a container model takes application/json or text/csv, not {ctype}"
        )
    return ctype


KRAKEN_KEYS = {"instances", "inputs", "dataframe_split", "dataframe_records", "params"}


def kraken_body(model_data: Any) -> bytes:
    """ML-Kraken's ``modelData`` as an ``/invocations`` body: an object in one of MLflow's
    input forms as it is, anything else as ``{"instances": modelData}``."""
    if isinstance(model_data, dict) and model_data and set(model_data) <= KRAKEN_KEYS:
        return json.dumps(model_data).encode()
    return json.dumps({"instances": model_data}).encode()


def kraken_results(data: bytes) -> Any:
    """A container's JSON answer as Kraken's ``results``: its ``predictions`` when it has them."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise GatewayError(502, "the container model answered something that is not JSON") from None
    if isinstance(doc, dict) and "predictions" in doc:
        return doc["predictions"]
    return doc
