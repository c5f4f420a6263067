"""master: simulated nodes heartbeating every 5 s with 50-model reports, the config managers'
beats carrying request telemetry of 20 models, against the master under gunicorn — and every
simulated node also holding a watch (``GET /v1/watch``), woken by a policy write every
``WRITE_EVERY_S``; then the cluster, models and metrics views under that registry, and the
SQLite file's size."""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import requests

from bench.common import percentile, table, tree_rss_mb
from modelsync.dev.emulator import GCSEmulator
from modelsync.dev.procs import MasterSpec, start_master
from modelsync.nodeauth import node_token
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore
from modelsync.telemetry import LATENCY_BOUNDS_US, Histogram, ModelInterval

ADMIN, NODE = "bench-admin-token-0123456789", "bench-node-token-0123456789"
MODELS = 50
TELEMETRY_MODELS = 20
CLIENT_PROCESSES, THREADS_PER_CLIENT = 4, 16
WRITE_EVERY_S = 10.0  # a policy write (pin / unpin) wakes every watch
PROBES, PROBE_EVERY_S = 10, 0.05  # a lone daemon beating for 10 more nodes, 20 beats/s


def telemetry_json(rng: random.Random, period: float) -> dict[str, Any]:
    """What a config manager sends for 20 busy models over one beat: a few hundred requests,
    some errors, latencies over a handful of TF Serving's buckets."""
    bounds = (*LATENCY_BOUNDS_US, float("inf"))
    models = {}
    for m in range(TELEMETRY_MODELS):
        ok = rng.randint(100, 1000)
        counts = [0] * len(bounds)
        for _ in range(8):
            counts[rng.randint(12, 20)] += ok // 8
        cumulative = []
        total = 0
        for c in counts:
            total += c
            cumulative.append(total)
        iv = ModelInterval(
            period,
            {"OK": total, "INVALID_ARGUMENT": rng.randint(0, 5)},
            Histogram(bounds, tuple(cumulative), total * 2000.0),
        )
        models[f"model{m:02d}"] = {**iv.to_json(), "versions": [1]}
    now = time.time()
    return {"start": now - period, "end": now, "models": models}


