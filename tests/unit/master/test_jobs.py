"""The master's jobs on an in-memory bucket and a fake broker: submit (inline and upload),
idempotency, refusals that store nothing, progress to done, the webhook (signed, retried),
cancel, and retention."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from master_kit import ADMIN, READ, master_app

from master.api import STATE_KEY
from master.jobs.submit import BrokerDown
from master.settings import JobsSettings
from master.state import MasterState
from modelsync.dev.memstore import MemoryStore
from modelsync.jobs import webhook
from modelsync.jobs.model import (
    ChunkSummary,
    ChunkTask,
    error_line,
    jobs_dir,
    ok_line,
    output_object,
)
from modelsync.jobs.planner import ChunkLimits
from modelsync.jobs.queue import BrokerSettings
from tests.unit.master.conftest import SM, Client

SECRET = "webhook-secret-0123456789"


class FakeSender:
    def __init__(self) -> None:
        self.tasks: list[ChunkTask] = []
        self.down = False
        self.broker = BrokerSettings("redis://127.0.0.1:1/0")

    def send(self, tasks: Sequence[ChunkTask]) -> None:
        if self.down:
            raise BrokerDown("the broker redis://127.0.0.1:1/0 cannot be reached: refused")
        self.tasks += tasks

    def workers(self, timeout_s: float = 1.0) -> list[str]:
        return ["worker1@node-1"]


@pytest.fixture
def jobs_app(memstore: MemoryStore, tmp_path: Path) -> Iterator[Flask]:
    for name in SM:
        memstore.write(f"models/demo/1/{name}", b"x")
    memstore.write("models/demo/1/_READY", b"")
    app = master_app(
        tmp_path / "m.sqlite3",
        memstore,
        settle_s=0,
        jobs=JobsSettings(
            broker=BrokerSettings("redis://127.0.0.1:1/0"),
            chunk=ChunkLimits(max_rows=3),
            max_upload_bytes=4096,
            webhook_secret=SECRET,
            ttl_s=3600,
        ),
    )
    state: MasterState = app.extensions[STATE_KEY]
    state.refresh_catalog()
    state.jobs.sender = FakeSender()  # type: ignore[assignment]
    yield app
    state.stop()


@pytest.fixture
def jstate(jobs_app: Flask) -> MasterState:
    s: MasterState = jobs_app.extensions[STATE_KEY]
    return s


@pytest.fixture
def japi(jobs_app: Flask) -> Client:
    return Client(jobs_app.test_client())


def upload(japi: Client, data: bytes, query: str = "model=demo", **headers: str) -> Any:
    resp = japi.c.post(
        f"/v1/jobs?{query}",
        data=data,
        headers={
            "Authorization": f"Bearer {ADMIN}",
            "Content-Type": "application/x-ndjson",
            **headers,
        },
    )
    return resp.status_code, resp.get_json(silent=True)


def score_all(store: MemoryStore, tasks: list[ChunkTask], version: int = 1) -> None:
    """What the workers would write: each chunk's result once, with its summary."""
    for t in tasks:
        lines = [ok_line(t.first_row + i, version, {"y": 1.0}) for i in range(t.rows - 1)]
        lines.append(error_line(t.first_row + t.rows - 1, "bad row"))
        summary = ChunkSummary(t.chunk, t.rows, 1, {version: t.rows - 1}, "row x: bad row")
        store.write(
            output_object("models", t.job, t.chunk),
            b"".join(lines),
            if_generation_match=0,
            metadata=summary.to_metadata(),
        )


def test_an_inline_job_is_chunked_queued_and_done_once_every_chunk_is_scored(
    japi: Client, jstate: MasterState, memstore: MemoryStore
) -> None:
    code, job = japi.call(
        "POST", "/v1/jobs", body={"model": "demo", "rows": [{"x": i} for i in range(7)]}
    )
    assert code == 201 and job["state"] == "queued", job
    assert (job["rows"], job["chunks"]) == (7, 3)
    sent = jstate.jobs.sender.tasks  # type: ignore[union-attr]
    assert [(t.first_row, t.rows) for t in sent] == [(0, 3), (3, 3), (6, 1)]
    assert japi.call("GET", f"/v1/jobs/{job['id']}/result", token=READ)[0] == 409
    score_all(memstore, sent)
    code, doc = japi.call("GET", f"/v1/jobs/{job['id']}", token=READ)
    assert doc["state"] == "done" and doc["progress"]["rows_done"] == 7
    assert doc["progress"]["errors"] == 3 and doc["progress"]["versions"] == {"1": 4}
    resp = japi.c.get(f"/v1/jobs/{job['id']}/result", headers={"Authorization": f"Bearer {READ}"})
    rows = [json.loads(line) for line in resp.data.splitlines()]
    assert resp.mimetype == "application/x-ndjson" and [r["row"] for r in rows] == list(range(7))
    errors = japi.c.get(
        f"/v1/jobs/{job['id']}/result?errors=1", headers={"Authorization": f"Bearer {READ}"}
    )
    assert [json.loads(line)["row"] for line in errors.data.splitlines()] == [2, 5, 6]


