"""``make demo``: the whole system on one machine, everything on 127.0.0.1.

Starts the GCS emulator, Redis (the jobs' broker), the master and one serving node (compatible
model server, config manager, puller, gateway and a jobs worker, as processes), publishes the
demo model v1 and prints a gRPC Predict answer from it, publishes v2 and prints the new answer
once it is served, then v3, and shows the model directory after the pruning; then a small batch
job through the worker, and the console's and the Jobs page's addresses. Then it sets the label
``stable`` on v3 and a staged rollout spec, sends a light Predict load (name-only requests, a
quarter naming ``stable``, 2 % with a bad input on purpose) and publishes v4: the console shows
its rollout judged per version against v3 (the label's traffic), client errors on both sides
and no rollback. It keeps running — publish more with ``modelsync publish`` from another shell
— until Ctrl-C stops everything.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from modelsync.dev.emulator import GCSEmulator, free_port
from modelsync.dev.procs import ManagedProcess
from modelsync.lifecycle import install_stop_handlers, wait_for_stop
from modelsync.settings import StoreSettings

DEMO_BUCKET = "modelsync-demo"
DEMO_VERSIONS = ((1, 2.0, 1.0), (2, 3.0, 1.0), (3, 4.0, 1.0))  # y = a*x + b
ROLLOUT_VERSION = (4, 5.0, 1.0)  # published under a staged rollout once the load runs
# one node: the canary stage is the whole node; a minute's bake, judged from 100 requests of v4
DEMO_ROLLOUT = {"canary_nodes": 1, "waves": [1.0], "bake_s": 60, "min_requests": 100}


def say(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def _wait(fn: Any, timeout_s: float, stop: threading.Event) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stop.is_set():
        try:
            value = fn()
            if value:
                return value
        except Exception:  # noqa: S110 - not served yet; try again
            pass
        time.sleep(0.1)
    return None


def _cluster(url: str, token: str) -> str | None:
    headers = {"Authorization": f"Bearer {token}"}
    req = urllib.request.Request(f"{url}/v1/cluster", headers=headers)  # noqa: S310 - 127.0.0.1
    with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - our own 127.0.0.1
        demo = json.loads(r.read())["models"].get("demo") or {}
    if not demo.get("converged") or demo.get("target_versions") != [3]:
        return None
    return (
        f"target versions {demo['target_versions']}, AVAILABLE on "
        f"{demo['versions']['3']['available']}/{demo['serving_nodes']} node(s), converged"
    )


def _admin(url: str, token: str, method: str, path: str, body: Any) -> Any:
    req = urllib.request.Request(  # noqa: S310 - our own 127.0.0.1
        url + path,
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - our own 127.0.0.1
        return json.loads(r.read())


def _watch(
    stop: threading.Event, procs: list[ManagedProcess], exit_after: float | None
) -> ManagedProcess | None:
    """Wait for Ctrl-C (or ``exit_after``); the first of ``procs`` found dead, if one dies."""
    deadline = None if exit_after is None else time.monotonic() + exit_after
    while not stop.is_set():
        for proc in procs:
            if not proc.alive():
                return proc
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return None
        wait_for_stop(stop, timeout_s=0.5 if left is None else min(0.5, left))
    return None


def _served_by(client: Any, version: int) -> tuple[int, Any] | None:
    """One Predict; its answer if ``version`` served it."""
    answer = client.predict("demo", {"x": [1.0, 2.0]})
    return answer if answer[0] == version else None


def _make_models(workdir: Path) -> dict[int, tuple[Path, float, float]]:
    """The demo SavedModels, written by TensorFlow in a child process whose start-up noise
    (absl, CUDA probes) goes to a log file instead of between the demo's lines."""
    from modelsync.dev.models import write_linear_models_quietly

    sources = {
        v: (workdir / "src" / f"demo-{v}", a, b) for v, a, b in (*DEMO_VERSIONS, ROLLOUT_VERSION)
    }
    todo = [{"out": str(p), "a": a, "b": b} for p, a, b in sources.values() if not p.exists()]
    if todo:
        write_linear_models_quietly(todo, workdir / "make-models.log")
    return sources


