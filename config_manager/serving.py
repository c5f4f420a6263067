"""What the config manager needs of TF Serving, as a Protocol (the gRPC client implements it;
unit tests use an in-memory fake)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# tensorflow_serving/apis/get_model_status.proto, ModelVersionStatus.State
STATE_NAMES = {
    0: "UNKNOWN",
    10: "START",
    20: "LOADING",
    30: "AVAILABLE",
    40: "UNLOADING",
    50: "END",
}
AVAILABLE = "AVAILABLE"
END = "END"


class ServingUnavailable(Exception):
    """TF Serving did not answer (down, restarting, or past the deadline)."""


class ReloadTimeout(ServingUnavailable):
    """The reload's deadline passed: TF Serving took the config but still waits for a new
    model's first load (HandleReloadConfigRequest waits for new models)."""


class ModelUnknown(Exception):
    """TF Serving knows no version of this model (NOT_FOUND)."""


@dataclass(frozen=True)
class VersionState:
    version: int
    state: str
    error_code: int = 0
    error_message: str = ""


class ServingClient(Protocol):
    target: str

    def model_status(self, model: str) -> list[VersionState]:
        """Every version TF Serving knows of ``model``; ModelUnknown if none, ServingUnavailable
        if it does not answer."""
        ...

    def reload(self, config_text: str, timeout_s: float) -> tuple[int, str]:
        """HandleReloadConfigRequest with a ModelServerConfig text proto; TF Serving's
        (error_code, error_message). ServingUnavailable if it does not answer."""
        ...

    def close(self) -> None: ...