def test_an_upload_streams_into_chunks_and_a_malformed_one_leaves_nothing(
    japi: Client, memstore: MemoryStore
) -> None:
    code, job = upload(japi, b'{"x": 1}\n{"x": 2}\n\n{"x": 3}\n{"x": 4}\n')
    assert code == 201 and (job["rows"], job["chunks"]) == (4, 2), job
    before = memstore.list_objects(jobs_dir("models"))
    code, doc = upload(japi, b'{"x": 1}\n{"x": 2}\n{"x": 3}\n{"x": 4}\nnope\n')
    assert (
        code == 400
        and doc["error"]
        == "malformed jsonl input: line 5 is not JSON: Expecting value: line 1 column 1 (char 0)"
    )
    assert memstore.list_objects(jobs_dir("models")) == before  # its first chunk was removed


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": "nope", "rows": [1]}, 404, "unknown model 'nope'"),
        ({"model": "demo", "version": 9, "rows": [1]}, 404, "demo has no complete version 9"),
        ({"model": "demo", "label": "stable", "rows": [1]}, 404, "no label 'stable'"),
        ({"model": "demo", "rows": []}, 400, "'rows' must be a non-empty list"),
        ({"model": "demo", "rows": [1], "extra": 1}, 400, "unknown field 'extra'"),
        ({"model": "demo", "rows": [1], "webhook": "ftp://x"}, 400, "http:// or https://"),
        ({"rows": [1]}, 400, "'model'"),
    ],
)
def test_a_refused_submit_stores_nothing(
    japi: Client, memstore: MemoryStore, body: dict[str, Any], status: int, message: str
) -> None:
    code, doc = japi.call("POST", "/v1/jobs", body=body)
    assert code == status and message in doc["error"], doc
    assert memstore.list_objects(jobs_dir("models")) == []


def test_too_large_and_who_may_submit(japi: Client, memstore: MemoryStore) -> None:
    code, doc = upload(japi, b'{"x": 1}\n' * 1000)
    assert code == 413 and "larger than 4096 bytes" in doc["error"]
    assert japi.call("POST", "/v1/jobs", token=READ, body={"model": "demo", "rows": [1]})[0] == 403
    assert japi.call("POST", "/v1/jobs", token=None, body={"model": "demo", "rows": [1]})[0] == 401
    assert memstore.list_objects(jobs_dir("models")) == []


def test_one_idempotency_key_is_one_job(japi: Client, jstate: MasterState) -> None:
    first = upload(japi, b'{"x": 1}\n', **{"Idempotency-Key": "k-1"})
    again = upload(japi, b'{"x": 1}\n', **{"Idempotency-Key": "k-1"})
    assert (first[0], again[0]) == (201, 200) and first[1]["id"] == again[1]["id"]
    other = upload(japi, b'{"x": 1}\n', "model=demo&version=1", **{"Idempotency-Key": "k-1"})
    assert other[0] == 422 and "another job" in other[1]["error"]
    assert len(jstate.jobs.sender.tasks) == 1  # type: ignore[union-attr]
    assert len(japi.call("GET", "/v1/jobs", token=READ)[1]["jobs"]) == 1


def test_broker_down_refuses_the_submit_and_frees_the_key(
    japi: Client, jstate: MasterState, memstore: MemoryStore
) -> None:
    jstate.jobs.sender.down = True  # type: ignore[union-attr]
    code, doc = upload(japi, b'{"x": 1}\n', **{"Idempotency-Key": "k-2"})
    assert code == 503 and "cannot be reached" in doc["error"]
    assert memstore.list_objects(jobs_dir("models")) == []
    jstate.jobs.sender.down = False  # type: ignore[union-attr]
    assert upload(japi, b'{"x": 1}\n', **{"Idempotency-Key": "k-2"})[0] == 201


