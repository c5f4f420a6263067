"""The multi-node test cluster that ``scripts/cluster.sh up`` makes (Linux, root): what it is,
read from the state file the script writes; ``docker`` against any of its hosts; the script's
fault commands; the master's API; and the wait for a deployed stack to be ready.

    python -m modelsync.dev.cluster wait-ready [--timeout S]   # the last step of `make cluster`
    python -m modelsync.dev.cluster show                      # the cluster as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("MODELSYNC_CLUSTER_STATE", "/run/modelsync-cluster"))
SCRIPT = ROOT / "scripts" / "cluster.sh"
GRPC_PORT, GATEWAY_PORT = 8500, 8080
ROLES = ("puller", "config_manager", "gateway")


class ClusterError(RuntimeError):
    pass


@dataclass(frozen=True)
class Host:
    name: str  # ms-hN, also its hostname and its network namespace
    address: str

    @property
    def number(self) -> int:
        return int(self.name.removeprefix("ms-h"))

    @property
    def socket(self) -> str:
        return f"unix:///run/{self.name}.sock"

    @property
    def grpc(self) -> str:
        return f"{self.address}:{GRPC_PORT}"

    @property
    def gateway(self) -> str:
        return f"http://{self.address}:{GATEWAY_PORT}"


def read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            out[key.strip()] = value.strip().strip('"')
    return out


@dataclass(frozen=True)
class Cluster:
    stack: str
    net: str
    hosts: tuple[Host, ...]
    manager: Host
    bucket: str
    prefix: str
    gcs_url: str
    gcs_veth: str
    master_url: str
    registry: str
    image: str
    broker_url: str
    node_tokens: Path  # each serving host's token file: node_tokens / SWARM_NODE_ID / node_token
    admin_token: str
    read_token: str
    gateway_token: str
    node_secret: str

    @classmethod
    def load(cls, state: Path = STATE) -> Cluster | None:
        """The cluster as the script last wrote it, or None when no cluster is up."""
        path = state / "cluster.env"
        if not path.exists():
            return None
        env = read_env(path)
        net = env["NET"]
        hosts = tuple(
            Host(name, f"{net}.1{name.removeprefix('ms-h')}") for name in env["HOSTS"].split()
        )
        (manager,) = [h for h in hosts if h.name == env["MANAGER"]]
        return cls(
            stack=env["STACK"],
            net=net,
            hosts=hosts,
            manager=manager,
            bucket=env["BUCKET"],
            prefix=env["PREFIX"],
            gcs_url=env["GCS_URL"],
            gcs_veth=env["GCS_VETH"],
            master_url=env["MASTER_URL"],
            registry=env["REGISTRY"],
            image=env["IMAGE"],
            broker_url=env["BROKER_URL"],
            node_tokens=Path(env["NODE_TOKENS"]),
            admin_token=env["ADMIN_TOKEN"],
            read_token=env["READ_TOKEN"],
            gateway_token=env["GATEWAY_TOKEN"],
            node_secret=env["NODE_SECRET"],
        )

    def reload(self) -> Cluster:
        again = Cluster.load()
        if again is None:
            raise ClusterError(f"{STATE}/cluster.env is gone: the cluster was taken down")
        return again

    @property
    def workers(self) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h != self.manager)

    def host(self, number: int) -> Host:
        return Host(f"ms-h{number}", f"{self.net}.1{number}")

    # ---- commands ----------------------------------------------------------------------

    def docker(
        self, host: Host, *args: str, timeout_s: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(["docker", "-H", host.socket, *args], timeout_s, check)

    def script(self, *args: str, timeout_s: float = 300) -> Cluster:
        """``scripts/cluster.sh ARGS`` (host-add N, engine-kill N, link-cut N, ...); the
        cluster as it is afterwards."""
        run(["bash", str(SCRIPT), *args], timeout_s, True)
        return self.reload()

    def push_image(self, local: str, name: str, timeout_s: float = 900) -> str:
        """``local`` (an image of this machine's engine) into the cluster's registry as
        REGISTRY/NAME:TAG (``scripts/cluster.sh image-push``: skopeo, plain HTTP; the machine's
        engine need not trust the registry). The pushed image pinned to the digest the registry
        serves it under: REGISTRY/NAME:TAG@sha256:…"""
        from modelsync.container import DIGEST_RE
        from modelsync.images import MANIFEST_TYPES

        remote = f"{self.registry}/{name}"
        run(["bash", str(SCRIPT), "image-push", local, remote], timeout_s, True)
        repo, _, tag = name.rpartition(":")
        r = requests.head(
            f"http://{self.registry}/v2/{repo}/manifests/{tag}",
            headers={"Accept": MANIFEST_TYPES},
            timeout=10,
        )
        digest = r.headers.get("Docker-Content-Digest", "")
        if r.status_code != 200 or not DIGEST_RE.match(digest):
            raise ClusterError(f"{remote}: the registry answers {r.status_code}, no digest")
        return f"{remote}@{digest}"

    def swarm_nodes(self) -> list[dict[str, str]]:
        """``docker node ls`` on the manager: ID, Hostname, Status, Availability."""
        out = self.docker(self.manager, "node", "ls", "--format", "{{json .}}").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def node_token_file(self, node_id: str) -> Path:
        """Where the serving host with Swarm node id ``node_id`` keeps its own token (what
        stack.yml mounts into its puller, config manager and gateway)."""
        return self.node_tokens / node_id / "node_token"

    # ---- the master's API ---------------------------------------------------------------

    def api(self, path: str, method: str = "GET", body: Any = None, timeout_s: float = 10) -> Any:
        r = requests.request(
            method,
            self.master_url + path,
            json=body,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=timeout_s,
        )
        if r.status_code >= 400:
            raise ClusterError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json()

    def nodes(self) -> dict[str, dict[str, Any]]:
        """The master's registry by node id."""
        return {n["node_id"]: n for n in self.api("/v1/nodes")["nodes"]}

    def available(self, model: str) -> dict[str, set[int]]:
        """Per node id: the versions of ``model`` its config manager last reported AVAILABLE."""
        return {
            node_id: set(
                n["roles"]
                .get("config_manager", {})
                .get("status", {})
                .get("available", {})
                .get(model, [])
            )
            for node_id, n in self.nodes().items()
        }

    def store(self) -> Any:
        from modelsync.settings import StoreSettings
        from modelsync.store import GCSStore

        return GCSStore(
            StoreSettings(bucket=self.bucket, prefix=self.prefix, emulator_host=self.gcs_url)
        )

    def gcs_bytes_sent(self) -> int:
        """Bytes the GCS emulator's host has sent on its link (what the bucket served, plus
        TCP/IP headers): the root-side end of its veth receives them."""
        return int(Path(f"/sys/class/net/{self.gcs_veth}/statistics/rx_bytes").read_text())


def run(cmd: list[str], timeout_s: float, check: bool) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT)
    if check and res.returncode != 0:
        raise ClusterError(
            f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-2000:]}{res.stderr[-3000:]}"
        )
    return res


