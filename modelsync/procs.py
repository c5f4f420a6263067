"""Start modelsync's processes on 127.0.0.1 and wait until they answer (demo, tests, bench)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from modelsync.emulator import free_port


class ProcessError(RuntimeError):
    pass


class ManagedProcess:
    """A child process with its log in a file; ``stop()`` sends SIGTERM, then SIGKILL."""

    def __init__(self, name: str, args: Sequence[str], log_path: str | os.PathLike[str],
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = Path(log_path)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_fh:
            self.proc = subprocess.Popen(self.args, stdout=log_fh, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env,
                                         start_new_session=True)
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
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


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
                    health_pb2.HealthCheckRequest(service=""), timeout=1)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError as exc:
            last = str(exc.code())
        time.sleep(0.1)
    raise ProcessError(f"{target} not ready after {timeout_s}s ({last}); "
                       f"{proc.log_tail() if proc else ''}")


def start_model_server(workdir: str | os.PathLike[str], *, model_config_file: str | None = None,
                       model_name: str | None = None, model_base_path: str | None = None,
                       grpc_port: int = 0, rest_port: int = 0, flags: Sequence[str] = (),
                       timeout_s: float = 120.0, name: str = "model-server") -> ManagedProcess:
    """The compatible model server as a process; returns once it answers gRPC health checks.

    ``proc.grpc_port``/``proc.rest_port`` tell where it listens.
    """
    grpc_port = grpc_port or free_port()
    rest_port = rest_port or free_port()
    args = [sys.executable, "-m", "tfserving.server", f"--port={grpc_port}",
            f"--rest_api_port={rest_port}"]
    if model_config_file:
        args.append(f"--model_config_file={model_config_file}")
    if model_base_path:
        args += [f"--model_name={model_name or 'default'}", f"--model_base_path={model_base_path}"]
    args += list(flags)
    proc = ManagedProcess(name, args, Path(workdir) / f"{name}.log",
                          env={"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})
    proc.grpc_port = grpc_port  # type: ignore[attr-defined]
    proc.rest_port = rest_port  # type: ignore[attr-defined]
    proc.start()
    try:
        wait_grpc_ready(f"127.0.0.1:{grpc_port}", timeout_s, proc)
    except ProcessError:
        proc.stop()
        raise
    return proc
