"""jobs: batch scoring through the broker against the same rows through the gateway.

On 127.0.0.1: the GCS emulator, Redis, the master (under gunicorn, with the broker), one node
(the compatible model server with demo v1, y = 2x + 1; config manager; puller; gateway) and one
then two workers. A JSON Lines file of ROWS rows (1,000,000; 50,000 with --quick) is uploaded
and scored with one worker, then with two; the same rows go through the gateway's MLflow route
one row per request at concurrency 8 (for a bounded time: the rate is what is compared). Every
process's CPU time is read from /proc, so rows per CPU-second compares the two ways per core
(goal: the job at least as fast per core as the gateway).

Also: submit -> first result p50 (small jobs, one chunk each), the workers' peak RSS, and the
broker's overhead per chunk — raw (publish and consume of one chunk's message on this Redis)
and end to end (the job's wall time with one worker, less the chunks' own scoring time, per
chunk: delivery, acknowledgement, the skip checks)."""

from __future__ import annotations

import http.client
import json
import os
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import percentile, table

TOKEN_A, TOKEN_N = "bench-admin-token-0123", "bench-node-secret-0123456789"
CHUNK_ROWS = 5000


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their children (waited for or not)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    seen = set(pids)
    for child in Path("/proc").iterdir():  # children too (gunicorn's workers)
        if child.name.isdigit():
            try:
                fields = (child / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) in pids:
                    seen.add(int(child.name))
            except (OSError, IndexError, ValueError):
                continue
    for pid in seen:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


def self_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


class Api:
    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, data: bytes | None = None, ctype: str = "") -> Any:
        headers = {"Authorization": f"Bearer {TOKEN_A}"}
        if ctype:
            headers["Content-Type"] = ctype
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read())

    def wait(self, job_id: str, what: str, timeout_s: float = 1800, every_s: float = 0.25) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            doc = self.call("GET", f"/v1/jobs/{job_id}")
            if (what == "done" and doc["state"] == "done") or (
                what == "first" and doc["progress"]["chunks_done"] >= 1
            ):
                return doc
            time.sleep(every_s)
        raise RuntimeError(f"job {job_id} not {what} in {timeout_s} s")


def run_job(api: Api, data: bytes, pids: list[int]) -> dict[str, Any]:
    """Upload ``data``, wait until done; figures from the job's own times (not the polling)."""
    cpu0, t0 = cpu_s(pids) + self_cpu_s(), time.time()
    job = api.call("POST", "/v1/jobs?model=demo", data, "application/x-ndjson")
    submit_s = time.time() - t0
    done = api.wait(job["id"], "done", every_s=0.5)
    cpu = cpu_s(pids) + self_cpu_s() - cpu0
    wall = done["finished_at"] - t0
    p = done["progress"]
    assert p["rows_done"] == job["rows"] and p["errors"] == 0, p
    return {
        "job": done,
        "submit_s": submit_s,
        "wall_s": wall,
        "scoring_s": done["finished_at"] - done["queued_at"],
        "cpu_s": cpu,
        "rows_per_s": job["rows"] / wall,
        "rows_per_cpu_s": job["rows"] / cpu,
    }


def chunk_seconds(store: Any, prefix: str, job_id: str) -> float:
    from modelsync.jobs.model import ChunkSummary, chunk_of, outputs_dir

    return sum(
        ChunkSummary.from_metadata(chunk_of(o.name) or 0, o.metadata).seconds
        for o in store.list_objects(outputs_dir(prefix, job_id))
    )


