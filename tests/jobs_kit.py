"""A real cluster for the jobs' tests (integration, browser): the GCS emulator's bucket, Redis
(or RabbitMQ) of the test's own, the master under gunicorn with the broker, one serving node
(model server, config manager, puller) with a published model, and workers beside it."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import available_on, master_and_node, wait_for

from modelsync.dev.emulator import GCSEmulator
from modelsync.dev.procs import ManagedProcess, Node
from modelsync.jobs.model import jobs_dir
from modelsync.publish import publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

ADMIN, READ, NODE = "admin-token-0123456789", "read-token-0123456789", "node-token-0123456789"
WEBHOOK_SECRET = "webhook-secret-0123456789"
PREFIX = "models"


@dataclass
class JobsCluster:
    url: str
    store: GCSStore
    settings: StoreSettings
    master: ManagedProcess
    node: Node
    broker_url: str
    worker_env: dict[str, str] = field(default_factory=dict)

    # --- the API ------------------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str = ADMIN,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        hdrs = {"Authorization": f"Bearer {token}", **(headers or {})}
        if raw is None and body is not None:
            hdrs.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                payload = r.read()
                return r.status, _decode(payload, r.headers), dict(r.headers)
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            return exc.code, _decode(payload, exc.headers), dict(exc.headers)

    def submit_rows(self, rows: list[Any], model: str = "demo", **extra: Any) -> dict[str, Any]:
        code, doc, _ = self.call("POST", "/v1/jobs", {"model": model, "rows": rows, **extra})
        assert code == 201, (code, doc)
        return doc  # type: ignore[no-any-return]

    def upload(
        self, data: bytes, model: str = "demo", ctype: str = "application/x-ndjson", **params: str
    ) -> tuple[int, Any, dict[str, str]]:
        query = "&".join(f"{k}={v}" for k, v in {"model": model, **params}.items())
        return self.call("POST", f"/v1/jobs?{query}", raw=data, headers={"Content-Type": ctype})

    def job(self, job_id: str) -> dict[str, Any]:
        code, doc, _ = self.call("GET", f"/v1/jobs/{job_id}", token=READ)
        assert code == 200, (code, doc)
        return doc  # type: ignore[no-any-return]

    def wait_done(self, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
        return wait_for(
            lambda: (doc := self.job(job_id))["state"] == "done" and doc,
            timeout_s,
            f"job {job_id} done",
            interval_s=0.25,
        )

    def result_lines(self, job_id: str) -> list[dict[str, Any]]:
        code, doc, headers = self.call("GET", f"/v1/jobs/{job_id}/result", token=READ)
        assert code == 200, (code, doc)
        assert headers.get("Content-Type", "").startswith("application/x-ndjson"), headers
        return doc  # type: ignore[no-any-return]

    def job_objects(self) -> list[str]:
        return [o.name for o in self.store.list_objects(jobs_dir(PREFIX))]


def _decode(payload: bytes, headers: Any) -> Any:
    ctype = headers.get("Content-Type", "") if headers else ""
    if ctype.startswith("application/x-ndjson"):
        return [json.loads(line) for line in payload.splitlines() if line.strip()]
    try:
        return json.loads(payload or b"null")
    except ValueError:
        return payload.decode(errors="replace")


def raw_upload(url: str, path: str, chunks: Iterator[bytes], headers: dict[str, str]) -> int:
    """A POST whose body is sent piece by piece (chunked unless a Content-Length is given);
    the status the master answered, even when it answered before the body was all sent."""
    host, _, port = url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.putrequest("POST", path)
        chunked = "Content-Length" not in headers
        for k, v in {**headers, **({"Transfer-Encoding": "chunked"} if chunked else {})}.items():
            conn.putheader(k, v)
        conn.endheaders()
        try:
            for piece in chunks:
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the master answered early and closed
        return conn.getresponse().status
    finally:
        conn.close()


@contextmanager
def jobs_cluster(
    workdir: Path,
    gcs: GCSEmulator,
    model_factory: Any,
    bucket: str,
    broker_url: str,
    *,
    master_env: dict[str, str] | None = None,
    worker_env: dict[str, str] | None = None,
    workers: int = 1,
) -> Iterator[JobsCluster]:
    """demo v1 (y = 2x + 1) served on node-1; ``workers`` workers on the broker."""
    settings = StoreSettings(
        bucket=bucket, emulator_host=gcs.url, timeout_s=10, retry_deadline_s=10
    )
    store = GCSStore(settings)
    store.ensure_bucket()
    master, node = master_and_node(
        workdir,
        gcs.url,
        bucket,
        admin=ADMIN,
        node_secret=NODE,
        read_token=READ,
        master_env={
            "MODELSYNC_BROKER_URL": broker_url,
            "MODELSYNC_JOB_POLL_S": "0.5",
            "MODELSYNC_WEBHOOK_SECRET": WEBHOOK_SECRET,
            **(master_env or {}),
        },
    )
    url: str = master.url  # type: ignore[attr-defined]
    env = {"MODELSYNC_JOB_VISIBILITY_S": "6", "MODELSYNC_JOB_RETRY_S": "120", **(worker_env or {})}
    try:
        node.start()
        publish(store, model_factory(2.0, 1.0), "demo")
        wait_for(lambda: available_on(url, READ, "demo", 1), 120, "demo v1 AVAILABLE on node-1")
        for _ in range(workers):
            node.start_worker(broker_url, extra_env=env)
        yield JobsCluster(url, store, settings, master, node, broker_url, env)
    finally:
        node.stop()
        master.stop()
