"""Debian's ``docker-registry`` (Docker Registry 2) on 127.0.0.1, for tests, the demo and the
e2e suite: its own config (filesystem storage in a directory of ours, no auth, one address),
started as a child process and ready when ``GET /v2/`` answers 200.

``scripts/registry.sh`` installs the package and starts the project's long-lived one on
127.0.0.1:5000 with the same config (``registry_config``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from modelsync.dev.emulator import free_port
from modelsync.dev.procs import ManagedProcess, ProcessError, wait_http_ok

BINARY = "docker-registry"


def registry_config(root: str | Path, port: int) -> str:
    """A config that serves ``root`` on 127.0.0.1:``port`` over plain HTTP, without auth."""
    return (
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )


class Registry:
    def __init__(self, workdir: str | Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.proc: ManagedProcess | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``: what an image name starts with."""
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> Registry:
        binary = shutil.which(BINARY)
        if binary is None:
            raise ProcessError(f"{BINARY} is not installed: bash scripts/registry.sh installs it")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yml"
        config.write_text(registry_config(self.workdir / "data", self.port))
        self.proc = ManagedProcess(
            "registry", [binary, "serve", str(config)], self.workdir / "registry.log"
        ).start()
        wait_http_ok(f"http://{self.address}/v2/", timeout_s, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()
