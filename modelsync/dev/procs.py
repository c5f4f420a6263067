"""Start modelsync's processes on 127.0.0.1 and wait until they answer (demo, tests, bench)."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelsync.dev.emulator import free_port
from modelsync.nodeauth import node_token

# TF Serving's Prometheus endpoint, as the stack enables it (tfserving/monitoring.config)
MONITORING_CONFIG = Path(__file__).resolve().parents[2] / "tfserving" / "monitoring.config"


class ProcessError(RuntimeError):
    pass


_RUNNING: set[ManagedProcess] = set()


def _kill_leftovers() -> None:
    """At exit, whatever was started and not stopped (a test cut short by its timeout, a
    demo interrupted) goes with its whole process group: nothing outlives the run."""
    for proc in list(_RUNNING):
        if proc.proc is not None and proc.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(proc.proc.pid, signal.SIGKILL)


atexit.register(_kill_leftovers)


class ManagedProcess:
    """A child process with its log in a file; ``stop()`` sends SIGTERM, then SIGKILL. What is
    still running when this interpreter exits is killed, with its process group."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        log_path: str | os.PathLike[str],
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = Path(log_path)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_fh:
            self.proc = subprocess.Popen(
                self.args,
                stdout=log_fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        _RUNNING.add(self)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)
            if sig == signal.SIGKILL:
                self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        _RUNNING.discard(self)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, theirs, …), read from /proc (Linux)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(parents.get(child, []))
    return out


def cmdline(pid: int) -> str:
    """A process's command line ('' once it is gone)."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_grpc_ready(target: str, timeout_s: float, proc: ManagedProcess | None = None) -> None:
    """Wait for the gRPC health service at ``target`` to answer SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise ProcessError(f"{proc.name} exited: {proc.log_tail()}")
        try:
            with grpc.insecure_channel(target) as ch:
                resp = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=1
                )
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError as exc:
            last = str(exc.code())
        time.sleep(0.1)
    raise ProcessError(
        f"{target} not ready after {timeout_s}s ({last}); {proc.log_tail() if proc else ''}"
    )


def start_model_server(
    workdir: str | os.PathLike[str],
    *,
    model_config_file: str | None = None,
    model_name: str | None = None,
    model_base_path: str | None = None,
    grpc_port: int = 0,
    rest_port: int = 0,
    flags: Sequence[str] = (),
    timeout_s: float = 120.0,
    name: str = "model-server",
) -> ManagedProcess:
    """The compatible model server as a process; returns once it answers gRPC health checks.

    ``proc.grpc_port``/``proc.rest_port`` tell where it listens.
    """
    grpc_port = grpc_port or free_port()
    rest_port = rest_port or free_port()
    args = [
        sys.executable,
        "-m",
        "tfserving.server",
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
    ]
    if model_config_file:
        args.append(f"--model_config_file={model_config_file}")
    if model_base_path:
        args += [f"--model_name={model_name or 'default'}", f"--model_base_path={model_base_path}"]
    args += list(flags)
    proc = ManagedProcess(
        name,
        args,
        Path(workdir) / f"{name}.log",
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
    )
    proc.grpc_port = grpc_port  # type: ignore[attr-defined]
    proc.rest_port = rest_port  # type: ignore[attr-defined]
    proc.start()
    try:
        wait_grpc_ready(f"127.0.0.1:{grpc_port}", timeout_s, proc)
    except ProcessError:
        proc.stop()
        raise
    return proc


def wait_http_ok(url: str, timeout_s: float, proc: ManagedProcess | None = None) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise ProcessError(f"{proc.name} exited: {proc.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - our own 127.0.0.1
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.1)
    raise ProcessError(f"{url} not ready after {timeout_s}s; {proc.log_tail() if proc else ''}")


