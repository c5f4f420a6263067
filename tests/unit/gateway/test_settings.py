"""GatewaySettings from the environment: defaults, values, and one clear line for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import GatewaySettings
from modelsync.settings import Env, SettingsError


def test_defaults() -> None:
    s = GatewaySettings.from_env(Env({}))
    assert (s.node.http_host, s.node.http_port, s.tfserving, s.tfserving_rest) == (
        "127.0.0.1",
        8080,
        "127.0.0.1:8500",
        "127.0.0.1:8501",
    )
    assert (s.token, s.history_per_model, s.history_sample, s.capture, s.capture_bytes) == (
        None,
        200,
        1.0,
        False,
        4096,
    )
    assert (s.max_body_bytes, s.timeout_s, s.node.log_level) == (16 * 2**20, 30.0, "info")
    assert s.with_port(9).node.http_port == 9 and s.with_port(None) is s


def test_values_and_the_token_file(tmp_path: Path) -> None:
    token = tmp_path / "t"
    token.write_text("a-token-of-24-characters\n")
    s = GatewaySettings.from_env(
        Env(
            {
                "MODELSYNC_HTTP_HOST": "0.0.0.0",
                "MODELSYNC_HTTP_PORT": "9000",
                "MODELSYNC_TFSERVING": "tfs:9500",
                "MODELSYNC_TFSERVING_REST": "http://tfs:9501/",
                "MODELSYNC_GATEWAY_TOKEN_FILE": str(token),
                "MODELSYNC_GATEWAY_HISTORY": "10",
                "MODELSYNC_GATEWAY_HISTORY_SAMPLE": "0.25",
                "MODELSYNC_GATEWAY_CAPTURE": "true",
                "MODELSYNC_GATEWAY_CAPTURE_BYTES": "100",
                "MODELSYNC_GATEWAY_MAX_BODY_BYTES": "1024",
                "MODELSYNC_GATEWAY_TIMEOUT_S": "2.5",
                "MODELSYNC_LOG_LEVEL": "DEBUG",
            }
        )
    )
    assert (s.node.http_host, s.node.http_port, s.tfserving, s.tfserving_rest) == (
        "0.0.0.0",
        9000,
        "tfs:9500",
        "tfs:9501",
    )
    assert (s.token, s.history_per_model, s.history_sample, s.capture, s.capture_bytes) == (
        "a-token-of-24-characters",
        10,
        0.25,
        True,
        100,
    )
    assert (s.max_body_bytes, s.timeout_s, s.node.log_level) == (1024, 2.5, "debug")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODELSYNC_GATEWAY_TOKEN": "short"}, "at least 16 characters"),
        ({"MODELSYNC_GATEWAY_TOKEN": "x" * 20, "MODELSYNC_GATEWAY_TOKEN_FILE": "/f"}, "only one"),
        ({"MODELSYNC_GATEWAY_TOKEN_FILE": "/nonexistent/token"}, "cannot read"),
        ({"MODELSYNC_TFSERVING": "nohost"}, "MODELSYNC_TFSERVING: expected host:port"),
        ({"MODELSYNC_TFSERVING_REST": "h:99999"}, "MODELSYNC_TFSERVING_REST: expected host:port"),
        ({"MODELSYNC_HTTP_PORT": "x"}, "MODELSYNC_HTTP_PORT: expected an integer"),
        ({"MODELSYNC_GATEWAY_HISTORY": "-1"}, "MODELSYNC_GATEWAY_HISTORY: must be >="),
        ({"MODELSYNC_GATEWAY_HISTORY_SAMPLE": "1.5"}, "MODELSYNC_GATEWAY_HISTORY_SAMPLE: must be"),
        ({"MODELSYNC_GATEWAY_CAPTURE": "maybe"}, "MODELSYNC_GATEWAY_CAPTURE: expected true"),
        ({"MODELSYNC_GATEWAY_MAX_BODY_BYTES": "0"}, "MODELSYNC_GATEWAY_MAX_BODY_BYTES"),
        ({"MODELSYNC_GATEWAY_TIMEOUT_S": "nan"}, "MODELSYNC_GATEWAY_TIMEOUT_S"),
        ({"MODELSYNC_LOG_LEVEL": "loud"}, "MODELSYNC_LOG_LEVEL"),
    ],
)
def test_bad_values_are_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message) as info:
        GatewaySettings.from_env(Env(env))
    assert "\n" not in str(info.value)
