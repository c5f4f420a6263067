"""Helpers every test suite shares (tests/conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from modelsync.dev.procs import (
    ManagedProcess,
    MasterSpec,
    Node,
    descendants,
    start_master,
)
from modelsync.dev.throttle import LinkProxy
from modelsync.nodeauth import node_token

T = TypeVar("T")


def wait_for(
    fn: Callable[[], T],
    timeout_s: float = 60.0,
    what: str = "condition",
    *,
    interval_s: float = 0.1,
    errors: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``fn`` until it returns something truthy and return that; exceptions of ``errors``
    count as "not yet". Fails with the last value or error after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = value
        except errors as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached in {timeout_s}s; last: {last!r}")
        time.sleep(interval_s)


def master_and_node(
    workdir: Path,
    emulator_url: str,
    bucket: str,
    *,
    admin: str,
    node_secret: str,
    read_token: str | None = None,
    master_env: dict[str, str] | None = None,
    node_env: dict[str, str] | None = None,
    **node_options: Any,
) -> tuple[ManagedProcess, Node]:
    """A master (catalog every 0.5 s) running, and the one node ``node-1`` that reports to it
    (polls every 0.5 s, beats every second) made but not started: the caller starts it inside
    its own ``try``, so that a failed start still stops both."""
    master = start_master(
        workdir,
        MasterSpec(
            bucket=bucket,
            emulator_host=emulator_url,
            admin_token=admin,
            node_secret=node_secret,
            read_token=read_token,
            catalog_s=0.5,
            extra_env=master_env or {},
        ),
    )
    node = Node(
        workdir / "node",
        bucket=bucket,
        emulator_host=emulator_url,
        name="node-1",
        poll_s=0.5,
        master_url=master.url,  # type: ignore[attr-defined]
        node_secret=node_secret,
        extra_env={"MODELSYNC_HEARTBEAT_S": "1", **(node_env or {})},
        **node_options,
    )
    return master, node


def available_on(url: str, token: str, model: str, version: int, node: str = "node-1") -> bool:
    """Whether the master says ``node`` has ``model`` ``version`` AVAILABLE (False while the
    master cannot be reached)."""
    req = urllib.request.Request(
        f"{url}/v1/models/{model}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            doc = json.loads(r.read())
    except urllib.error.URLError:
        return False
    return node in doc["versions"].get(str(version), {}).get("available", [])


def post_heartbeat(url: str, secret: str, beat: dict[str, Any]) -> None:
    """POST one heartbeat to a running master as node ``beat["node_id"]`` (its token derived
    from the node secret) and check it was taken."""
    req = urllib.request.Request(
        url + "/v1/nodes/heartbeat",
        data=json.dumps(beat).encode(),
        headers={
            "Authorization": f"Bearer {node_token(secret, beat['node_id'])}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200


def write_corrupt_version(store: Any, src: Any, model: str, version: int) -> None:
    """A version whose saved_model.pb is junk, with an empty marker: what a third-party
    publisher could write (``modelsync publish`` refuses it)."""
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        rel = path.relative_to(src).as_posix()
        data = b"\x08\x01 not a SavedModel" if rel == "saved_model.pb" else path.read_bytes()
        store.write(f"models/{model}/{version}/{rel}", data)
    store.write(f"models/{model}/{version}/_READY", b"")


# A TCP forwarder on 127.0.0.1 that can turn into a blackhole (``proxy.blackhole.set()``)
Proxy = LinkProxy


def kill_tree(proc: subprocess.Popen[Any]) -> None:
    """SIGKILL a process and everything it started (a failed test leaves no orphans)."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