class Node:
    """One serving node as processes on 127.0.0.1: model server, config manager and puller,
    sharing one MODEL_ROOT, like the containers of a Swarm node; with ``gateway``, also the
    node's REST front door."""

    def __init__(
        self,
        workdir: str | os.PathLike[str],
        *,
        bucket: str,
        emulator_host: str,
        name: str = "node",
        prefix: str = "models",
        poll_s: float = 1.0,
        master_url: str | None = None,
        node_secret: str | None = None,
        extra_env: dict[str, str] | None = None,
        model_server_flags: Sequence[str] = (),
        gateway: bool = False,
        gateway_port: int = 0,
    ) -> None:
        """``node_secret``: the master's MODELSYNC_NODE_SECRET; the node's daemons get their
        own node's token made from it. ``gateway_port``: 0 picks a free one."""
        self.workdir = Path(workdir)
        self.name = name
        self.model_root = self.workdir / "models"
        self.grpc_port = free_port()
        self.rest_port = free_port()
        self.puller_port = free_port()
        self.cm_port = free_port()
        self.gateway_port = (gateway_port or free_port()) if gateway else None
        self.model_server_flags = list(model_server_flags)
        self.env = {
            "MODELSYNC_BUCKET": bucket,
            "MODELSYNC_PREFIX": prefix,
            "STORAGE_EMULATOR_HOST": emulator_host,
            "MODELSYNC_MODEL_ROOT": str(self.model_root),
            "MODELSYNC_NODE_ID": name,
            "MODELSYNC_POLL_S": str(poll_s),
            "MODELSYNC_TFSERVING": f"127.0.0.1:{self.grpc_port}",
            "MODELSYNC_TFSERVING_REST": f"127.0.0.1:{self.rest_port}",
            "MODELSYNC_RECONCILE_S": "5",
            "MODELSYNC_LOAD_TIMEOUT_S": "120",
            "MODELSYNC_HTTP_HOST": "127.0.0.1",
            "MODELSYNC_TFSERVING_METRICS_URL": f"http://127.0.0.1:{self.rest_port}"
            "/monitoring/prometheus/metrics",
        }
        if master_url:
            self.env["MODELSYNC_MASTER_URL"] = master_url
        if node_secret:
            self.env["MODELSYNC_NODE_TOKEN"] = node_token(node_secret, name)
        self.env.update(extra_env or {})
        self.model_server: ManagedProcess | None = None
        self.config_manager: ManagedProcess | None = None
        self.puller: ManagedProcess | None = None
        self.gateway: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []

    @property
    def config_path(self) -> Path:
        return self.model_root / ".modelsync" / "models.config"

    def start_model_server(self, config_file: str | None = None) -> ManagedProcess:
        if config_file is None:
            self.config_path.parent.mkdir(parents=True, exist_ok=True)
            if not self.config_path.exists():
                self.config_path.write_text("model_config_list {\n}\n")
            config_file = str(self.config_path)
        self.model_server = start_model_server(
            self.workdir,
            model_config_file=config_file,
            grpc_port=self.grpc_port,
            rest_port=self.rest_port,
            name=f"{self.name}-model-server",
            flags=[
                "--file_system_poll_wait_seconds=1",
                "--max_num_load_retries=0",
                f"--monitoring_config_file={MONITORING_CONFIG}",
                *self.model_server_flags,
            ],
        )
        return self.model_server

    def _daemon(self, command: str, port: int) -> ManagedProcess:
        proc = ManagedProcess(
            f"{self.name}-{command}",
            [sys.executable, "-m", "cli", command, "--port", str(port)],
            self.workdir / f"{self.name}-{command}.log",
            env=self.env,
        ).start()
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", 60, proc)
        return proc

    def start_worker(
        self, broker_url: str, name: str | None = None, extra_env: dict[str, str] | None = None
    ) -> ManagedProcess:
        """A jobs worker beside this node's TF Serving (``modelsync worker``), scoring the
        chunks it takes from ``broker_url``; returns once its /healthz answers."""
        port = free_port()
        name = name or f"{self.name}-worker-{len(self.workers) + 1}"
        env = {**self.env, "MODELSYNC_BROKER_URL": broker_url, **(extra_env or {})}
        env.pop("MODELSYNC_MASTER_URL", None)
        proc = ManagedProcess(
            name,
            [sys.executable, "-m", "cli", "worker", "--port", str(port)],
            self.workdir / f"{name}.log",
            env=env,
        ).start()
        proc.port = port  # type: ignore[attr-defined]
        self.workers.append(proc)
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", 60, proc)
        return proc

    def start(self) -> Node:
        self.start_model_server()
        self.config_manager = self._daemon("config-manager", self.cm_port)
        self.puller = self._daemon("puller", self.puller_port)
        if self.gateway_port is not None:
            self.gateway = self._daemon("gateway", self.gateway_port)
        return self

    @property
    def gateway_url(self) -> str | None:
        return None if self.gateway_port is None else f"http://127.0.0.1:{self.gateway_port}"

    def processes(self) -> list[ManagedProcess]:
        """The node's processes started so far."""
        procs = (self.model_server, self.config_manager, self.puller, self.gateway)
        return [p for p in procs if p is not None]

    def stop(self) -> dict[str, int | None]:
        codes = {}
        for proc in (
            *self.workers,
            self.gateway,
            self.puller,
            self.config_manager,
            self.model_server,
        ):
            if proc is not None:
                codes[proc.name] = proc.stop()
        return codes

    def listening(self) -> dict[str, str]:
        return {
            "model server gRPC": f"127.0.0.1:{self.grpc_port}",
            "model server REST": f"http://127.0.0.1:{self.rest_port}",
            "puller": f"http://127.0.0.1:{self.puller_port}/status",
            "config manager": f"http://127.0.0.1:{self.cm_port}/status",
            **({"gateway (REST)": self.gateway_url} if self.gateway_url else {}),
        }


