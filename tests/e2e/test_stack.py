"""stack.yml on a real Docker Engine in a one-node Swarm, with fake-gcs-server on the host.

Builds the images (scripts/build-images.sh: engine, base image, wheelhouse, docker build),
deploys the stack, publishes models from the host and checks over gRPC that TF Serving in the
stack serves them; forces rolling updates of the puller and the config manager under continuous
Predict traffic; removes the stack and checks no container is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from e2e_helpers import sh, wait_for  # type: ignore[import-not-found]

from modelsync.client import PredictClient
from modelsync.dev.emulator import GCSEmulator, free_port
from modelsync.nodeauth import node_token
from modelsync.publish import PublishOptions, publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

pytestmark = pytest.mark.e2e
STACK = "modelsync-e2e"
SERVICES = ("master", "tfserving", "puller", "config_manager", "gateway", "broker", "worker")
PREFIX = "modelsync_e2e"


def stack_containers() -> list[str]:
    return sh(
        "docker", "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={STACK}"
    ).stdout.split()


@pytest.fixture(scope="module")
def stack(images: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    work = tmp_path_factory.mktemp("e2e")
    emu = GCSEmulator(log_path=str(work / "fake-gcs.log")).start()
    settings = StoreSettings(bucket="e2e", emulator_host=emu.url)
    GCSStore(settings).ensure_bucket()
    ports = {
        k: free_port()
        for k in (
            "MODELSYNC_MASTER_PORT",
            "MODELSYNC_PULLER_PORT",
            "MODELSYNC_CONFIG_MANAGER_PORT",
            "TFS_GRPC_PORT",
            "TFS_REST_PORT",
            "MODELSYNC_GATEWAY_PORT",
            "MODELSYNC_BROKER_PORT",
            "MODELSYNC_WORKER_PORT",
        )
    }
    tokens = {
        "admin_token": "e2e-admin-token-0123456789",
        "read_token": "e2e-read-token-0123456789",
        "node_secret": "e2e-node-secret-0123456789",
        "gateway_token": "e2e-gateway-token-0123456789",
        "session_key": "e2e-session-key-0123456789abcdef0123456789abcdef",
        "gcs_credentials": "{}",
        "broker_password": "e2e-broker-password-0123456789",
    }
    # this node's own token, a file on the node, for the id its daemons beat under: its Swarm
    # node ID (stack.yml's {{.Node.ID}})
    hostname = sh("docker", "info", "--format", "{{.Name}}").stdout.strip()
    node_id = sh("docker", "info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
    node_token_file = work / "node_token"
    node_token_file.write_text(node_token(tokens["node_secret"], node_id))
    node_token_file.chmod(0o444)  # the image's user reads it
    sh("docker", "stack", "rm", STACK, check=False)
    wait_for(lambda: not stack_containers(), 120, "leftovers of an earlier run removed")
    for name, value in tokens.items():
        sh("docker", "secret", "rm", f"{PREFIX}_{name}", check=False)
        subprocess.run(
            ["docker", "secret", "create", f"{PREFIX}_{name}", "-"],
            input=value,
            text=True,
            check=True,
            capture_output=True,
        )
    env = {
        "MODELSYNC_IMAGE": images,
        "TFSERVING_IMAGE": images,
        "MODELSYNC_BUCKET": "e2e",
        "STORAGE_EMULATOR_HOST": emu.url,
        "MODELSYNC_SECRET_PREFIX": PREFIX,
        "MODELSYNC_MASTER_URL": f"http://127.0.0.1:{ports['MODELSYNC_MASTER_PORT']}",
        "MODELSYNC_POLL_S": "1",
        "MODELSYNC_CATALOG_S": "2",
        "TFS_MEMORY": "4G",
        "MODELSYNC_GATEWAY_HOST": "127.0.0.1",
        "MODELSYNC_GATEWAY_URL": f"http://127.0.0.1:{ports['MODELSYNC_GATEWAY_PORT']}",
        "MODELSYNC_NODE_TOKEN_PATH": str(node_token_file),
        "MODELSYNC_BROKER_URL": f"redis://127.0.0.1:{ports['MODELSYNC_BROKER_PORT']}/0",
        # the master reads the engine's socket (its Swarm view, container models) as the
        # socket's group, as the README's deploy steps say
        "MODELSYNC_DOCKER_GID": str(os.stat("/var/run/docker.sock").st_gid),
        **{k: str(v) for k, v in ports.items()},
    }
    sh("docker", "stack", "deploy", "-c", "stack.yml", STACK, env=env)
    try:
        yield {
            "ports": ports,
            "tokens": tokens,
            "store": GCSStore(settings),
            "emu": emu,
            "hostname": hostname,
            "node_id": node_id,
        }
    finally:
        logs = {}
        for svc in SERVICES:
            logs[svc] = sh(
                "docker", "service", "logs", "--tail", "40", f"{STACK}_{svc}", check=False
            ).stdout
        (work / "service-logs.json").write_text(json.dumps(logs, indent=1))
        sh("docker", "stack", "rm", STACK, check=False)
        wait_for(lambda: not stack_containers(), 120, "stack containers removed")
        for name in tokens:
            sh("docker", "secret", "rm", f"{PREFIX}_{name}", check=False)
        for vol in sh(
            "docker",
            "volume",
            "ls",
            "-q",
            "--filter",
            f"label=com.docker.stack.namespace={STACK}",
            check=False,
        ).stdout.split():
            sh("docker", "volume", "rm", vol, check=False)
        emu.stop()


@pytest.mark.timeout(1900)  # its waits and two service updates add up to 1,800 s
def test_stack_serves_switches_prunes_and_survives_rolling_updates(
    stack, model_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ports, store = stack["ports"], stack["store"]
    client = PredictClient(f"127.0.0.1:{ports['TFS_GRPC_PORT']}")
    master = f"http://127.0.0.1:{ports['MODELSYNC_MASTER_PORT']}"

    def get(url: str, token: str | None = None) -> dict:
        req = urllib.request.Request(
            url, headers={"Authorization": f"Bearer {token}"} if token else {}
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    wait_for(lambda: get(f"{master}/healthz")["status"] == "alive", 300, "master up")
    publish(store, model_factory(2.0), "demo", PublishOptions(version=1))

    def served() -> tuple[int, list[float]]:
        version, out = client.predict("demo", {"x": [1.0, 2.0]}, timeout_s=5)
        return version, out["y"].tolist()

    assert wait_for(lambda: served() == (1, [3.0, 5.0]), 300, "v1 served by the stack")
    publish(store, model_factory(3.0), "demo", PublishOptions(version=2))
    assert wait_for(lambda: served() == (2, [4.0, 7.0]), 120, "switch to v2")
    publish(store, model_factory(4.0), "demo", PublishOptions(version=3))
    assert wait_for(lambda: served() == (3, [5.0, 9.0]), 120, "switch to v3")
    puller_status = f"http://127.0.0.1:{ports['MODELSYNC_PULLER_PORT']}/status"
    wait_for(
        lambda: sorted(get(puller_status)["installed"]["demo"]) == ["2", "3"],
        60,
        "v1 pruned, v2 kept for rollback",
    )
    # the master sees the node converge
    admin = stack["tokens"]["admin_token"]
    wait_for(
        lambda: get(f"{master}/v1/cluster", admin)["models"]["demo"]["converged"],
        60,
        "converged in the master's view",
    )
    # the gateway, MLflow style: /model/<name>/invocations answers from the served version,
    # with the stack's gateway token only
    gateway = f"http://127.0.0.1:{ports['MODELSYNC_GATEWAY_PORT']}"

    def invocations(token: str | None) -> tuple[str | None, list[float]]:
        req = urllib.request.Request(
            f"{gateway}/model/demo/invocations",
            method="POST",
            data=json.dumps({"inputs": {"x": [1.0, 2.0]}}).encode(),
            headers={"Content-Type": "application/json"}
            | ({"Authorization": f"Bearer {token}"} if token else {}),
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.headers.get("X-Model-Version"), json.loads(r.read())["predictions"]

    gateway_token = stack["tokens"]["gateway_token"]
    assert wait_for(
        lambda: invocations(gateway_token) == ("3", [5.0, 9.0]), 120, "the gateway answers"
    )
    for token in (None, "not-the-gateway-token"):  # no scoring without the token
        with pytest.raises(urllib.error.HTTPError) as refused:
            invocations(token)
        assert refused.value.code == 401
    # the node's daemons proved their node with its own token: the master lists that node
    nodes = get(f"{master}/v1/nodes", admin)["nodes"]
    assert [(n["node_id"], n["hostname"]) for n in nodes] == [(stack["node_id"], stack["hostname"])]
    assert set(nodes[0]["roles"]) == {"puller", "config_manager", "gateway"}
    # try-it through the master reaches the node's gateway (its address, the gateway port)
    req = urllib.request.Request(
        f"{master}/v1/models/demo/try",
        method="POST",
        data=json.dumps({"node": stack["node_id"], "body": {"inputs": {"x": [1.0]}}}).encode(),
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        tried = json.loads(r.read())
    assert tried["status"] == 200 and tried["answer"] == {"predictions": [5.0]}, tried

    errors: list[str] = []
    ok = [0]
    stop = threading.Event()

    def traffic() -> None:
        c = PredictClient(f"127.0.0.1:{ports['TFS_GRPC_PORT']}")
        deadline = time.monotonic() + 600
        for _ in range(1_000_000):
            if stop.is_set() or time.monotonic() > deadline:
                break
            try:
                c.predict("demo", {"x": [1.0]}, timeout_s=5)
                ok[0] += 1
            except Exception as exc:
                errors.append(str(exc)[:200])
            time.sleep(0.01)
        c.close()

    t = threading.Thread(target=traffic)
    t.start()
    try:
        for svc in ("puller", "config_manager"):
            sh(
                "docker",
                "service",
                "update",
                "--force",
                "--detach=false",
                f"{STACK}_{svc}",
                timeout=300,
            )
        time.sleep(3)
    finally:
        stop.set()
        t.join(timeout=60)
    assert errors == [], errors[:5]
    assert ok[0] > 100
    # after the restarts the node still follows the bucket
    publish(store, model_factory(5.0), "demo", PublishOptions(version=4))
    assert wait_for(lambda: served() == (4, [6.0, 11.0]), 180, "v4 after rolling updates")
    client.close()


@pytest.mark.timeout(400)
def test_stack_scores_a_batch_job_through_the_broker_and_a_worker(stack) -> None:  # type: ignore[no-untyped-def]
    """After the rolling updates (demo v4, y = 5x + 1): a job through the master, the stack's
    broker (Redis with its password from the secret) and the worker on the node."""
    ports, tokens = stack["ports"], stack["tokens"]
    master = f"http://127.0.0.1:{ports['MODELSYNC_MASTER_PORT']}"
    headers = {"Authorization": f"Bearer {tokens['admin_token']}"}

    def call(method: str, path: str, body: object = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(master + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    names = wait_for(
        lambda: json.loads(call("GET", "/v1/jobs")[1])["workers"]["names"], 180, "a worker"
    )
    assert len(names) == 1 and names[0].endswith("@" + stack["node_id"]), names
    rows = [{"x": float(i)} for i in range(300)] + [{"x": "bad"}]
    code, body = call("POST", "/v1/jobs", {"model": "demo", "version": 4, "rows": rows})
    assert code == 201, body
    job = json.loads(body)["id"]
    done = wait_for(
        lambda: (d := json.loads(call("GET", f"/v1/jobs/{job}")[1]))["state"] == "done" and d,
        180,
        "the job done",
    )
    assert done["progress"]["rows_done"] == 301 and done["progress"]["errors"] == 1
    code, result = call("GET", f"/v1/jobs/{job}/result")
    lines = [json.loads(line) for line in result.splitlines()]
    assert code == 200 and [d["row"] for d in lines] == list(range(301))
    assert lines[3] == {"row": 3, "version": 4, "outputs": {"y": 16.0}} and "error" in lines[300]


def test_stack_removal_leaves_no_containers(stack) -> None:  # type: ignore[no-untyped-def]
    # the services are the ones stack.yml declares; the module fixture's teardown removes the
    # stack and fails unless every container of it is gone within two minutes
    services = sh("docker", "stack", "services", STACK, "--format", "{{.Name}}").stdout.split()
    assert sorted(services) == sorted(f"{STACK}_{s}" for s in SERVICES)


@pytest.mark.timeout(300)  # a master start (60 s) and one wait (60 s)
def test_swarm_view_flags_nodes_without_live_daemons(stack, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A master that can read the Docker socket lists the Swarm's nodes and the tasks of the
    modelsync services, and flags a TF Serving node whose puller and config manager send it no
    heartbeats (this second master, on the host, receives none: the stack's nodes beat to
    their own master)."""
    from modelsync.dev.procs import MasterSpec, start_master

    emu = stack["emu"]
    admin, node = "swarm-admin-token-0123456789", "swarm-node-token-0123456789"
    proc = start_master(
        tmp_path,
        MasterSpec(
            bucket="e2e",
            emulator_host=emu.url,
            admin_token=admin,
            node_secret=node,
            extra_env={"MODELSYNC_DOCKER": "on"},
        ),
    )
    try:

        def view() -> dict:
            req = urllib.request.Request(
                f"{proc.url}/v1/nodes",  # type: ignore[attr-defined]
                headers={"Authorization": f"Bearer {admin}"},
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read())["swarm"]

        swarm = wait_for(
            lambda: (
                (v := view())
                and v.get("swarm")
                and all(
                    "running" in n["tasks"].get(role, [])
                    for n in v["nodes"]
                    for role in ("tfserving", "puller", "config_manager")
                )
                and v
            ),
            60,
            "swarm tasks visible",
        )
        (n,) = swarm["nodes"]
        assert n["labels"].get("modelsync.serving") == "true"
        problems = {p["problem"] for p in swarm["problems"]}
        assert "runs TF Serving; its puller sends no heartbeats" in problems
        assert "runs TF Serving; its config_manager sends no heartbeats" in problems
    finally:
        proc.stop()
