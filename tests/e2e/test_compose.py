"""docker-compose.yml on a real Docker Engine: `up -d`, `run --rm tests`, `down -v`."""

from __future__ import annotations

import pytest
from e2e_helpers import sh, wait_for  # type: ignore[import-not-found]

from modelsync.dev.emulator import free_port

pytestmark = pytest.mark.e2e
PROJECT = "modelsync-e2e-compose"


def containers() -> list[str]:
    return sh(
        "docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}"
    ).stdout.split()


@pytest.mark.timeout(1400)  # up (360 s), two runs (300 s each), logs, down and the wait (300 s)
def test_compose_up_run_tests_down(images: str) -> None:
    env = {
        "MODELSYNC_IMAGE": images,
        "TFSERVING_IMAGE": images,
        **{
            k: str(free_port())
            for k in (
                "GCS_PORT",
                "MODELSYNC_MASTER_PORT",
                "MODELSYNC_PULLER_PORT",
                "MODELSYNC_CONFIG_MANAGER_PORT",
                "TFS_GRPC_PORT",
                "TFS_REST_PORT",
                "MODELSYNC_GATEWAY_PORT",
                "MODELSYNC_BROKER_PORT",
                "MODELSYNC_WORKER_PORT",
            )
        },
    }
    compose = ("docker", "compose", "-p", PROJECT, "-f", "docker-compose.yml")
    sh(*compose, "down", "-v", check=False, timeout=120, env=env)
    try:
        sh(*compose, "up", "-d", "--wait", "--wait-timeout", "300", timeout=360, env=env)
        res = sh(*compose, "run", "--rm", "tests", timeout=300, env=env)
        assert "smoke ok" in res.stdout, res.stdout + res.stderr
        assert "gateway" in res.stdout and "/invocations answers" in res.stdout, res.stdout
        assert "through the broker and a worker: 2 rows scored" in res.stdout, res.stdout
        # a second run publishes the next version: the stack follows again
        res = sh(*compose, "run", "--rm", "tests", timeout=300, env=env)
        assert "smoke ok" in res.stdout and "smoke v2" in res.stdout, res.stdout
    finally:
        logs = sh(*compose, "logs", "--tail", "30", check=False, timeout=60, env=env).stdout
        sh(*compose, "down", "-v", "--timeout", "30", check=False, timeout=120, env=env)
        wait_for(lambda: not containers(), 120, "compose containers removed")
        print(logs[-5000:])
