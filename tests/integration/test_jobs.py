"""Batch scoring jobs on real pieces (127.0.0.1): Redis of the test's own as broker and result
backend, the GCS emulator, the master under gunicorn, one node's TF Serving (the compatible
server, demo v1: y = 2x + 1) and a worker. Inline rows, JSON Lines and CSV uploads, refusals
that store nothing (unknown model, malformed file, too large), one job per idempotency key, the
signed webhook, cancel, and schemathesis on the jobs' routes."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for
from jobs_kit import ADMIN, READ, WEBHOOK_SECRET, JobsCluster, jobs_cluster, raw_upload

from modelsync.dev.brokers import RedisServer
from modelsync.dev.emulator import GCSEmulator
from modelsync.jobs import webhook

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MAX_UPLOAD = 64 * 1024


@pytest.fixture(scope="module")
def cluster(
    gcs: GCSEmulator, model_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JobsCluster]:
    work = tmp_path_factory.mktemp("jobs")
    with (
        RedisServer(work) as redis,
        jobs_cluster(
            work,
            gcs,
            model_factory,
            f"jobs-{os.getpid()}",
            redis.url,
            master_env={
                "MODELSYNC_JOB_CHUNK_ROWS": "50",
                "MODELSYNC_JOB_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
            },
        ) as c,
    ):
        yield c


def expected(x: float) -> float:
    return 2 * x + 1


def test_inline_rows_each_get_a_line_in_order_with_the_version_or_their_error(
    cluster: JobsCluster,
) -> None:
    rows: list[Any] = [{"x": float(i)} for i in range(120)]
    rows[7] = {"x": "seven"}
    rows[60] = {"z": 1}
    job = cluster.submit_rows(rows)
    assert job["state"] in ("queued", "running") and job["chunks"] == 3
    done = cluster.wait_done(job["id"])
    p = done["progress"]
    assert (p["rows_done"], p["rows_total"], p["errors"], p["chunks_done"]) == (120, 120, 2, 3)
    assert p["versions"] == {"1": 118} and p["rows_per_s"] > 0
    assert p["first_errors"][0].startswith("row 7: input 'x': expected float32 numbers")
    lines = cluster.result_lines(job["id"])
    assert [line["row"] for line in lines] == list(range(120))
    for i, line in enumerate(lines):
        if i in (7, 60):
            assert set(line) == {"row", "error"}, line
        else:
            assert line == {"row": i, "version": 1, "outputs": {"y": expected(i)}}
    assert "missing input 'x'" in lines[60]["error"]


def test_json_lines_and_csv_uploads(cluster: JobsCluster) -> None:
    jsonl = b"".join(b'{"x": %d}\n' % i for i in range(230))
    code, job, headers = cluster.upload(jsonl)
    assert code == 201 and job["chunks"] == 5 and headers["Location"] == f"/v1/jobs/{job['id']}"
    code, csv_job, _ = cluster.upload(
        b"x\n" + b"".join(b"%d.5\n" % i for i in range(60)) + b"oops\n", ctype="text/csv"
    )
    assert code == 201 and csv_job["format"] == "csv"
    cluster.wait_done(job["id"])
    lines = cluster.result_lines(job["id"])
    assert [(d["row"], d["outputs"]["y"]) for d in lines] == [(i, expected(i)) for i in range(230)]
    assert cluster.wait_done(csv_job["id"])["progress"]["errors"] == 1
    csv_lines = cluster.result_lines(csv_job["id"])
    assert csv_lines[3]["outputs"] == {"y": expected(3.5)} and "error" in csv_lines[60]


def test_unknown_model_and_malformed_files_are_refused_at_submit_storing_nothing(
    cluster: JobsCluster,
) -> None:
    before = cluster.job_objects()
    cases = [
        (cluster.upload(b'{"x": 1}\n', model="nope"), 404, "unknown model 'nope'"),
        (cluster.upload(b'{"x": 1}\n' * 120 + b"{broken\n"), 400, "line 121 is not JSON"),
        (cluster.upload(b"x,y\n1,2\n3\n", ctype="text/csv"), 400, "CSV line 3 has 1 fields"),
        (cluster.upload(b"\n\n"), 400, "no rows"),
        (cluster.upload(b'{"x": 1}\n', version="7"), 404, "no complete version 7"),
    ]
    for (code, doc, _), status, message in cases:
        assert code == status and message in doc["error"], doc
    assert cluster.job_objects() == before  # even the chunks written before line 121


def test_an_oversized_upload_is_413_and_nothing_is_stored(cluster: JobsCluster) -> None:
    before = cluster.job_objects()
    rows = [b'{"x": %d}\n' % i for i in range(12000)]  # about 130 KiB, over the 64 KiB limit
    body = b"".join(rows)
    path = "/v1/jobs?model=demo"
    headers = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/x-ndjson"}
    # announced too large: refused before a byte is read
    sized = raw_upload(
        cluster.url, path, iter([body]), {**headers, "Content-Length": str(len(body))}
    )
    # chunked (no length): refused once the limit is crossed, after some chunks were written
    chunked = raw_upload(
        cluster.url, path, (body[i : i + 4096] for i in range(0, len(body), 4096)), headers
    )
    assert (sized, chunked) == (413, 413)
    assert cluster.job_objects() == before
    assert cluster.call("GET", "/v1/jobs?state=uploading", token=READ)[1]["jobs"] == []


def test_duplicate_submits_with_one_key_are_one_job(cluster: JobsCluster) -> None:
    key = {"Idempotency-Key": "test-dup-0001"}
    body = {"model": "demo", "rows": [{"x": 1.0}, {"x": 2.0}]}
    answers: list[tuple[int, Any]] = []

    def submit() -> None:
        code, doc, _ = cluster.call("POST", "/v1/jobs", body, headers=key)
        answers.append((code, doc))

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    submit()  # and once more, afterwards
    ids = {doc["id"] for code, doc in answers if code in (200, 201)}
    assert len(ids) == 1, answers
    assert [c for c, _ in answers].count(201) == 1
    assert all(code in (200, 201, 409) for code, _ in answers), answers
    (job_id,) = ids
    listed = cluster.call("GET", "/v1/jobs?limit=500", token=READ)[1]["jobs"]
    assert [j["id"] for j in listed if j["idempotency_key"] == key["Idempotency-Key"]] == [job_id]
    assert len({n.split("/")[3] for n in cluster.job_objects() if job_id in n}) == 1
    assert len(cluster.wait_done(job_id)["progress"]["versions"]) == 1


class Hook(http.server.BaseHTTPRequestHandler):
    received: list[tuple[bytes, dict[str, str]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append((body, dict(self.headers)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


def test_the_webhook_is_called_on_completion_with_a_valid_signature(cluster: JobsCluster) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        job = cluster.submit_rows([{"x": 3.0}], webhook=url)
        cluster.wait_done(job["id"])
        body, headers = wait_for(lambda: Hook.received and Hook.received[-1], 30, "the webhook")
    finally:
        server.shutdown()
        server.server_close()
    assert webhook.verify(
        WEBHOOK_SECRET.encode(), body, headers[webhook.SIGNATURE_HEADER], time.time()
    )
    doc = json.loads(body)
    assert doc["event"] == "job.done" and doc["job"]["id"] == job["id"]
    assert doc["job"]["progress"]["rows_done"] == 1
    hook = wait_for(lambda: cluster.job(job["id"])["webhook"]["state"] == "delivered" and 1, 10)
    assert hook


def test_cancel_stops_a_job_that_is_not_done(cluster: JobsCluster) -> None:
    job = cluster.submit_rows([{"x": float(i)} for i in range(5000)])  # 100 chunks of 50
    code, doc, _ = cluster.call("POST", f"/v1/jobs/{job['id']}/cancel")
    assert code == 200 and doc["state"] == "cancelled"
    assert cluster.call("GET", f"/v1/jobs/{job['id']}/result", token=READ)[0] == 409
    # the worker skips the rest: the queue drains with fewer than all chunks scored
    other = cluster.submit_rows([{"x": 1.0}])
    cluster.wait_done(other["id"])
    scored = [n for n in cluster.job_objects() if job["id"] in n and "/out/" in n]
    assert len(scored) < 100
    assert cluster.job(job["id"])["state"] == "cancelled"


def test_the_console_page_and_the_tokens(cluster: JobsCluster) -> None:
    assert cluster.call("POST", "/v1/jobs", {"model": "demo", "rows": [1]}, token=READ)[0] == 403
    code, doc, _ = cluster.call("GET", "/v1/jobs", token=READ)
    assert code == 200 and doc["enabled"] and doc["limits"]["max_upload_bytes"] == MAX_UPLOAD
    names = wait_for(lambda: cluster.call("GET", "/v1/jobs", token=READ)[1]["workers"]["names"], 30)
    assert len(names) == 1 and names[0].endswith("@node-1")


@pytest.mark.timeout(400)
def test_schemathesis_finds_no_server_errors_in_the_jobs_routes(
    cluster: JobsCluster, tmp_path: Path
) -> None:
    exe = Path(sys.executable).parent / "schemathesis"
    res = subprocess.run(
        [
            str(exe),
            "run",
            f"{cluster.url}/v1/openapi.json",
            "--checks",
            "not_a_server_error",
            "-H",
            f"Authorization: Bearer {ADMIN}",
            "--max-examples",
            "20",
            "--request-timeout",
            "20",
            "--generation-deterministic",
            "--no-color",
            "--include-path-regex",
            "^/v1/jobs",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    m = re.search(r"(\d+) generated, (\d+) passed", res.stdout)
    assert m and m.group(1) == m.group(2) and int(m.group(1)) >= 20, res.stdout[-3000:]
