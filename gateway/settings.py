"""The gateway's settings, from ``MODELSYNC_*`` environment variables (see gateway/README.md)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from modelsync.settings import Env, NodeSettings, SettingsError, host_port

DEFAULT_PORT = 8080
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class GatewaySettings:
    node: NodeSettings  # which node, where the gateway listens, whom it tells (no model root)
    tfserving: str = "127.0.0.1:8500"
    tfserving_rest: str = "127.0.0.1:8501"
    token: str | None = None
    history_per_model: int = 200
    history_sample: float = 1.0
    capture: bool = False
    capture_bytes: int = 4096
    max_body_bytes: int = 16 * 2**20
    timeout_s: float = 30.0
    latest_ttl_s: float = 2.0
    advertise_url: str | None = None  # how the master reaches this gateway (try-it)
    model_root: Path | None = None  # the node's (read-only): its saved policy names disabled models

    @classmethod
    def from_env(cls, env: Env | None = None) -> GatewaySettings:
        env = env or Env()
        token = env.secret("MODELSYNC_GATEWAY_TOKEN")
        if token is not None and len(token) < MIN_TOKEN_CHARS:
            raise SettingsError(
                f"MODELSYNC_GATEWAY_TOKEN: must be at least {MIN_TOKEN_CHARS} characters long"
            )
        return cls(
            node=NodeSettings.from_env(env, default_port=DEFAULT_PORT),
            tfserving=host_port(env, "MODELSYNC_TFSERVING", "127.0.0.1:8500"),
            tfserving_rest=host_port(env, "MODELSYNC_TFSERVING_REST", "127.0.0.1:8501"),
            token=token,
            history_per_model=env.integer(
                "MODELSYNC_GATEWAY_HISTORY", 200, minimum=0, maximum=100_000
            ),
            history_sample=env.number(
                "MODELSYNC_GATEWAY_HISTORY_SAMPLE", 1.0, minimum=0.0, maximum=1.0
            ),
            capture=env.flag("MODELSYNC_GATEWAY_CAPTURE", False),
            capture_bytes=env.integer(
                "MODELSYNC_GATEWAY_CAPTURE_BYTES", 4096, minimum=0, maximum=16 * 2**20
            ),
            max_body_bytes=env.integer(
                "MODELSYNC_GATEWAY_MAX_BODY_BYTES", 16 * 2**20, minimum=1, maximum=2**31
            ),
            timeout_s=env.number("MODELSYNC_GATEWAY_TIMEOUT_S", 30.0, minimum=0.01, maximum=3600),
            advertise_url=env.opt_text("MODELSYNC_GATEWAY_URL"),
            model_root=Path(root) if (root := env.opt_text("MODELSYNC_MODEL_ROOT")) else None,
            latest_ttl_s=env.number(
                "MODELSYNC_GATEWAY_LATEST_TTL_S", 2.0, minimum=0.0, maximum=3600
            ),
        )

    def with_port(self, port: int | None) -> GatewaySettings:
        return self if port is None else dataclasses.replace(self, node=self.node.with_port(port))
