"""Container models on this machine's Docker Engine, for the e2e suite and ``bench containers``:
the project's scripts (engine, one-node Swarm, Debian's docker-registry on 127.0.0.1:5000), the
scikit-learn example built and pushed, and a fake-gcs-server, a master (with the engine's
socket, its services named ``<prefix>-…``) and one node's gateway as processes of this checkout.

    with ContainerCluster(workdir, prefix="bench123") as cluster:
        cluster.publish(image, "iris")
        cluster.score("iris") …

Leaving stops the gateway and the master first (the master would run the services again), then
removes the services with the prefix and waits for their containers to go.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelsync.dev.emulator import GCSEmulator, free_port
from modelsync.dev.procs import ManagedProcess, MasterSpec, start_master, wait_http_ok
from modelsync.nodeauth import node_token
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "containers-admin-token-0123456789"
READ = "containers-read-token-0123456789"
SECRET = "containers-node-secret-0123456789"  # noqa: S105 - a test cluster's
PUBLISH = "containers-publish-token-0123456789"
NODE = "containers-node"
BUCKET = "containers"


def sh(
    *args: str, timeout: float = 600, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=None if env is None else {**os.environ, **env},
    )
    if check and res.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({res.returncode}): {res.stdout[-2000:]} {res.stderr[-2000:]}"
        )
    return res


def example_image(name: str = "sklearn", tag: str = "1") -> str:
    """Engine, Swarm and registry up (the project's scripts); the example ``examples/<name>``
    built on the project's base image and pushed. Its name,
    REGISTRY/modelsync-example-<name>:TAG."""
    sh("bash", "scripts/docker-engine.sh")
    sh("bash", "scripts/swarm-init.sh")
    registry = sh("bash", "scripts/registry.sh").stdout.strip().splitlines()[-1]
    return build_example(name, registry, tag)


def build_example(name: str, registry: str, tag: str = "1", push: bool = True) -> str:
    """``examples/<name>`` built on this machine's engine as REGISTRY/modelsync-example-NAME:TAG
    (scripts/build-example.sh) and pushed, or only tagged when ``push`` is false (a registry the
    engine does not trust: ``Cluster.push_image`` pushes it). The image's name."""
    out = sh(
        "bash",
        "scripts/build-example.sh",
        name,
        registry,
        tag,
        timeout=1800,
        env={"EXAMPLE_PUSH": "1" if push else "0"},
    )
    return out.stdout.strip().splitlines()[-1]


def http(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    raw: bytes | None = None,
    ctype: str = "application/json",
) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON body, headers) of one request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - 127.0.0.1
    if data is not None:
        req.add_header("Content-Type", ctype)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - 127.0.0.1
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), dict(exc.headers)


