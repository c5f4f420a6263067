"""TF Serving's config files: ModelServerConfig (text proto) and MonitoringConfig."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tfserving.entries import ModelConfig
from tfserving.errors import ServingError
from tfserving.policy import VersionPolicy


def parse_model_server_config_text(text: str) -> Any:
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    msg = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as exc:
        raise ServingError("INVALID_ARGUMENT", f"malformed model config: {exc}") from None
    return msg


def model_configs(msg: Any) -> list[ModelConfig]:
    """ModelServerConfig proto -> validated ModelConfigs (INVALID_ARGUMENT on a bad one)."""
    which = msg.WhichOneof("config")
    if which == "custom_model_config":
        raise ServingError(
            "FAILED_PRECONDITION",
            "Cannot transition to requested config. It is only legal to "
            "transition from one ModelConfigList to another.",
        )
    out: list[ModelConfig] = []
    for m in msg.model_config_list.config:
        if not m.name:
            raise ServingError("INVALID_ARGUMENT", "model config has no name")
        if not m.base_path:
            raise ServingError("INVALID_ARGUMENT", f"model {m.name}: base_path is empty")
        platform = m.model_platform
        if m.model_type != 0:
            if platform:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    "Illegal setting both model_type(deprecated) and model_platform.",
                )
            platform = "tensorflow" if m.model_type == 1 else "other"
        if not platform:
            raise ServingError(
                "INVALID_ARGUMENT",
                "Illegal setting neither model_type(deprecated) nor model_platform.",
            )
        if platform != "tensorflow":
            raise ServingError(
                "INVALID_ARGUMENT", f"model {m.name}: unsupported model_platform {platform!r}"
            )
        policy = VersionPolicy()
        pol = m.model_version_policy
        kind = pol.WhichOneof("policy_choice")
        if kind == "all":
            policy = VersionPolicy("all")
        elif kind == "specific":
            if not pol.specific.versions:
                raise ServingError(
                    "INVALID_ARGUMENT", f"model {m.name}: specific version policy lists no versions"
                )
            policy = VersionPolicy("specific", versions=frozenset(pol.specific.versions))
        elif kind == "latest":
            policy = VersionPolicy("latest", num_versions=max(1, pol.latest.num_versions))
        out.append(
            ModelConfig(
                name=m.name, base_path=m.base_path, policy=policy, labels=dict(m.version_labels)
            )
        )
    return out


def single_model_config(name: str, base_path: str) -> list[ModelConfig]:
    return [ModelConfig(name=name, base_path=base_path)]


@dataclass(frozen=True)
class MonitoringConfig:
    prometheus_enable: bool = False
    prometheus_path: str = "/monitoring/prometheus/metrics"


def parse_monitoring_config(text: str) -> MonitoringConfig:
    """``prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }``."""
    body = re.search(r"prometheus_config\s*:?\s*\{(.*?)\}", text, re.S)
    if body is None:
        if text.strip():
            raise ServingError("INVALID_ARGUMENT", "monitoring config: no prometheus_config")
        return MonitoringConfig()
    inner = body.group(1)
    enable = re.search(r"enable\s*:\s*(true|false)", inner)
    path = re.search(r"path\s*:\s*[\"']([^\"']+)[\"']", inner)
    return MonitoringConfig(
        prometheus_enable=bool(enable and enable.group(1) == "true"),
        prometheus_path=path.group(1) if path else MonitoringConfig.prometheus_path,
    )