@dataclass(frozen=True)
class MasterSpec:
    """What a master started by ``start_master`` is given (its environment)."""

    bucket: str
    emulator_host: str
    admin_token: str
    node_secret: str
    read_token: str | None = None
    publish_token: str | None = None
    port: int = 0
    catalog_s: float = 1.0
    settle_s: float = 30.0
    db_path: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)


def start_master(
    workdir: str | os.PathLike[str], spec: MasterSpec, name: str = "master"
) -> ManagedProcess:
    """The master under gunicorn on 127.0.0.1; returns once /healthz answers.
    ``proc.port`` and ``proc.url`` tell where."""
    port = spec.port or free_port()
    env = {
        "MODELSYNC_BUCKET": spec.bucket,
        "STORAGE_EMULATOR_HOST": spec.emulator_host,
        "MODELSYNC_ADMIN_TOKEN": spec.admin_token,
        "MODELSYNC_NODE_SECRET": spec.node_secret,
        "MODELSYNC_DB": spec.db_path or str(Path(workdir) / "master.sqlite3"),
        "MODELSYNC_HTTP_HOST": "127.0.0.1",
        "MODELSYNC_CATALOG_S": str(spec.catalog_s),
        "MODELSYNC_SETTLE_S": str(spec.settle_s),
        "MODELSYNC_DOCKER": "off",
    }
    if spec.read_token:
        env["MODELSYNC_READ_TOKEN"] = spec.read_token
    if spec.publish_token:
        env["MODELSYNC_PUBLISH_TOKEN"] = spec.publish_token
    env.update(spec.extra_env)
    proc = ManagedProcess(
        name,
        [sys.executable, "-m", "cli", "master", "--port", str(port)],
        Path(workdir) / f"{name}.log",
        env=env,
    ).start()
    proc.port = port  # type: ignore[attr-defined]
    proc.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", 60, proc)
    except ProcessError:
        proc.stop()
        raise
    return proc