def run(quick: bool) -> dict[str, Any]:
    n_nodes = 100 if quick else 500
    # MODELSYNC_BENCH_WATCH=0: the same run without the watches, to compare on a busy machine
    n_watchers = n_nodes if os.environ.get("MODELSYNC_BENCH_WATCH", "1") != "0" else 0
    daemons = 2 * n_nodes  # each node beats twice: its puller and its config manager
    duration, period = 60.0, 5.0
    with tempfile.TemporaryDirectory() as tmp_s, GCSEmulator() as emu:
        tmp = Path(tmp_s)
        settings = StoreSettings(bucket="bench", emulator_host=emu.url)
        store = GCSStore(settings)
        store.ensure_bucket()
        for m in range(MODELS):
            for f in ("saved_model.pb", "_READY"):
                store.write(f"models/model{m:02d}/1/{f}", b"x")
        master = start_master(
            tmp,
            MasterSpec(
                bucket="bench",
                emulator_host=emu.url,
                admin_token=ADMIN,
                node_secret=NODE,
                catalog_s=5,
            ),
        )
        url = master.url  # type: ignore[attr-defined]
        report = {f"model{m:02d}": [1] for m in range(MODELS)}
        rng = random.Random(7)
        samples = [json.dumps(telemetry_json(rng, period)) for _ in range(20)]
        bodies = [_body(i, period, report, samples) for i in range(daemons)]  # built ahead
        # the daemons are separate processes on real nodes: here CLIENT_PROCESSES processes
        # of threads (one process of 64 threads measured its own GIL waits, not the master)
        started = time.monotonic() + 1.0
        jobs = [(url, bodies, started, duration, period, k) for k in range(CLIENT_PROCESSES)]
        ctx = get_context("fork")
        with ProcessPoolExecutor(CLIENT_PROCESSES + 2, mp_context=ctx) as pool:
            watching = pool.submit(_watchers, url, n_watchers, time.time() + duration + 25)
            probing = pool.submit(_probe, url, bodies[: PROBES * 2], started, duration)
            writes: list[float] = []
            writer = threading.Thread(
                target=_policy_writes, args=(url, time.time() + 5, duration, writes)
            )
            writer.start()
            parts = list(pool.map(_client, jobs, timeout=duration + 180))
            writer.join(timeout=120)
            quiet = _quiet_phase(url, master.pid, writes)  # no heartbeats: the watch's own cost
            woken, watch_errors, answers = watching.result(timeout=240)
            probe_lat, probe_errors = probing.result(timeout=240)
        lat = [x for part_lat, _, _ in parts for x in part_lat]
        first = [x for _, part_first, _ in parts for x in part_first]
        errors = [e for _, _, part_errors in parts for e in part_errors]
        wake = _wake_latencies(writes, woken)
        session = requests.Session()
        paths = {
            "cluster": "cluster",
            "models": "models",
            "metrics": "models/model07/metrics?since=1h",
        }
        views: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(20):
            for name, path in paths.items():
                t = time.perf_counter()
                r = session.get(
                    f"{url}/v1/{path}", timeout=30, headers={"Authorization": f"Bearer {ADMIN}"}
                )
                views[name].append(time.perf_counter() - t)
                assert r.status_code == 200, r.text[:200]
        metrics = session.get(
            f"{url}/v1/{paths['metrics']}", timeout=30, headers={"Authorization": f"Bearer {ADMIN}"}
        ).json()
        db = tmp / "master.sqlite3"
        db_mb = (
            sum(p.stat().st_size for p in tmp.glob("master.sqlite3*")) / 2**20
            if db.exists()
            else float("nan")
        )
        rows = _rows(db)
        cluster = session.get(
            f"{url}/v1/cluster", timeout=30, headers={"Authorization": f"Bearer {ADMIN}"}
        ).json()
        rss = tree_rss_mb(master.pid)
        server_p99 = _server_p99_ms(session.get(f"{url}/metrics", timeout=30).text)
        master.stop()
        compact_s, merged = _compaction(db)
    figures = {
        "nodes": n_nodes,
        "daemons": daemons,
        "heartbeats": len(lat) + len(first),
        "heartbeat_p50_ms": percentile(lat, 50) * 1000,
        "heartbeat_p99_ms": percentile(lat, 99) * 1000,
        "first_beat_p50_ms": percentile(first, 50) * 1000,
        "first_beat_p99_ms": percentile(first, 99) * 1000,
        "heartbeat_errors": len(errors),
        "heartbeat_server_p99_ms": server_p99,
        "heartbeat_probe_p50_ms": percentile(probe_lat, 50) * 1000,
        "heartbeat_probe_p99_ms": percentile(probe_lat, 99) * 1000,
        "heartbeat_probe_errors": len(probe_errors),
        "cluster_view_p99_ms": percentile(views["cluster"], 99) * 1000,
        "models_view_p99_ms": percentile(views["models"], 99) * 1000,
        "metrics_view_p99_ms": percentile(views["metrics"], 99) * 1000,
        "metrics_requests_1h": metrics["total"]["requests"],
        "telemetry_rows": rows,
        "sqlite_MB": round(db_mb, 1),
        "compaction_s": compact_s,
        "compaction_rows_merged": merged,
        "master_rss_MB": rss,
        "registered": cluster["nodes"]["total"],
        "watchers": n_watchers,
        "watch_lines": answers,
        "watch_errors": len(watch_errors),
        "policy_writes": len(writes),
        "watch_wake_p50_ms": percentile(wake, 50) * 1000,
        "watch_wake_p99_ms": percentile(wake, 99) * 1000,
        "watch_woken_share": len(wake) / max(1, len(writes) * n_watchers),
        **quiet,
    }
    table(
        f"master: {n_nodes} simulated nodes ({daemons} daemons), a beat every {period:.0f} s "
        f"each, with a {MODELS}-model report and telemetry of {TELEMETRY_MODELS} models, "
        f"{duration:.0f} s",
        [
            ("heartbeats sent", len(lat) + len(first) + len(errors)),
            (
                "heartbeat p50 / p99 ms",
                f"{figures['heartbeat_p50_ms']:.1f} / {figures['heartbeat_p99_ms']:.1f}",
            ),
            (
                "each daemon's first beat (a new node, registered at once) p50 / p99 ms",
                f"{figures['first_beat_p50_ms']:.1f} / {figures['first_beat_p99_ms']:.1f}",
            ),
            ("heartbeat errors", len(errors)),
            (
                "a lone daemon's heartbeats (one thread, 20/s): p50 / p99 ms",
                f"{figures['heartbeat_probe_p50_ms']:.1f} / "
                f"{figures['heartbeat_probe_p99_ms']:.1f}",
            ),
            (
                "watches held (one per node), answers, errors",
                f"{n_nodes}, {answers}, {len(watch_errors)}",
            ),
            (
                f"policy writes ({len(writes)}) -> each watch answered: p50 / p99 ms",
                f"{figures['watch_wake_p50_ms']:.0f} / {figures['watch_wake_p99_ms']:.0f}",
            ),
            ("share of (write, watch) pairs woken", figures["watch_woken_share"]),
            (
                "master CPU ms per write told to every watch / per s of held watches",
                f"{quiet['watch_write_cpu_ms']:.0f} / {quiet['watch_idle_cpu_ms_per_s']:.1f}",
            ),
            ("heartbeat p99 ms in the master's handler (its own histogram)", server_p99),
            ("GET /v1/cluster p99 ms (20 calls)", figures["cluster_view_p99_ms"]),
            ("GET /v1/models p99 ms (20 calls)", figures["models_view_p99_ms"]),
            (
                "GET /v1/models/<m>/metrics?since=1h p99 ms (20 calls)",
                figures["metrics_view_p99_ms"],
            ),
            ("telemetry rows (node x model), SQLite MB", f"{rows} / {db_mb:.1f}"),
            (
                "compaction of those rows into 1-minute rows: s / rows merged away",
                f"{compact_s:.2f} / {merged}",
            ),
            ("master RSS MB (arbiter + workers)", rss),
        ],
    )
    return figures