def grpc_serving(address: str, timeout_s: float = 3) -> bool:
    """The model server at ``address`` answers gRPC health checks with SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.RpcError:
            return False
    return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)


def not_ready(cluster: Cluster) -> list[str]:
    """What is not ready yet (empty: the master answers, every worker's model server is
    SERVING and each of its daemons heartbeats under the worker's Swarm node id)."""
    try:
        alive = requests.get(cluster.master_url + "/healthz", timeout=5).ok
    except requests.RequestException:
        alive = False
    if not alive:
        return ["master /healthz"]
    missing = services_not_converged(cluster)
    swarm = {n["Hostname"]: n["ID"] for n in cluster.swarm_nodes()}
    nodes = cluster.nodes()
    for w in cluster.workers:
        if not grpc_serving(w.grpc):
            missing.append(f"{w.name} model server")
        roles = nodes.get(swarm.get(w.name, "?"), {}).get("roles", {})
        missing += [f"{w.name} {r}" for r in ROLES if roles.get(r, {}).get("state") != "live"]
    return missing


def services_not_converged(cluster: Cluster) -> list[str]:
    """The stack's services with fewer tasks running than desired, or in a rolling update."""
    out = cluster.docker(
        cluster.manager,
        "service",
        "ls",
        "--filter",
        f"label=com.docker.stack.namespace={cluster.stack}",
        "--format",
        "{{.Name}} {{.Replicas}}",
    ).stdout.split("\n")
    services = dict(line.split()[:2] for line in out if line.strip())
    if not services:
        return [f"stack {cluster.stack} not deployed"]
    updates = cluster.docker(
        cluster.manager,
        "service",
        "inspect",
        "--format",
        "{{.Spec.Name}} {{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}",
        *services,
    ).stdout.splitlines()
    missing = []
    for name, replicas in sorted(services.items()):
        running, _, desired = replicas.partition("/")
        if running != desired:
            missing.append(f"{name} {replicas}")
    for line in updates:
        name, _, state = line.partition(" ")
        if state.strip() not in ("", "completed", "rollback_completed"):
            missing.append(f"{name} {state.strip()}")
    return missing


def wait_ready(cluster: Cluster, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: list[str] = []
    while time.monotonic() < deadline:
        try:
            last = not_ready(cluster)
        except (ClusterError, requests.RequestException) as exc:
            last = [str(exc)[:200]]
        if not last:
            return
        time.sleep(2)
    raise ClusterError(f"not ready within {timeout_s:.0f} s: {', '.join(last)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelsync.dev.cluster")
    parser.add_argument("command", choices=["wait-ready", "show"])
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)
    cluster = Cluster.load()
    if cluster is None:
        print(f"no cluster: {STATE}/cluster.env is missing (make cluster)", file=sys.stderr)
        return 1
    if args.command == "show":
        print(json.dumps(asdict(cluster), indent=1, default=str))
        return 0
    started = time.monotonic()
    try:
        wait_ready(cluster, args.timeout)
    except ClusterError as exc:
        print(f"[cluster] {exc}", file=sys.stderr)
        return 1
    print(f"[cluster] ready after {time.monotonic() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
