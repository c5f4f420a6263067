"""What the container models' tests share: a real registry, a manifest pushed over the
Registry HTTP API (no Docker needed), and the serving-contract server run as a process."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import requests

from modelsync.dev.emulator import free_port
from modelsync.dev.procs import ManagedProcess, wait_http_ok

CONTRACT_SERVER = Path(__file__).parent / "fixtures" / "contract_server.py"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def _blob(base: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = requests.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=10)
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    done = requests.put(f"{location}{sep}digest={digest}", data=data, timeout=10)
    assert done.status_code == 201, done.text
    return digest


def push_manifest(address: str, repo: str, tag: str, salt: str = "") -> str:
    """Push a tiny (unrunnable) image — a config and one empty layer — to the registry at
    ``address`` as ``repo:tag``; its manifest's digest, as the registry computes it."""
    base = f"http://{address}"
    config = json.dumps({"architecture": "amd64", "os": "linux", "salt": salt}).encode()
    layer = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_V2,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": _blob(base, repo, config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": len(layer),
                    "digest": _blob(base, repo, layer),
                }
            ],
        }
    ).encode()
    resp = requests.put(
        f"{base}/v2/{repo}/manifests/{tag}",
        data=manifest,
        headers={"Content-Type": MANIFEST_V2},
        timeout=10,
    )
    assert resp.status_code == 201, resp.text
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def start_contract_server(
    workdir: Path,
    name: str = "contract",
    version: str = "1",
    never_ready: bool = False,
    port: int | None = None,
) -> tuple[ManagedProcess, int]:
    """The serving contract's test server (tests/fixtures/contract_server.py) as a process on
    127.0.0.1 (a free port unless given), ready — or, ``never_ready``, listening with a /ping
    that never answers 200."""
    port = port or free_port()
    args = [sys.executable, str(CONTRACT_SERVER), "--port", str(port), "--version", version]
    if never_ready:
        args.append("--never-ready")
    proc = ManagedProcess(name, args, workdir / f"{name}.log").start()
    if never_ready:
        wait_for_listening(port, proc)
    else:
        wait_http_ok(f"http://127.0.0.1:{port}/ping", 30, proc)
    return proc, port


def wait_for_listening(port: int, proc: ManagedProcess, timeout_s: float = 30.0) -> None:
    import socket

    from helpers import wait_for

    def listening() -> bool:
        assert proc.alive(), proc.log_tail()
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for(listening, timeout_s, f"{proc.name} listening")