def test_the_webhook_is_signed_and_retried_until_delivered(
    japi: Client, jstate: MasterState, memstore: MemoryStore
) -> None:
    calls: list[tuple[str, bytes, dict[str, str]]] = []
    answers = [500, 200]

    class Resp:
        def __init__(self, status: int) -> None:
            self.status_code = status

    def post(url: str, data: bytes, headers: dict[str, str], **_kw: Any) -> Resp:
        calls.append((url, data, headers))
        return Resp(answers.pop(0))

    jstate.jobs.watcher.post = post
    code, job = japi.call(
        "POST",
        "/v1/jobs",
        body={"model": "demo", "rows": [1, 2], "webhook": "http://127.0.0.1:9/h?s=1"},
    )
    assert code == 201 and job["webhook"]["url"] == "http://127.0.0.1:9/h"  # no query shown
    score_all(memstore, jstate.jobs.sender.tasks)  # type: ignore[union-attr]
    watcher = jstate.jobs.watcher
    watcher.tick(now=1000.0)  # done: the webhook is due
    watcher.tick(now=1000.5)  # first attempt answered 500
    assert len(calls) == 1
    watcher.tick(now=1001.0)  # not due yet (backoff 2 s)
    assert len(calls) == 1
    watcher.tick(now=1003.0)
    assert len(calls) == 2
    url, body, headers = calls[-1]
    assert url == "http://127.0.0.1:9/h?s=1"
    assert webhook.verify(SECRET.encode(), body, headers[webhook.SIGNATURE_HEADER], now=1003)
    doc = json.loads(body)
    assert (
        doc["event"] == "job.done" and doc["job"]["id"] == job["id"] == headers[webhook.JOB_HEADER]
    )
    hook = japi.call("GET", f"/v1/jobs/{job['id']}", token=READ)[1]["webhook"]
    assert (hook["state"], hook["attempts"], hook["last_status"]) == ("delivered", 2, 200)
    watcher.tick(now=2000.0)
    assert len(calls) == 2  # delivered once


def test_cancel_marks_the_bucket_and_ends_the_job(
    japi: Client, jstate: MasterState, memstore: MemoryStore
) -> None:
    code, job = japi.call("POST", "/v1/jobs", body={"model": "demo", "rows": [1, 2, 3, 4]})
    code, doc = japi.call("POST", f"/v1/jobs/{job['id']}/cancel")
    assert code == 200 and doc["state"] == "cancelled"
    assert memstore.stat(f"models/_modelsync/jobs/{job['id']}/cancelled") is not None
    assert japi.call("POST", f"/v1/jobs/{job['id']}/cancel", token=READ)[0] == 403
    assert japi.call("POST", f"/v1/jobs/{job['id']}/cancel")[1]["state"] == "cancelled"
    score_all(memstore, jstate.jobs.sender.tasks)  # type: ignore[union-attr]
    assert japi.call("GET", f"/v1/jobs/{job['id']}", token=READ)[1]["state"] == "cancelled"
    assert japi.call("GET", f"/v1/jobs/{job['id']}/result", token=READ)[0] == 409


def test_a_job_and_its_objects_go_ttl_after_it_ended(
    japi: Client, jstate: MasterState, memstore: MemoryStore
) -> None:
    _code, job = japi.call("POST", "/v1/jobs", body={"model": "demo", "rows": [1]})
    score_all(memstore, jstate.jobs.sender.tasks)  # type: ignore[union-attr]
    done = japi.call("GET", f"/v1/jobs/{job['id']}", token=READ)[1]
    assert done["expires_at"] == pytest.approx(done["finished_at"] + 3600)
    jstate.jobs.watcher.tick(now=done["expires_at"] - 1)
    assert memstore.list_objects(jobs_dir("models"))
    jstate.jobs.watcher.tick(now=done["expires_at"] + 1)
    assert memstore.list_objects(jobs_dir("models")) == []
    assert japi.call("GET", f"/v1/jobs/{job['id']}", token=READ)[0] == 404


def test_jobs_are_off_without_a_broker(api: Client) -> None:
    code, doc = api.call("POST", "/v1/jobs", body={"model": "demo", "rows": [1]})
    assert code == 503 and "MODELSYNC_BROKER_URL" in doc["error"]
    code, doc = api.call("GET", "/v1/jobs", token=READ)
    assert code == 200 and doc["enabled"] is False and doc["jobs"] == []


def test_settings_dataclass_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        JobsSettings().ttl_s = 1  # type: ignore[misc]
