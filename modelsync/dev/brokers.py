"""The jobs' brokers as processes of our own on 127.0.0.1 (demo, tests, benchmarks): Debian's
redis-server (``scripts/redis.sh``) and rabbitmq-server (``scripts/rabbitmq.sh``), each on a
free port with its own data directory — never the system service.

    with RedisServer(workdir) as redis:       # redis.url: redis://127.0.0.1:PORT/0
        ...
        redis.restart()                       # same port and data: the queue survives (AOF)
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from modelsync.dev.emulator import free_port
from modelsync.dev.procs import ManagedProcess, ProcessError

REDIS_SERVER = "/usr/bin/redis-server"
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


class BrokerMissing(RuntimeError):
    """The Debian package is not installed (the message says which script installs it)."""


class _Server:
    name = "broker"
    proc: ManagedProcess | None = None

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def restart(self) -> None:
        self.stop()
        self.start()

    def kill(self) -> None:
        """SIGKILL (no clean shutdown)."""
        if self.proc is not None and self.proc.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.proc.wait(timeout=10)  # type: ignore[union-attr]


class RedisServer(_Server):
    """redis-server with an append-only file in ``workdir`` (fsync every write: what was
    queued survives a restart), on ``port`` (a free one by default)."""

    name = "redis"

    def __init__(self, workdir: str | os.PathLike[str], port: int = 0) -> None:
        if not os.access(REDIS_SERVER, os.X_OK):
            raise BrokerMissing(f"{REDIS_SERVER} is missing: run `bash scripts/redis.sh`")
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 30.0) -> RedisServer:
        data = self.workdir / "redis-data"
        data.mkdir(parents=True, exist_ok=True)
        self.proc = ManagedProcess(
            "redis",
            [
                REDIS_SERVER,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(data),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
            ],
            self.workdir / "redis.log",
        ).start()
        self._wait(timeout_s)
        return self

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def _wait(self, timeout_s: float) -> None:
        import redis

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if not self.proc.alive():
                raise ProcessError(f"redis-server exited: {self.proc.log_tail()}")
            try:
                if self.client().ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise ProcessError(f"redis-server not ready after {timeout_s}s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
            self.proc = None


class RabbitMQServer(_Server):
    """A RabbitMQ node of our own: its own Erlang port mapper (epmd), node name, ports, data
    directory and cookie, all under ``workdir``; AMQP on ``port``. Starting takes a few seconds."""

    name = "rabbitmq"

    def __init__(self, workdir: str | os.PathLike[str], port: int = 0) -> None:
        if not os.access(RABBITMQ_SERVER, os.X_OK):
            raise BrokerMissing(f"{RABBITMQ_SERVER} is missing: run `bash scripts/rabbitmq.sh`")
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.proc: ManagedProcess | None = None
        self.epmd: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def _env(self) -> dict[str, str]:
        base = self.workdir / "rabbitmq"
        (base / "log").mkdir(parents=True, exist_ok=True)
        (base / "home").mkdir(parents=True, exist_ok=True)
        conf = base / "rabbitmq.conf"
        conf.write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users.guest = true\n"
            "log.console = true\nlog.console.level = warning\nlog.file = false\n"
        )
        (base / "enabled_plugins").write_text("[].\n")
        return {
            "HOME": str(base / "home"),
            "RABBITMQ_NODENAME": f"rabbit-{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(conf),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "rabbitmq.pid"),
            "RABBITMQ_USE_LONGNAME": "false",
        }

    def start(self, timeout_s: float = 90.0) -> RabbitMQServer:
        env = self._env()
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        if self.epmd is None or not self.epmd.alive():
            self.epmd = ManagedProcess(
                "epmd",
                [epmd, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                self.workdir / "epmd.log",
                env=env,
            ).start()
        self.proc = ManagedProcess(
            "rabbitmq", [RABBITMQ_SERVER], self.workdir / "rabbitmq.log", env=env
        ).start()
        self._wait(timeout_s)
        return self

    def _wait(self, timeout_s: float) -> None:
        from kombu.connection import Connection

        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            assert self.proc is not None
            if not self.proc.alive():
                raise ProcessError(f"rabbitmq-server exited: {self.proc.log_tail()}")
            try:
                with Connection(self.url, connect_timeout=2) as conn:  # type: ignore[no-untyped-call]
                    conn.connect()
                    conn.channel().close()
                return
            except Exception as exc:  # not listening yet
                last = str(exc)
                time.sleep(0.25)
        raise ProcessError(f"rabbitmq-server not ready after {timeout_s}s ({last})")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(timeout_s=30)
            self.proc = None

    def close(self) -> None:
        self.stop()
        if self.epmd is not None:
            self.epmd.stop()
            self.epmd = None

    def __exit__(self, *exc: object) -> None:
        self.close()
