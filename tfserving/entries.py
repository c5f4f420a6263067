"""What the model manager knows of each model and version (plain records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tfserving.policy import State, VersionPolicy


@dataclass(frozen=True)
class ModelConfig:
    name: str
    base_path: str
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    labels: dict[str, int] = field(default_factory=dict)


@dataclass
class VersionEntry:
    version: int
    path: str
    state: State = State.UNKNOWN  # UNKNOWN = aspired, not started (reported as START)
    aspired: bool = True
    failed: bool = False
    error_code: str = "OK"
    error_message: str = ""
    servable: Any = None
    refs: int = 0
    loaded_at: float | None = None


@dataclass
class ModelEntry:
    config: ModelConfig
    in_config: bool = True
    versions: dict[int, VersionEntry] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class VersionStatus:
    version: int
    state: State
    error_code: str
    error_message: str
