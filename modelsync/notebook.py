"""``modelsync.Client``: the master's API for notebooks (pandas in, pandas out, HTML in Jupyter).

    import modelsync
    ms = modelsync.Client("http://master:8000", token)
    ms.publish("ranker", keras_model, description="March data", tags={"dataset": "2026-03"})
    ms.wait_until_serving("ranker", 7)
    ms.score("ranker", df)                 # a DataFrame in, a DataFrame out
    ms.metrics("ranker", since="1h")       # a DataFrame indexed by time
    ms.versions("ranker")                  # who published what, and when

Everything goes through the master, so a notebook needs only the master's URL and a token: a
model is uploaded to the master (``POST /v1/models/<m>/versions``), which publishes it with the
checks of ``modelsync publish`` — no GCS credentials in the notebook; scoring goes through the
gateway of a node the master names (its try-it route: ``score(..., node=)`` picks one), or
straight to a gateway when ``gateway_url`` is given. Publishing an in-memory model exports it
to a temporary SavedModel first: a Keras model by ``model.export`` (its ``serving_default``),
a ``tf.Module`` by ``tf.saved_model.save`` (its one ``tf.function`` with an input signature).
Non-finite numbers in answers (the gateway writes them as "NaN", "Infinity", "-Infinity")
come back as floats.
"""

from __future__ import annotations

import html
import math
import os
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
MetricColumns = ("requests", "errors", "error_rate", "rps", "p50_ms", "p90_ms", "p99_ms")


class ModelsyncError(Exception):
    """The master (or a gateway) refused or failed; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def _numbers(value: Any) -> Any:
    """JSON values with the gateway's non-finite words back as floats."""
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, str) and value in NON_FINITE:
        return NON_FINITE[value]
    return value