def _policy_writes(url: str, first_at: float, duration: float, times: list[float]) -> None:
    """Pin and unpin model00 every WRITE_EVERY_S while the heartbeats run and the watches are
    held; ``times`` gets the wall time of each API call."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {ADMIN}"}
    for k in range(int(duration // WRITE_EVERY_S)):  # bounded
        time.sleep(max(0.0, first_at + k * WRITE_EVERY_S - time.time()))
        times.append(time.time())
        if k % 2 == 0:
            r = session.post(
                f"{url}/v1/models/model00/pin", json={"version": 1}, headers=headers, timeout=30
            )
        else:
            r = session.delete(f"{url}/v1/models/model00/pin", headers=headers, timeout=30)
        assert r.status_code == 200, r.text[:200]


def _quiet_phase(url: str, pid: int, times: list[float]) -> dict[str, float]:
    """With the heartbeats over and the watches still held: the master's CPU per second of
    held watches, and per policy write told to every watch (less the idle share)."""
    from bench.common import tree_cpu_s

    session = requests.Session()
    headers = {"Authorization": f"Bearer {ADMIN}"}
    time.sleep(2)
    c0, t0 = tree_cpu_s(pid), time.monotonic()
    time.sleep(4)
    idle = (tree_cpu_s(pid) - c0) / (time.monotonic() - t0)
    bursts = []
    for k in range(4):
        c0, t0 = tree_cpu_s(pid), time.monotonic()
        times.append(time.time())
        if k % 2 == 0:
            session.post(
                f"{url}/v1/models/model00/pin", json={"version": 1}, headers=headers, timeout=30
            )
        else:
            session.delete(f"{url}/v1/models/model00/pin", headers=headers, timeout=30)
        time.sleep(2)
        bursts.append(tree_cpu_s(pid) - c0 - idle * (time.monotonic() - t0))
    return {
        "watch_idle_cpu_ms_per_s": idle * 1000,
        "watch_write_cpu_ms": sorted(bursts)[len(bursts) // 2] * 1000,
    }


def _watchers(url: str, n_nodes: int, until: float) -> tuple[list[float], list[str], int]:
    """One process of ``n_nodes`` threads, each a node's watch held until ``until``: the wall
    times of lines that told a change, the errors, the lines."""
    woken: list[float] = []
    errors: list[str] = []
    answers = [0]
    lock = threading.Lock()

    def watch(i: int) -> None:
        session = requests.Session()
        token = node_token(NODE, f"sim-{i:04d}")
        last: dict[str, Any] | None = None
        for _ in range(100):  # bounded: reconnects
            if time.time() >= until:
                break
            try:
                with session.get(
                    f"{url}/v1/watch",
                    headers={"Authorization": f"Bearer {token}"},
                    stream=True,
                    timeout=(10, 40),
                ) as r:
                    if r.status_code != 200:
                        raise RuntimeError(f"HTTP {r.status_code}")
                    for line in r.iter_lines(chunk_size=None):
                        doc = json.loads(line)
                        with lock:
                            answers[0] += 1
                            if last is not None and doc != last:
                                woken.append(time.time())
                        last = doc
                        if time.time() >= until:
                            break
            except Exception as exc:
                with lock:
                    errors.append(str(exc)[:100])
                time.sleep(1)

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(n_nodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, until - time.time()) + 60)
    return woken, errors, answers[0]


def _wake_latencies(writes: list[float], woken: list[float]) -> list[float]:
    """Each change line's delay after the write it tells of (the latest before it)."""
    out = []
    for t in woken:
        before = [w for w in writes if w <= t]
        if before:
            out.append(t - before[-1])
    return out


