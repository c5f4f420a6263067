"""The master's settings of issue #25: each bad value is one line naming the setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from master.settings import MasterSettings
from modelsync.nodeauth import node_token
from modelsync.settings import Env, NodeSettings, SettingsError

BASE = {
    "MODELSYNC_BUCKET": "b",
    "MODELSYNC_ADMIN_TOKEN": "admin-token-0123456789",
    "MODELSYNC_NODE_SECRET": "node-secret-0123456789",
}


def test_defaults() -> None:
    s = MasterSettings.from_env(Env(BASE))
    assert s.node_secret == BASE["MODELSYNC_NODE_SECRET"]
    assert (s.session_secure, s.session_key, s.gateway_port) == ("auto", None, 8080)
    assert (s.auth_failures, s.auth_window_s) == (10, 60.0)
    assert (s.tryit_timeout_s, s.tryit_max_bytes) == (10.0, 1 << 20)


def test_values(tmp_path: Path) -> None:
    key = tmp_path / "session_key"
    key.write_text("k" * 64 + "\n")
    s = MasterSettings.from_env(
        Env(
            {
                **BASE,
                "MODELSYNC_SESSION_KEY_FILE": str(key),
                "MODELSYNC_SESSION_SECURE": "true",
                "MODELSYNC_GATEWAY_PORT": "9090",
                "MODELSYNC_AUTH_FAILURES": "5",
                "MODELSYNC_AUTH_WINDOW_S": "30",
                "MODELSYNC_TRYIT_TIMEOUT_S": "2.5",
                "MODELSYNC_TRYIT_MAX_BYTES": "4096",
            }
        )
    )
    assert s.session_key == "k" * 64 and s.session_secure == "true" and s.gateway_port == 9090
    assert (s.auth_failures, s.auth_window_s, s.tryit_timeout_s, s.tryit_max_bytes) == (
        5,
        30.0,
        2.5,
        4096,
    )


@pytest.mark.parametrize(
    ("env", "msg"),
    [
        ({"MODELSYNC_NODE_SECRET": ""}, "MODELSYNC_NODE_SECRET .* is required"),
        ({"MODELSYNC_NODE_SECRET": "short"}, "MODELSYNC_NODE_SECRET: at least 16"),
        ({"MODELSYNC_NODE_TOKEN": "node-token-0123456789"}, "MODELSYNC_NODE_TOKEN: the master"),
        ({"MODELSYNC_NODE_SECRET": BASE["MODELSYNC_ADMIN_TOKEN"]}, "must all differ"),
        ({"MODELSYNC_SESSION_KEY": "too-short"}, "MODELSYNC_SESSION_KEY: at least 32"),
        ({"MODELSYNC_SESSION_SECURE": "maybe"}, "MODELSYNC_SESSION_SECURE: expected auto"),
        ({"MODELSYNC_GATEWAY_PORT": "0"}, "MODELSYNC_GATEWAY_PORT: must be >= 1"),
        ({"MODELSYNC_GATEWAY_PORT": "http"}, "MODELSYNC_GATEWAY_PORT: expected an integer"),
        ({"MODELSYNC_AUTH_FAILURES": "0"}, "MODELSYNC_AUTH_FAILURES: must be >= 1"),
        ({"MODELSYNC_AUTH_WINDOW_S": "nan"}, "MODELSYNC_AUTH_WINDOW_S: expected a finite"),
        ({"MODELSYNC_TRYIT_TIMEOUT_S": "0"}, "MODELSYNC_TRYIT_TIMEOUT_S: must be >="),
        ({"MODELSYNC_TRYIT_MAX_BYTES": "10"}, "MODELSYNC_TRYIT_MAX_BYTES: must be >="),
    ],
)
def test_bad_values_are_one_line(env: dict[str, str], msg: str) -> None:
    with pytest.raises(SettingsError, match=msg) as info:
        MasterSettings.from_env(Env({**BASE, **env}))
    assert "\n" not in str(info.value)


def node_env(**extra: str) -> Env:
    return Env({"MODELSYNC_MODEL_ROOT": "/m", "MODELSYNC_NODE_ID": "n1", **extra})


def test_a_node_takes_only_its_own_token() -> None:
    secret = BASE["MODELSYNC_NODE_SECRET"]
    mine = node_token(secret, "n1")
    s = NodeSettings.from_env(node_env(MODELSYNC_NODE_TOKEN=mine), default_port=8001)
    assert s.node_token == mine
    with pytest.raises(SettingsError, match="token of node 'n2', but this node is 'n1'"):
        NodeSettings.from_env(
            node_env(MODELSYNC_NODE_TOKEN=node_token(secret, "n2")), default_port=8001
        )
    with pytest.raises(SettingsError, match="MODELSYNC_NODE_TOKEN is not a node token"):
        NodeSettings.from_env(
            node_env(MODELSYNC_NODE_TOKEN="shared-token-01234567"), default_port=1
        )
    assert NodeSettings.from_env(node_env(), default_port=8001).node_token is None


def test_node_token_command_prints_each_nodes_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import main

    monkeypatch.setenv("MODELSYNC_NODE_SECRET", BASE["MODELSYNC_NODE_SECRET"])
    assert main(["node-token", "n1", "n2"]) == 0
    out = capsys.readouterr().out.split()
    assert out == [node_token(BASE["MODELSYNC_NODE_SECRET"], n) for n in ("n1", "n2")]
    assert main(["node-token", "bad id"]) == 2
    assert "NODE_ID" in capsys.readouterr().err
    monkeypatch.delenv("MODELSYNC_NODE_SECRET")
    assert main(["node-token", "n1"]) == 2
    assert "MODELSYNC_NODE_SECRET" in capsys.readouterr().err


def test_named_admin_tokens_from_pairs_or_a_file(tmp_path: Path) -> None:
    env = {k: v for k, v in BASE.items() if k != "MODELSYNC_ADMIN_TOKEN"}
    s = MasterSettings.from_env(
        Env({**env, "MODELSYNC_ADMIN_TOKENS": "ana:ana-token-0123456789, bob:bob-token-0123456789"})
    )
    assert s.admins() == {"ana": "ana-token-0123456789", "bob": "bob-token-0123456789"}
    people = tmp_path / "admins"
    people.write_text(
        "# one person a line\nana:ana-token-0123456789\n\ncy.d@x:cy-token-012345678\n"
    )
    s = MasterSettings.from_env(Env({**BASE, "MODELSYNC_ADMIN_TOKENS_FILE": str(people)}))
    assert s.admins() == {
        "admin": BASE["MODELSYNC_ADMIN_TOKEN"],  # MODELSYNC_ADMIN_TOKEN keeps working
        "ana": "ana-token-0123456789",
        "cy.d@x": "cy-token-012345678",
    }
    assert s.upload_max_bytes == 4 << 30


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"MODELSYNC_ADMIN_TOKENS": "just-a-token-0123456789"}, "entry 1 is not name:token"),
        ({"MODELSYNC_ADMIN_TOKENS": "a b:tok-0123456789abcdef"}, "entry 1 is not name:token"),
        ({"MODELSYNC_ADMIN_TOKENS": "a:x-0123456789abcdef,a:y-0123456789abcdef"}, "named twice"),
        ({"MODELSYNC_ADMIN_TOKENS": "admin:x-0123456789abcdef"}, "MODELSYNC_ADMIN_TOKEN's"),
        ({"MODELSYNC_ADMIN_TOKENS": "ana:short"}, "at least 16"),
        ({"MODELSYNC_ADMIN_TOKENS": "ana:" + BASE["MODELSYNC_NODE_SECRET"]}, "must all differ"),
        ({"MODELSYNC_UPLOAD_MAX_BYTES": "-1"}, "MODELSYNC_UPLOAD_MAX_BYTES"),
    ],
)
def test_bad_named_tokens_are_one_line_and_never_echo_a_token(
    extra: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as err:
        MasterSettings.from_env(Env({**BASE, **extra}))
    assert message in str(err.value) and "\n" not in str(err.value)
    assert "just-a-token" not in str(err.value) and "0123456789abcdef" not in str(err.value)


def test_without_any_admin_token_the_master_does_not_start() -> None:
    env = {k: v for k, v in BASE.items() if k != "MODELSYNC_ADMIN_TOKEN"}
    with pytest.raises(SettingsError, match="MODELSYNC_ADMIN_TOKENS"):
        MasterSettings.from_env(Env(env))