def _jsonable(value: Any) -> Any:
    """numpy arrays and scalars as JSON lists and numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def request_body(data: Any) -> tuple[dict[str, Any], str]:
    """An MLflow scoring body for ``data``, and what kind of input it was: a pandas DataFrame
    (``dataframe_split``), a dict of columns, or one array (``inputs``)."""
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        split = data.to_dict(orient="split")
        return {
            "dataframe_split": {
                "columns": [str(c) for c in split["columns"]],
                "data": split["data"],
            }
        }, "frame"
    if isinstance(data, Mapping):
        return {"inputs": _jsonable(dict(data))}, "dict"
    return {"inputs": _jsonable(data)}, "array"


def answer_as(predictions: Any, kind: str, data: Any) -> Any:
    """The predictions in the shape of the input: a DataFrame for a DataFrame (the input's
    index), numpy arrays for arrays, a dict of arrays for a dict of outputs."""
    import numpy as np

    predictions = _numbers(predictions)
    if kind == "frame":
        import pandas as pd

        if predictions and isinstance(predictions, list) and isinstance(predictions[0], dict):
            return pd.DataFrame(predictions, index=data.index)
        if isinstance(predictions, dict):
            return pd.DataFrame({k: list(v) for k, v in predictions.items()}, index=data.index)
        return pd.DataFrame({"prediction": predictions}, index=data.index)
    if isinstance(predictions, dict):
        return {k: np.asarray(v) for k, v in predictions.items()}
    if predictions and isinstance(predictions, list) and isinstance(predictions[0], dict):
        return {k: np.asarray([row[k] for row in predictions]) for k in predictions[0]}
    return np.asarray(predictions)


def export_savedmodel(model: Any, dest: Path) -> Path:
    """A Keras model (``export``: a SavedModel with ``serving_default``) or a ``tf.Module``
    (``tf.saved_model.save``) written to ``dest``."""
    import tensorflow as tf

    if hasattr(model, "export") and hasattr(model, "predict"):  # a Keras model
        model.export(str(dest))
    elif isinstance(model, tf.Module):
        tf.saved_model.save(model, str(dest))
    else:
        raise TypeError(
            f"cannot publish a {type(model).__name__}: give a SavedModel directory, a "
            ".tar.gz of one, a Keras model or a tf.Module"
        )
    return dest


def pack(directory: Path, dest: Path) -> Path:
    """A .tar.gz of a SavedModel directory, its root the SavedModel (streamed to disk)."""
    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(directory)), recursive=False)
    return dest


class Model:
    """One model as the master sees it; shows as HTML in Jupyter."""

    def __init__(self, doc: dict[str, Any], versions: Any) -> None:
        self.doc = doc
        self.name: str = doc["model"]
        self.versions = versions  # a DataFrame
        self.target_versions: list[int] = doc.get("target_versions", [])
        self.serving_versions: list[int] = doc.get("serving_versions", [])

    def __repr__(self) -> str:
        return (
            f"<Model {self.name}: serving {self.serving_versions}, target "
            f"{self.target_versions}, {len(self.versions)} versions>"
        )

    def _repr_html_(self) -> str:
        p = self.doc.get("policy", {})
        state = (
            "disabled"
            if p.get("disabled")
            else "converged"
            if self.doc.get("converged")
            else "converging"
        )
        head = (
            f"<h4>{html.escape(self.name)}</h4><p>serving {html.escape(str(self.serving_versions))}"
            f" &middot; target {html.escape(str(self.target_versions))} &middot; {state}"
            + (f" &middot; pinned v{int(p['pin'])}" if p.get("pin") else "")
            + "</p>"
        )
        return head + str(self.versions.to_html())


class Client:
    """The master's API; ``token`` is a read token (reads, scoring) or an admin token."""

    def __init__(
        self,
        master_url: str,
        token: str,
        *,
        timeout_s: float = 60.0,
        gateway_url: str | None = None,
        gateway_token: str | None = None,
    ) -> None:
        self.url = master_url.rstrip("/")
        self.timeout_s = timeout_s
        self.gateway_url = gateway_url.rstrip("/") if gateway_url else None
        self.gateway_token = gateway_token
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    # --- plumbing ------------------------------------------------------------------------------
    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        resp = self.session.request(
            method, self.url + path, json=body, params=query, timeout=self.timeout_s
        )
        return self._answer(resp)

    @staticmethod
    def _answer(resp: requests.Response) -> Any:
        try:
            doc = resp.json()
        except ValueError:
            doc = {"error": resp.text[:500]}
        if resp.status_code >= 400:
            message = doc.get("error") or doc.get("message") if isinstance(doc, dict) else None
            raise ModelsyncError(resp.status_code, str(message or doc))
        return doc

    @staticmethod
    def _m(model: str) -> str:
        return "/v1/models/" + quote(model, safe="")

    # --- reading -------------------------------------------------------------------------------
    def models(self) -> Any:
        """Every model: versions, serving, rollout and the last minute's figures."""
        import pandas as pd

        rows = []
        for m in self.call("GET", "/v1/models")["models"]:
            lm, p, ro = m.get("last_minute") or {}, m["policy"], m.get("rollout") or {}
            rows.append(
                {
                    "model": m["model"],
                    "target": m["target_versions"],
                    "serving": m.get("serving_versions", []),
                    "converged": m["converged"],
                    "pin": p.get("pin"),
                    "disabled": p.get("disabled"),
                    "labels": p.get("labels") or {},
                    "rollout": ro.get("status"),
                    "rps": lm.get("rps"),
                    "error_rate": lm.get("error_rate"),
                    "p99_ms": lm.get("p99_ms"),
                }
            )
        return pd.DataFrame(
            rows,
            columns=[
                "model",
                "target",
                "serving",
                "converged",
                "pin",
                "disabled",
                "labels",
                "rollout",
                "rps",
                "error_rate",
                "p99_ms",
            ],
        ).set_index("model")

    def versions(self, model: str) -> Any:
        """Every version of ``model``: complete, manifest, size, who published it and when,
        its description and tags, and on how many nodes it is AVAILABLE."""
        return self.model(model).versions

    def model(self, model: str) -> Model:
        import pandas as pd

        doc = self.call("GET", self._m(model))
        rows = []
        for v, r in sorted(doc["versions"].items(), key=lambda kv: -int(kv[0])):
            who = r.get("publisher") or {}
            rows.append(
                {
                    "version": int(v),
                    "complete": r["complete"],
                    "manifest": r.get("manifest"),
                    "bytes": r.get("bytes"),
                    "published_at": pd.to_datetime(r["published_at"], unit="s", utc=True)
                    if r.get("published_at")
                    else pd.NaT,
                    "publisher": (f"{who.get('user')}@{who.get('host')}" if who else None),
                    "description": r.get("description", ""),
                    "tags": r.get("tags") or {},
                    "target": r["target"],
                    "available": len(r.get("available") or []),
                }
            )
        frame = pd.DataFrame(rows)
        return Model(doc, frame.set_index("version") if rows else frame)

    def metrics(self, model: str, since: str = "1h", step: int | None = None) -> Any:
        """Request telemetry over every node, one row a step, indexed by time (UTC)."""
        import pandas as pd

        doc = self.call("GET", self._m(model) + "/metrics", since=since, step=step)
        frame = pd.DataFrame(
            [{"t": p["t"], **{k: p.get(k) for k in MetricColumns}} for p in doc["series"]],
            columns=["t", *MetricColumns],
        )
        frame["time"] = pd.to_datetime(frame.pop("t"), unit="s", utc=True)
        return frame.set_index("time")

    def events(self, model: str | None = None, limit: int = 100) -> Any:
        import pandas as pd

        doc = self.call("GET", "/v1/events", model=model, limit=limit)
        frame = pd.DataFrame(
            doc["events"], columns=["at", "kind", "actor", "node_id", "model", "event", "detail"]
        )
        frame["at"] = pd.to_datetime(frame["at"], unit="s", utc=True)
        return frame

    # --- publishing ----------------------------------------------------------------------------
    def publish(
        self,
        model: str,
        source: Any,
        *,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        version: int | None = None,
        overwrite: bool = False,
    ) -> dict[str, Any]:
        """Publish ``source`` — a SavedModel directory, a ``.tar.gz`` of one, a Keras model or
        a ``tf.Module`` — as a new version of ``model``, through the master (admin token).
        Returns what the master published (``version``, ``uri``, ``unchanged``...)."""
        with tempfile.TemporaryDirectory(prefix="modelsync-notebook-") as tmp:
            if isinstance(source, str | os.PathLike):
                path = Path(source)
                if path.is_dir():
                    path = pack(path, Path(tmp) / "model.tar.gz")
            else:
                exported = export_savedmodel(source, Path(tmp) / "savedmodel")
                path = pack(exported, Path(tmp) / "model.tar.gz")
            params: dict[str, Any] = {
                "description": description or None,
                "tag": [f"{k}={v}" for k, v in (tags or {}).items()],
                "version": version,
                "overwrite": "true" if overwrite else None,
            }
            with open(path, "rb") as fh:  # streamed from disk, never whole in memory
                resp = self.session.post(
                    self.url + self._m(model) + "/versions",
                    data=fh,
                    params={k: v for k, v in params.items() if v is not None},
                    headers={
                        "Content-Type": "application/gzip",
                        "Content-Length": str(path.stat().st_size),
                    },
                    timeout=max(self.timeout_s, 600),
                )
        published: dict[str, Any] = self._answer(resp)["published"]
        return published

    def wait_until_serving(self, model: str, version: int, timeout_s: float = 300) -> Model:
        """Wait until every serving node has ``version`` AVAILABLE (and it is a target)."""
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            try:
                doc = self.call("GET", self._m(model))
                avail = (doc.get("summary") or {}).get(str(version), {}).get("available", 0)
                if (
                    version in doc.get("target_versions", [])
                    and avail
                    and avail == doc.get("serving_nodes")
                ):
                    return self.model(model)
                last = f"serving {doc.get('serving_versions')}, target {doc.get('target_versions')}"
            except ModelsyncError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise TimeoutError(f"{model} v{version} not served within {timeout_s} s ({last})")

    def annotate(
        self,
        model: str,
        version: int,
        description: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if description is not None:
            body["description"] = description
        if tags is not None:
            body["tags"] = dict(tags)
        doc: dict[str, Any] = self.call("PATCH", f"{self._m(model)}/versions/{version}", body)
        return doc

    # --- the operator's hands ------------------------------------------------------------------
    def pin(self, model: str, version: int) -> dict[str, Any]:
        return dict(self.call("POST", self._m(model) + "/pin", {"version": version}))

    def unpin(self, model: str) -> dict[str, Any]:
        return dict(self.call("DELETE", self._m(model) + "/pin"))

    def rollback(self, model: str) -> dict[str, Any]:
        return dict(self.call("POST", self._m(model) + "/rollback"))

    def rollout(
        self, model: str, spec: Mapping[str, Any] | None = None, action: str | None = None
    ) -> dict[str, Any]:
        """The staged rollout: with ``spec``, set it; with ``action`` (pause, resume, promote,
        abort), act on the one under way; with neither, its state."""
        if spec is not None:
            self.call("PUT", self._m(model) + "/rollout", dict(spec))
        if action is not None:
            self.call("POST", f"{self._m(model)}/rollout/{action}")
        return dict(self.call("GET", self._m(model) + "/rollout"))

    # --- scoring -------------------------------------------------------------------------------
    def score(
        self,
        model: str,
        data: Any,
        *,
        version: int | None = None,
        node: str | None = None,
        gateway_url: str | None = None,
    ) -> Any:
        """Score ``data`` (a DataFrame, a dict of columns or an array) with ``model`` through a
        node's gateway (MLflow's invocations): straight to ``gateway_url`` (or the client's),
        else through the master to the gateway of ``node`` (default: the first live one)."""
        body, kind = request_body(data)
        url = (gateway_url or self.gateway_url or "").rstrip("/")
        if url:
            path = f"/model/{quote(model, safe='')}" + (f"/{version}" if version else "")
            headers = (
                {"Authorization": f"Bearer {self.gateway_token}"} if self.gateway_token else {}
            )
            resp = requests.post(
                url + path + "/invocations", json=body, headers=headers, timeout=self.timeout_s
            )
            answer = self._answer(resp)
        else:
            node = node or self.gateway_node()
            doc = self.call(
                "POST", self._m(model) + "/try", {"node": node, "body": body, "version": version}
            )
            answer = doc["answer"]
            if doc["status"] >= 400:
                raise ModelsyncError(doc["status"], str(answer.get("message") or answer))
        return answer_as(answer["predictions"], kind, data)

    def gateway_node(self) -> str:
        """The first node (by id) whose gateway is live."""
        for n in self.call("GET", "/v1/nodes")["nodes"]:
            role = (n.get("roles") or {}).get("gateway")
            if role and role.get("state") == "live":
                return str(n["node_id"])
        raise ModelsyncError(409, "no node has a live gateway")

    # --- Jupyter -------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<modelsync.Client {self.url}>"

    def _repr_html_(self) -> str:
        try:
            cluster = self.call("GET", "/v1/cluster")
            table = str(self.models().to_html())
        except (ModelsyncError, requests.RequestException) as exc:
            return f"<p>modelsync at {html.escape(self.url)}: {html.escape(str(exc))}</p>"
        nodes = cluster.get("nodes", {})
        return (
            f"<h4>modelsync at {html.escape(self.url)}</h4><p>{int(nodes.get('live', 0))} of "
            f"{int(nodes.get('total', 0))} nodes live</p>" + table
        )