class _Beats:
    """Heartbeats over one keep-alive connection (http.client: the load generator shares this
    machine's two cores with the master, so it spends as little of them as it can; requests
    cost about twice the CPU per call)."""

    def __init__(self, url: str) -> None:
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.conn: http.client.HTTPConnection | None = None

    def post(self, body: bytes, token: str) -> float:
        """Send one beat; the seconds until its answer was read. RuntimeError unless 200."""
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        t = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                self.conn.connect()  # no Nagle: a beat's head and its body leave at once
                self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conn.request("POST", "/v1/nodes/heartbeat", body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            raise
        elapsed = time.perf_counter() - t
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {data[:100]!r}")
        return elapsed


def _probe(
    url: str, bodies: list[str], started: float, duration: float
) -> tuple[list[float], list[str]]:
    """A lone daemon's view: one process, one thread, beating for PROBES more nodes in turn
    (a beat every PROBE_EVERY_S), its own measurement free of the load generators' GIL."""
    beats = _Beats(url)
    lat: list[float] = []
    errors: list[str] = []
    renamed = [b.replace('"node_id": "sim-', '"node_id": "probe-', 1) for b in bodies]
    tokens = [node_token(NODE, json.loads(b)["node_id"]) for b in renamed]
    due = started
    for n in range(int(duration / PROBE_EVERY_S)):  # bounded in count and time
        if due > started + duration:
            break
        time.sleep(max(0.0, due - time.monotonic()))
        i = n % len(renamed)
        body = renamed[i].replace('"seq": -1', f'"seq": {n + 1}', 1).encode()
        try:
            took = beats.post(body, tokens[i])
            if n >= len(renamed):  # its nodes' first beats (registrations) are not counted
                lat.append(took)
        except Exception as exc:
            errors.append(str(exc)[:100])
        due += PROBE_EVERY_S
    return lat, errors


def _client(
    job: tuple[str, list[str], float, float, float, int],
) -> tuple[list[float], list[float], list[str]]:
    """One client process: THREADS_PER_CLIENT threads beating for every CLIENT_PROCESSES-th
    daemon, each daemon every ``period`` from its slot; returns the latencies of the beats
    after each daemon's first, of the first ones (a new node: its registration is written at
    once, and here every daemon registers within the first period), and the errors."""
    url, bodies, started, duration, period, k = job
    daemons = len(bodies)
    lat: list[float] = []
    first: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(j: int) -> None:
        client = _Beats(url)
        mine = [i for i in range(k, daemons, CLIENT_PROCESSES)][j::THREADS_PER_CLIENT]
        beats = {i: started + period * i / daemons for i in mine}  # spread evenly
        tokens = {i: node_token(NODE, json.loads(bodies[i])["node_id"]) for i in mine}
        mine_lat: list[float] = []
        mine_first: list[float] = []
        mine_errors: list[str] = []
        sent: dict[int, int] = {}
        for _ in range(10_000):  # bounded
            if not beats:
                break
            i = min(beats, key=beats.__getitem__)
            due = beats[i]
            if due > started + duration:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            sent[i] = sent.get(i, 0) + 1  # each batch a new number: none is a repeat
            body = bodies[i].replace('"seq": -1', f'"seq": {sent[i]}', 1).encode()
            try:
                (mine_first if sent[i] == 1 else mine_lat).append(client.post(body, tokens[i]))
            except Exception as exc:
                mine_errors.append(str(exc)[:100])
            beats[i] = due + period
        with lock:
            lat.extend(mine_lat)
            first.extend(mine_first)
            errors.extend(mine_errors)

    threads = [threading.Thread(target=worker, args=(j,)) for j in range(THREADS_PER_CLIENT)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=duration + 120)
    return lat, first, errors


def _body(i: int, period: float, report: dict[str, list[int]], samples: list[str]) -> str:
    """Daemon ``i``'s beat: even ones are pullers, odd ones config managers with telemetry."""
    role = "puller" if i % 2 == 0 else "config_manager"
    body = json.dumps(
        {
            "node_id": f"sim-{i // 2:04d}",
            "role": role,
            "heartbeat_s": period,
            "events": [],
            "status": {"installed" if role == "puller" else "available": report},
        }
    )
    if role == "config_manager":  # with request telemetry of 20 models, numbered as nodes do
        numbered = samples[i % len(samples)][:-1] + f', "boot": "{i:06x}", "seq": -1}}'
        body = body[:-1] + ', "telemetry": ' + numbered + "}"
    return body


def _compaction(db: Path) -> tuple[float, int]:
    """The hourly downsampling the master runs in the background, timed on this run's rows
    (as if they were an hour old): seconds, and the rows merged away."""
    from master.db import Database
    from master.telemetry import TelemetryStore

    telemetry = TelemetryStore(Database(db), retention_s=7 * 86400)  # no thread: only compact
    started = time.perf_counter()
    merged, _dropped = telemetry.compact(time.time() + 2 * 3600)
    return round(time.perf_counter() - started, 3), merged


def _rows(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM telemetry_node").fetchone()[0])


def _server_p99_ms(metrics_text: str) -> float | None:
    """The heartbeat route's p99 from the master's own latency histogram (its /metrics): the
    time inside the handler, without the client's and the HTTP server's share."""
    from modelsync.telemetry.histogram import quantile_ms
    from modelsync.telemetry.prometheus import parse

    buckets = sorted(
        (float(s.label("le") or "nan") * 1e6, s.value)  # seconds -> µs
        for s in parse(metrics_text).samples
        if s.name == "modelsync_master_request_seconds_bucket"
        and s.label("route") == "/v1/nodes/heartbeat"
    )
    return quantile_ms(0.99, buckets) if buckets else None