class ContainerCluster:
    def __init__(
        self,
        workdir: str | os.PathLike[str],
        prefix: str,
        ready_s: float = 30.0,
        port_count: int = 4,
    ) -> None:
        self.workdir = Path(workdir)
        self.prefix = prefix
        self.ready_s = ready_s
        self.port_count = port_count
        self.procs: list[ManagedProcess] = []
        self.emu: GCSEmulator | None = None
        self.master_url = self.gateway_url = ""

    def start(self) -> ContainerCluster:
        self.emu = GCSEmulator(log_path=str(self.workdir / "fake-gcs.log")).start()
        GCSStore(StoreSettings(bucket=BUCKET, emulator_host=self.emu.url)).ensure_bucket()
        master = start_master(
            self.workdir,
            MasterSpec(
                bucket=BUCKET,
                emulator_host=self.emu.url,
                admin_token=ADMIN,
                node_secret=SECRET,
                read_token=READ,
                publish_token=PUBLISH,
                catalog_s=2.0,
                extra_env={
                    "MODELSYNC_DOCKER": "on",
                    "MODELSYNC_DOCKER_SOCKET": "/var/run/docker.sock",
                    "MODELSYNC_CONTAINER_PREFIX": self.prefix,
                    "MODELSYNC_CONTAINER_PORT_BASE": str(free_port()),
                    "MODELSYNC_CONTAINER_PORT_COUNT": str(self.port_count),
                    "MODELSYNC_CONTAINER_S": "2",
                    "MODELSYNC_CONTAINER_READY_S": str(self.ready_s),
                    "MODELSYNC_LOG_LEVEL": "info",
                },
            ),
        )
        self.procs.append(master)
        self.master_url = master.url  # type: ignore[attr-defined]
        port = free_port()
        gateway = ManagedProcess(
            "gateway",
            [sys.executable, "-m", "cli", "gateway", "--port", str(port)],
            self.workdir / "gateway.log",
            env={
                "MODELSYNC_HTTP_HOST": "127.0.0.1",
                "MODELSYNC_NODE_ID": NODE,
                "MODELSYNC_NODE_TOKEN": node_token(SECRET, NODE),
                "MODELSYNC_MASTER_URL": self.master_url,
                "MODELSYNC_HEARTBEAT_S": "1",
                "MODELSYNC_TFSERVING": f"127.0.0.1:{free_port()}",  # no TF Serving here
                "MODELSYNC_TFSERVING_REST": f"127.0.0.1:{free_port()}",
                "MODELSYNC_LOG_LEVEL": "info",
            },
        ).start()
        self.procs.insert(0, gateway)
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", 60, gateway)
        self.gateway_url = f"http://127.0.0.1:{port}"
        return self

    def __enter__(self) -> ContainerCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self) -> Iterator[ContainerCluster]:
        """A pytest fixture's body: the cluster while the tests run, then nothing of it left."""
        with self:
            yield self
        leftover = self.services()
        if leftover:
            raise AssertionError(f"services left behind: {leftover}")

    def services(self) -> list[str]:
        names = sh("docker", "service", "ls", "--format", "{{.Name}}").stdout.split()
        return sorted(n for n in names if n.startswith(self.prefix + "-"))

    def stop(self) -> list[int | None]:
        """Stop the processes (the gateway, then the master), remove the prefix's services;
        the processes' exit codes."""
        logs = "".join(p.log_tail(20000) for p in self.procs)
        (self.workdir / "logs.txt").write_text(logs)
        codes = [p.stop() for p in self.procs]
        self.procs = []
        for name in self.services():
            sh("docker", "service", "rm", name, check=False)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if not sh("docker", "ps", "-q", "--filter", f"name={self.prefix}-").stdout.strip():
                break
            time.sleep(0.5)
        if self.emu is not None:
            self.emu.stop()
            self.emu = None
        return codes

    # --- what tests and benchmarks do -----------------------------------------------------------
    def publish(self, image: str, model: str, *extra: str) -> str:
        """``modelsync publish --image`` as a publisher runs it (telling the master)."""
        assert self.emu is not None
        env = {
            **os.environ,
            "MODELSYNC_BUCKET": BUCKET,
            "STORAGE_EMULATOR_HOST": self.emu.url,
            "MODELSYNC_MASTER_URL": self.master_url,
            "MODELSYNC_PUBLISH_TOKEN": PUBLISH,
        }
        res = subprocess.run(
            [sys.executable, "-m", "cli", "publish", "--image", image, "--model", model, *extra],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            cwd=ROOT,
        )
        if res.returncode != 0:
            raise RuntimeError(f"publish failed: {res.stderr}")
        return res.stdout

    def first_answer(self, model: str, rows: Any, timeout_s: float) -> tuple[Any, dict[str, str]]:
        """Score until the gateway answers 200 (the model published, run and ready); its
        answer and headers."""
        deadline = time.monotonic() + timeout_s
        while True:
            status, doc, headers = self.score(model, rows)
            if status == 200:
                return doc, headers
            if time.monotonic() > deadline:
                raise TimeoutError(f"{model} did not answer in {timeout_s:g} s: {status} {doc}")
            time.sleep(0.05)

    def score(
        self, model: str, rows: Any, version: int | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        path = f"/model/{model}/{version}/invocations" if version else f"/model/{model}/invocations"
        return http("POST", self.gateway_url + path, {"instances": rows})

    def api(self, method: str, path: str, admin: bool = False) -> tuple[int, Any]:
        status, doc, _ = http(method, self.master_url + path, token=ADMIN if admin else READ)
        return status, doc

    def events(self, model: str) -> list[dict[str, Any]]:
        return list(self.api("GET", f"/v1/events?model={model}&limit=100")[1]["events"])