def _light_load(port: int, stop: threading.Event, rps: float = 10.0) -> None:
    """A few requests a second until the demo stops: a quarter name the label ``stable``, the
    rest only the model (the latest version); one in 50 is wrong on purpose (an unknown input:
    INVALID_ARGUMENT, so the error figures are not empty — and the rollout judge sees the same
    client errors on both sides); bounded in count."""
    import random

    from modelsync.client import PredictClient

    client = PredictClient(f"127.0.0.1:{port}")
    rng = random.Random(1)
    for _ in range(10_000_000):
        if stop.wait(1 / rps):
            break
        inputs = {"oops" if rng.random() < 0.02 else "x": [rng.random()]}
        label = "stable" if rng.random() < 0.25 else None
        with contextlib.suppress(Exception):  # wrong on purpose, or not served for a moment
            client.predict("demo", inputs, label=label, timeout_s=5)
    client.close()


def _demo_job(url: str, token: str) -> str:
    """A small batch job (rows inline) through the broker and the worker; its first lines."""
    rows = [{"x": float(x)} for x in range(1, 1001)]
    body = json.dumps({"model": "demo", "rows": rows}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    req = urllib.request.Request(f"{url}/v1/jobs", data=body, headers=headers)  # noqa: S310
    with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - our own 127.0.0.1
        job = json.loads(r.read())
    read = urllib.request.Request(f"{url}/v1/jobs/{job['id']}", headers=headers)  # noqa: S310
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with urllib.request.urlopen(read, timeout=10) as r:  # noqa: S310
            doc = json.loads(r.read())
        if doc["state"] == "done":
            result = urllib.request.Request(f"{url}/v1/jobs/{job['id']}/result", headers=headers)  # noqa: S310
            with urllib.request.urlopen(result, timeout=30) as r:  # noqa: S310
                first = r.readline().decode().strip()
            return (
                f"job {job['id']}: {doc['rows']} rows in {doc['chunks']} chunk(s) scored at "
                f"{doc['progress']['rows_per_s']} rows/s; first result line {first}"
            )
        time.sleep(0.2)
    return f"job {job['id']} still running after 60 s (see the Jobs page)"


def run_demo(
    workdir: str | Path | None = None, exit_after: float | None = None, keep: bool = False
) -> int:
    from modelsync.client import PredictClient
    from modelsync.dev.brokers import RedisServer
    from modelsync.dev.procs import MasterSpec, Node, start_master
    from modelsync.publish import PublishOptions, publish
    from modelsync.store import GCSStore

    stop = install_stop_handlers()  # before any slow step, so Ctrl-C is always clean
    tmp = None
    if workdir is None and not keep:
        tmp = tempfile.TemporaryDirectory(prefix="modelsync-demo-")
        workdir = Path(tmp.name)
    elif workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="modelsync-demo-"))
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    node: Node | None = None
    master = None
    failed = 0
    try:
        with (
            GCSEmulator(log_path=str(workdir / "fake-gcs.log")) as emu,
            RedisServer(workdir / "redis") as redis,
        ):
            os.environ["STORAGE_EMULATOR_HOST"] = emu.url
            settings = StoreSettings(bucket=DEMO_BUCKET, emulator_host=emu.url)
            store = GCSStore(settings)
            store.ensure_bucket()
            say(f"GCS emulator (fake-gcs-server): {emu.url}, bucket gs://{DEMO_BUCKET}")
            say(f"Redis (the jobs' broker and result backend): {redis.url}")
            say("writing the demo SavedModels with TensorFlow ...")
            sources = _make_models(workdir)
            admin_token, node_secret = secrets.token_hex(16), secrets.token_hex(16)
            gateway_port = free_port()
            say("starting the master (gunicorn) ...")
            master = start_master(
                workdir / "master",
                MasterSpec(
                    bucket=DEMO_BUCKET,
                    emulator_host=emu.url,
                    admin_token=admin_token,
                    node_secret=node_secret,
                    catalog_s=1.0,
                    extra_env={
                        "MODELSYNC_GATEWAY_PORT": str(gateway_port),
                        "MODELSYNC_BROKER_URL": redis.url,
                        "MODELSYNC_JOB_POLL_S": "1",
                    },
                ),
            )
            url = master.url  # type: ignore[attr-defined]
            say(f"  master             {url}  (pid {master.pid}, admin token: {admin_token})")
            say(
                "starting one serving node: model server, config manager, puller, gateway, "
                "jobs worker ..."
            )
            node = Node(
                workdir / "node",
                bucket=DEMO_BUCKET,
                emulator_host=emu.url,
                poll_s=1.0,
                master_url=master.url,  # type: ignore[attr-defined]
                node_secret=node_secret,
                gateway=True,
                gateway_port=gateway_port,
                extra_env={"MODELSYNC_HEARTBEAT_S": "1", "MODELSYNC_TELEMETRY_S": "2"},
            ).start()
            worker = node.start_worker(redis.url)
            for what, where in node.listening().items():
                say(f"  {what:18} {where}")
            say(f"  {'jobs worker':18} http://127.0.0.1:{worker.port}/status")  # type: ignore[attr-defined]
            say(f"  logs in {node.workdir}")
            client = PredictClient(f"127.0.0.1:{node.grpc_port}")
            for version, (src, a, b) in sources.items():
                if version == ROLLOUT_VERSION[0]:
                    break  # published under a staged rollout, below
                if stop.is_set():
                    break
                result = publish(
                    store, src, "demo", PublishOptions(version=version, overwrite=True)
                )
                say(f"published {result.uri} (y = {a} * x + {b})")
                started = time.monotonic()
                answer = _wait(lambda v=version: _served_by(client, v), 120, stop)
                if answer is None:
                    if not stop.is_set():
                        say(f"version {version} was not served within 120 s; see the logs")
                    break
                served, outputs = answer
                say(
                    f"gRPC Predict demo x=[1, 2] -> y={outputs['y'].tolist()} from version "
                    f"{served}, {time.monotonic() - started:.1f} s after publishing"
                )
            if not stop.is_set():
                _wait(lambda: not (node.model_root / "demo" / "1").exists(), 30, stop)
                listing = sorted(p.name for p in (node.model_root / "demo").iterdir())
                say(
                    f"{node.model_root / 'demo'}: {listing}  (v1 pruned once TF Serving "
                    "reported it END; v2 kept for a fast rollback; v3 served)"
                )
                view = _wait(lambda: _cluster(master.url, admin_token), 30, stop)  # type: ignore[attr-defined]
                if view:
                    say(f"master GET /v1/cluster: demo {view}")
                _admin(url, admin_token, "PUT", "/v1/models/demo/labels/stable", {"version": 3})
                _admin(url, admin_token, "PUT", "/v1/models/demo/rollout", DEMO_ROLLOUT)
                threading.Thread(
                    target=_light_load, args=(node.grpc_port, stop), daemon=True
                ).start()
                say(
                    "sending a light Predict load (about 10 requests/s: a quarter to the label "
                    "'stable' -> v3, 2 % with a bad input on purpose) so the console has live "
                    "figures"
                )
                say(f"batch {_demo_job(master.url, admin_token)}")  # type: ignore[attr-defined]
                say(
                    f"console: open {master.url}/ and sign in with the admin token "  # type: ignore[attr-defined]
                    f"{admin_token}"
                )
                say(
                    f"jobs: open {master.url}/jobs to submit a file or pasted rows, follow them "  # type: ignore[attr-defined]
                    "and download the results"
                )
                say(f"try: curl -H 'Authorization: Bearer {admin_token}' {master.url}/v1/cluster")  # type: ignore[attr-defined]
                say(
                    f"try (MLflow style, through the node's gateway): curl -d "
                    f'\'{{"inputs": {{"x": [1, 2]}}}}\' {node.gateway_url}'
                    "/model/demo/invocations"
                )
                say(
                    f"publish more from another shell: STORAGE_EMULATOR_HOST={emu.url} "
                    f"MODELSYNC_BUCKET={DEMO_BUCKET} .venv/bin/modelsync publish DIR "
                    "--model demo"
                )
                src, a, b = sources[ROLLOUT_VERSION[0]]
                publish(
                    store, src, "demo", PublishOptions(version=ROLLOUT_VERSION[0], overwrite=True)
                )
                say(
                    f"published v{ROLLOUT_VERSION[0]} (y = {a} * x + {b}) under a staged rollout "
                    f"({json.dumps(DEMO_ROLLOUT)}): the console's model page shows it judged "
                    "per version against v3, whose traffic the label 'stable' keeps"
                )
                say("running; press Ctrl-C to stop")
                dead = _watch(stop, [master, *node.processes()], exit_after)
                if dead is not None:
                    code = dead.proc.poll() if dead.proc else None
                    say(
                        f"the {dead.name} (pid {dead.pid}) has exited with code {code}: the demo "
                        f"cannot go on without it; its log: {dead.log_path}"
                    )
                    failed = 1
            client.close()
            say("stopping")
            node.stop()
            node = None
            master.stop()
    finally:
        if node is not None:
            node.stop()
        if master is not None:
            master.stop()
        if tmp is not None:
            tmp.cleanup()
    say(f"stopped; logs and models kept in {workdir}" if tmp is None else "stopped")
    return failed


if __name__ == "__main__":
    raise SystemExit(run_demo())