def gateway_load(
    port: int, seconds: float, max_rows: int, concurrency: int = 8
) -> tuple[int, int, float]:
    """(rows scored, errors, seconds): one row per MLflow request, ``concurrency`` clients."""
    done = [0, 0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    per_thread = max_rows // concurrency

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        ok = bad = 0
        for i in range(per_thread):
            if time.monotonic() > stop:
                break
            body = json.dumps({"dataframe_records": [{"x": float(k * per_thread + i)}]})
            try:
                conn.request(
                    "POST", "/model/demo/invocations", body, {"Content-Type": "application/json"}
                )
                resp = conn.getresponse()
                resp.read()
                ok, bad = (ok + 1, bad) if resp.status == 200 else (ok, bad + 1)
            except (OSError, http.client.HTTPException):
                bad += 1
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with lock:
            done[0] += ok
            done[1] += bad

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    return done[0], done[1], time.monotonic() - started


def raw_broker_ms(url: str, n: int) -> tuple[float, float]:
    """(publish, consume) ms per message of one chunk's size on this broker, a scratch queue."""
    from kombu import Connection  # type: ignore[attr-defined]

    from modelsync.jobs.model import ChunkTask

    msg = {"task": ChunkTask("0" * 24, 1, "demo", None, "jsonl", 5000, 5000).to_message()}
    with Connection(url) as conn:
        queue = conn.SimpleQueue("modelsync.bench.scratch")
        t0 = time.perf_counter()
        for _ in range(n):
            queue.put(msg, serializer="json")
        publish = (time.perf_counter() - t0) / n * 1000
        t0 = time.perf_counter()
        for _ in range(n):
            queue.get(timeout=10).ack()
        consume = (time.perf_counter() - t0) / n * 1000
        queue.clear()
        queue.close()
    return publish, consume


def _json(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def wait_served(api: Api, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            doc = api.call("GET", "/v1/models/demo")
            if doc["versions"].get("1", {}).get("available"):
                return
        except urllib.error.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("demo v1 not served in time")


def first_results(api: Api, jobs: int) -> list[float]:
    """Seconds from a submit (one chunk of 100 rows, idle worker) to its first chunk scored."""
    out = []
    for i in range(jobs):
        t0 = time.monotonic()
        rows = [{"x": float(i)}] * 100
        job = api.call(
            "POST", "/v1/jobs", _json({"model": "demo", "rows": rows}), "application/json"
        )
        api.wait(job["id"], "first", every_s=0.02)
        out.append(time.monotonic() - t0)
    return out


def report(figures: dict[str, Any]) -> None:
    f = figures

    def n(key: str) -> str:
        return f"{f[key]:,.0f}"

    table(
        f"jobs: {f['rows']:,} rows of JSON Lines ({f['upload_MB']:.1f} MB), "
        f"{CHUNK_ROWS} rows per chunk",
        [
            ("upload + chunking + enqueue, s", f["submit_s"]),
            ("job, 1 worker: rows/s", n("job_1w_rows_per_s")),
            ("job, 1 worker: rows per CPU-second", n("job_1w_rows_per_cpu_s")),
            ("job, 2 workers: rows/s", n("job_2w_rows_per_s")),
            ("job, 2 workers: rows per CPU-second", n("job_2w_rows_per_cpu_s")),
            ("gateway c=8, 1 row/request: rows/s", n("gateway_c8_rows_per_s")),
            ("gateway c=8: rows per CPU-second", n("gateway_c8_rows_per_cpu_s")),
            ("job vs gateway per core (goal >= 1)", f["job_vs_gateway_per_core"]),
            ("submit -> first result p50 ms", f["first_result_p50_ms"]),
            ("worker peak RSS MB", f["worker_peak_rss_MB"]),
            ("broker per chunk, publish ms (raw)", f["broker_publish_ms"]),
            ("broker per chunk, consume + ack ms (raw)", f["broker_consume_ms"]),
            ("queueing overhead per chunk, ms (end to end)", f["broker_overhead_ms_per_chunk"]),
        ],
    )


def measure(
    api: Api, node: Any, redis: Any, store: Any, base: list[int], quick: bool
) -> dict[str, Any]:
    rows = 50_000 if quick else 1_000_000
    data = b"".join(b'{"x": %d.5}\n' % (i % 1000) for i in range(rows))
    f: dict[str, Any] = {"rows": rows, "chunk_rows": CHUNK_ROWS, "upload_MB": len(data) / 1e6}
    quiet = {"MODELSYNC_LOG_LEVEL": "warning"}
    workers = [node.start_worker(redis.url, extra_env=quiet)]
    warm = api.call(
        "POST", "/v1/jobs", _json({"model": "demo", "rows": [{"x": 1.0}]}), "application/json"
    )
    api.wait(warm["id"], "done")
    firsts = first_results(api, 5 if quick else 15)
    f["first_result_p50_ms"] = percentile(firsts, 50) * 1000
    f["first_result_p90_ms"] = percentile(firsts, 90) * 1000
    one = run_job(api, data, base + [w.pid for w in workers])
    busy = chunk_seconds(store, "models", one["job"]["id"])
    chunks = one["job"]["chunks"]
    f.update(
        job_1w_rows_per_s=one["rows_per_s"],
        job_1w_rows_per_cpu_s=one["rows_per_cpu_s"],
        job_1w_wall_s=one["wall_s"],
        submit_s=one["submit_s"],
        # the worker's 2 threads (MODELSYNC_WORKER_CONCURRENCY) over the scoring window, less
        # the chunks' own time (read, score, write): what the queueing costs per chunk
        broker_overhead_ms_per_chunk=max(0.0, one["scoring_s"] * 2 - busy) / chunks * 1000,
    )
    workers.append(node.start_worker(redis.url, extra_env=quiet))
    two = run_job(api, data, base + [w.pid for w in workers])
    f.update(
        job_2w_rows_per_s=two["rows_per_s"],
        job_2w_rows_per_cpu_s=two["rows_per_cpu_s"],
        job_2w_wall_s=two["wall_s"],
        worker_peak_rss_MB=max(_peak_rss(w.pid) for w in workers),
    )
    f["broker_publish_ms"], f["broker_consume_ms"] = raw_broker_ms(
        redis.url, 200 if quick else 2000
    )
    gw_pids = [node.gateway.pid, node.model_server.pid]
    cpu0 = cpu_s(gw_pids) + self_cpu_s()
    ok, bad, seconds = gateway_load(node.gateway_port, 5.0 if quick else 30.0, rows)
    f["gateway_c8_rows_per_s"] = ok / seconds
    f["gateway_c8_rows_per_cpu_s"] = ok / (cpu_s(gw_pids) + self_cpu_s() - cpu0)
    f["gateway_errors"] = bad
    f["job_vs_gateway_per_core"] = f["job_1w_rows_per_cpu_s"] / f["gateway_c8_rows_per_cpu_s"]
    f["job_2w_vs_gateway_rows_per_s"] = f["job_2w_rows_per_s"] / f["gateway_c8_rows_per_s"]
    return f


def run(quick: bool) -> dict[str, Any]:
    from modelsync.dev.brokers import RedisServer
    from modelsync.dev.emulator import GCSEmulator
    from modelsync.dev.models import make_linear_model
    from modelsync.dev.procs import MasterSpec, Node, start_master
    from modelsync.publish import publish
    from modelsync.settings import StoreSettings
    from modelsync.store import GCSStore

    quiet = {"MODELSYNC_LOG_LEVEL": "warning"}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        with GCSEmulator(log_path=str(tmp / "gcs.log")) as gcs, RedisServer(tmp / "redis") as redis:
            store = GCSStore(StoreSettings(bucket="bench-jobs", emulator_host=gcs.url))
            store.ensure_bucket()
            master = start_master(
                tmp / "master",
                MasterSpec(
                    bucket="bench-jobs",
                    emulator_host=gcs.url,
                    admin_token=TOKEN_A,
                    node_secret=TOKEN_N,
                    catalog_s=1.0,
                    extra_env={
                        "MODELSYNC_BROKER_URL": redis.url,
                        "MODELSYNC_JOB_CHUNK_ROWS": str(CHUNK_ROWS),
                        "MODELSYNC_JOB_POLL_S": "1",
                        **quiet,
                    },
                ),
            )
            node = Node(
                tmp / "node",
                bucket="bench-jobs",
                emulator_host=gcs.url,
                poll_s=1.0,
                gateway=True,
                master_url=master.url,  # type: ignore[attr-defined]
                node_secret=TOKEN_N,
                extra_env=quiet,
            )
            try:
                node.start()
                publish(store, make_linear_model(tmp / "src", 2.0, 1.0), "demo")
                api = Api(master.url)  # type: ignore[attr-defined]
                wait_served(api)
                assert redis.proc is not None and node.model_server is not None
                assert gcs.process is not None
                base = [master.pid, redis.proc.pid, gcs.process.pid, node.model_server.pid]
                figures = measure(api, node, redis, store, base, quick)
            finally:
                node.stop()
                master.stop()
    report(figures)
    return figures


def _peak_rss(pid: int) -> float:
    from bench.common import rss_mb

    return rss_mb(pid, peak=True)
