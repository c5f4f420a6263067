"""A container model end to end on a real Docker Engine: the scikit-learn example
(examples/sklearn) built on the project's base image and pushed to the project's registry
(Debian's docker-registry, scripts/registry.sh), published with ``modelsync publish --image``,
run by the master as a Swarm service on the one-node Swarm, scored through the gateway (MLflow
JSON and CSV, ML-Kraken), stopped and started through the API, and replaced by a new version.

The master and the gateway run as processes of this checkout on the host (the master with the
engine's socket, as on a manager); the model runs in Swarm, pulled from the registry by digest.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import helpers  # type: ignore[import-not-found]
import pytest
from e2e_helpers import sh, wait_for  # type: ignore[import-not-found]

from modelsync.dev.emulator import GCSEmulator, free_port
from modelsync.dev.procs import ManagedProcess, MasterSpec, start_master, wait_http_ok
from modelsync.nodeauth import node_token
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

pytestmark = pytest.mark.e2e
ADMIN, READ, SECRET = (
    "e2e-admin-token-0123456789",
    "e2e-read-token-0123456789",
    "e2e-node-secret-0123456789",
)
PUBLISH = "e2e-publish-token-0123456789"
PREFIX = f"mse2e{os.getpid()}"  # the services' name prefix: only this test's are touched
NODE = "e2e-node"
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


def our_services() -> list[str]:
    names = sh("docker", "service", "ls", "--format", "{{.Name}}").stdout.split()
    return [n for n in names if n.startswith(PREFIX + "-")]


def http(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    raw: bytes | None = None,
    ctype: str = "application/json",
) -> tuple[int, Any, dict[str, str]]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", ctype)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), dict(exc.headers)


@pytest.fixture(scope="module")
def image() -> str:
    """The example's image in the project's registry (built on the project's base image)."""
    sh("bash", "scripts/docker-engine.sh")
    sh("bash", "scripts/swarm-init.sh")
    registry = sh("bash", "scripts/registry.sh").stdout.strip().splitlines()[-1]
    return (
        sh("bash", "examples/sklearn/build.sh", registry, "1", timeout=1800)
        .stdout.strip()
        .splitlines()[-1]
    )


@pytest.fixture(scope="module")
def cluster(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("containers-e2e")
    emu = GCSEmulator(log_path=str(work / "fake-gcs.log")).start()
    settings = StoreSettings(bucket="containers", emulator_host=emu.url)
    GCSStore(settings).ensure_bucket()
    port_base = free_port()
    master = start_master(
        work,
        MasterSpec(
            bucket="containers",
            emulator_host=emu.url,
            admin_token=ADMIN,
            node_secret=SECRET,
            read_token=READ,
            publish_token=PUBLISH,
            catalog_s=2.0,
            extra_env={
                "MODELSYNC_DOCKER": "on",
                "MODELSYNC_DOCKER_SOCKET": "/var/run/docker.sock",
                "MODELSYNC_CONTAINER_PREFIX": PREFIX,
                "MODELSYNC_CONTAINER_PORT_BASE": str(port_base),
                "MODELSYNC_CONTAINER_PORT_COUNT": "4",
                "MODELSYNC_CONTAINER_S": "2",
                "MODELSYNC_CONTAINER_READY_S": "30",
            },
        ),
    )
    gw_port = free_port()
    gateway = ManagedProcess(
        "gateway",
        [sys.executable, "-m", "cli", "gateway", "--port", str(gw_port)],
        work / "gateway.log",
        env={
            "MODELSYNC_HTTP_HOST": "127.0.0.1",
            "MODELSYNC_NODE_ID": NODE,
            "MODELSYNC_NODE_TOKEN": node_token(SECRET, NODE),
            "MODELSYNC_MASTER_URL": master.url,  # type: ignore[attr-defined]
            "MODELSYNC_HEARTBEAT_S": "1",
            "MODELSYNC_TFSERVING": f"127.0.0.1:{free_port()}",  # no TF Serving on this node
            "MODELSYNC_TFSERVING_REST": f"127.0.0.1:{free_port()}",
        },
    ).start()
    wait_http_ok(f"http://127.0.0.1:{gw_port}/healthz", 60, gateway)
    env = {
        **os.environ,
        "MODELSYNC_BUCKET": "containers",
        "STORAGE_EMULATOR_HOST": emu.url,
        "MODELSYNC_MASTER_URL": master.url,  # type: ignore[attr-defined]
        "MODELSYNC_PUBLISH_TOKEN": PUBLISH,
    }
    try:
        yield {
            "master": master.url,  # type: ignore[attr-defined]
            "gateway": f"http://127.0.0.1:{gw_port}",
            "env": env,
            "image": image,
            "work": work,
        }
    finally:
        (work / "logs.txt").write_text(master.log_tail(20000) + gateway.log_tail(20000))
        codes = (gateway.stop(), master.stop())  # the master first: it would run them again
        for name in our_services():
            sh("docker", "service", "rm", name, check=False)
        wait_for(
            lambda: not sh("docker", "ps", "-q", "--filter", f"name={PREFIX}-").stdout.strip(),
            120,
            "the test's containers gone",
        )
        emu.stop()
        assert codes == (0, 0)


def publish(cluster: dict[str, Any], *extra: str) -> str:
    res = sh(
        sys.executable,
        "-m",
        "cli",
        "publish",
        "--image",
        cluster["image"],
        "--model",
        "iris",
        *extra,
        env=cluster["env"],
        timeout=120,
    )
    return res.stdout


def score(
    cluster: dict[str, Any], path: str = "/model/iris/invocations"
) -> tuple[int, Any, dict[str, str]]:
    return http("POST", cluster["gateway"] + path, {"instances": ROWS})


def inspect(name: str) -> dict[str, Any]:
    return json.loads(sh("docker", "service", "inspect", name).stdout)[0]


@pytest.mark.timeout(1200)
def test_publish_run_score_stop_start_and_replace(cluster: dict[str, Any]) -> None:
    # another master's container service on the same Swarm: never this master's to touch
    foreign = f"{PREFIX}-foreign"
    sh(
        "docker",
        "service",
        "create",
        "--detach",
        "--name",
        foreign,
        "--replicas",
        "0",
        "--label",
        "com.modelsync.role=container",
        "--label",
        "com.modelsync.owner=another",
        cluster["image"],
    )
    started = time.monotonic()
    out = publish(cluster, "--env", "MODEL_NOTE=first")
    assert "published gs://containers/models/iris/1/" in out
    status, doc, headers = wait_for(
        lambda: (lambda r: r if r[0] == 200 else None)(score(cluster)), 600, "iris answers"
    )
    first_answer_s = time.monotonic() - started
    assert doc["predictions"] == ["setosa", "virginica"]
    assert headers.get("X-Model-Version") == "1"
    print(json.dumps({"publish_to_first_answer_s": round(first_answer_s, 1)}))
    # the Swarm service: pinned to the digest, on serving nodes, one task a node, /ping checked
    name = f"{PREFIX}-iris-v1"
    assert sorted(our_services()) == [foreign, name]
    spec = inspect(name)["Spec"]
    task = spec["TaskTemplate"]
    assert "@sha256:" in task["ContainerSpec"]["Image"]
    assert task["Placement"]["Constraints"] == ["node.labels.modelsync.serving == true"]
    assert task["Placement"]["MaxReplicas"] == 1
    assert "/ping" in " ".join(task["ContainerSpec"]["Healthcheck"]["Test"])
    assert "MODEL_NOTE=first" in task["ContainerSpec"]["Env"]
    assert spec["Labels"]["com.modelsync.model"] == "iris"
    # CSV, ML-Kraken
    csv = http(
        "POST",
        cluster["gateway"] + "/model/iris/1/invocations",
        raw=b"5.9,3.0,4.2,1.5\n",
        ctype="text/csv",
    )
    assert csv[0] == 200 and csv[1]["predictions"] == ["versicolor"]
    kraken = http(
        "POST",
        cluster["gateway"] + "/predict",
        {"modelData": ROWS, "metaData": {"modelId": "iris"}},
    )
    assert kraken[0] == 200 and kraken[1]["results"] == ["setosa", "virginica"]
    bad = http("POST", cluster["gateway"] + "/model/iris/invocations", {"instances": [[1, 2]]})
    assert bad[0] == 400 and bad[1]["error_code"] == "BAD_REQUEST"
    assert "each row must have 4 numbers" in bad[1]["message"]
    # the master's view
    status, view, _ = http("GET", cluster["master"] + "/v1/models/iris", token=READ)
    assert status == 200 and view["kind"] == "container"
    status, running, _ = http("GET", cluster["master"] + "/v1/containers", token=READ)
    assert [(s["service"], s["replicas"]) for s in running["services"]] == [(name, 1)]
    # stop: scaled to 0, the gateway says the model is stopped; start: it answers again
    assert http("POST", cluster["master"] + "/v1/models/iris/stop", token=ADMIN)[0] == 200
    wait_for(
        lambda: inspect(name)["Spec"]["Mode"]["Replicated"]["Replicas"] == 0, 60, "scaled to 0"
    )
    wait_for(lambda: score(cluster)[0] in (404, 503), 60, "the gateway stops routing")
    assert http("POST", cluster["master"] + "/v1/models/iris/start", token=ADMIN)[0] == 200
    wait_for(lambda: score(cluster)[0] == 200, 300, "iris answers again")
    # a new version (keep_versions 1): v2 runs, v1's service goes
    assert "/iris/2/" in publish(cluster, "--env", "MODEL_NOTE=second")
    wait_for(lambda: score(cluster)[2].get("X-Model-Version") == "2", 600, "version 2 answers")
    wait_for(lambda: sorted(our_services()) == [foreign, f"{PREFIX}-iris-v2"], 120, "v1's removed")

    def v2_ready() -> bool:  # Swarm's own healthcheck passed (not only the gateway's /ping)
        doc = http("GET", cluster["master"] + "/v1/containers", token=READ)[1]
        return [(s["version"], s["running"]) for s in doc["services"]] == [(2, 1)]

    wait_for(v2_ready, 120, "v2's task healthy in Swarm")
    # a broken version (its server is not on the port its descriptor names: /ping never
    # answers): never routed to — v2 answers every request meanwhile — and rolled back
    assert "/iris/3/" in publish(cluster, "--port", "9999", "--env", "MODEL_NOTE=broken")
    answered: list[str | None] = []

    def rolled_back() -> bool:
        status, _doc, headers = score(cluster)
        answered.append(headers.get("X-Model-Version") if status == 200 else f"HTTP {status}")
        events = http("GET", cluster["master"] + "/v1/events?model=iris&limit=50", token=READ)
        return any(e["event"] == "container_version_rolled_back" for e in events[1]["events"])

    helpers.wait_for(rolled_back, 300, "version 3 rolled back", interval_s=0.5)
    assert len(answered) > 10 and set(answered) == {"2"}, answered
    wait_for(lambda: sorted(our_services()) == [foreign, f"{PREFIX}-iris-v2"], 120, "v3 removed")
    view = http("GET", cluster["master"] + "/v1/models/iris", token=READ)[1]
    assert view["target_versions"] == [2]
    # a crash: Swarm starts another task, the master reports it, the model answers again
    (container,) = sh(
        "docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={PREFIX}-iris-v2"
    ).stdout.split()
    sh("docker", "kill", container)

    def crash_reported() -> bool:
        events = http("GET", cluster["master"] + "/v1/events?model=iris&limit=50", token=READ)
        return any(
            e["event"] == "container_task_failed" and e["detail"]["version"] == 2
            for e in events[1]["events"]
        )

    wait_for(crash_reported, 120, "the crash reported")
    wait_for(lambda: score(cluster)[0] == 200, 120, "iris answers after the crash")
