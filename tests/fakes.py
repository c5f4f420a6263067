"""In-memory fakes behind the project's own Protocols, for unit tests of one daemon pass (the
bucket's fake is ``modelsync.dev.memstore.MemoryStore``).

``FakeServing``: a ``ServingClient`` that behaves like TF Serving's ModelService for the config
manager: a reload replaces the model list, versions load at once (or fail, when told to), an
old version is unloaded only once an aspired one is AVAILABLE (TF Serving's
availability-preserving policy), labels are accepted only onto AVAILABLE versions, and a restart
forgets everything."""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import text_format

from config_manager.serving import ModelUnknown, ServingUnavailable, VersionState
from modelsync.protos import serving_protos


class FakeServing:
    target = "fake:8500"

    def __init__(self, fail: set[tuple[str, int]] | None = None) -> None:
        self.models: dict[str, dict[int, VersionState]] = {}
        self.labels: dict[str, dict[str, int]] = {}
        self.fail = fail or set()
        self.stuck: set[tuple[str, int]] = set()  # stay LOADING (a load that never ends)
        self.on_status: Callable[[], None] | None = None  # runs at every status call
        self.up = True
        self.reloads: list[str] = []

    def model_status(self, model: str) -> list[VersionState]:
        if self.on_status is not None:
            self.on_status()
        if not self.up:
            raise ServingUnavailable(f"{self.target}: UNAVAILABLE")
        if not self.models.get(model):
            raise ModelUnknown(model)
        return list(self.models[model].values())

    def reload(self, config_text: str, timeout_s: float) -> tuple[int, str]:
        if not self.up:
            raise ServingUnavailable(f"{self.target}: UNAVAILABLE")
        self.reloads.append(config_text)
        cfg = serving_protos().ModelServerConfig()
        text_format.Parse(config_text, cfg)
        wanted = {
            c.name: (set(c.model_version_policy.specific.versions), dict(c.version_labels))
            for c in cfg.model_config_list.config
        }
        for name in set(self.models) - set(wanted):
            self.models[name] = {v: VersionState(v, "END") for v in self.models[name]}
        code, message = 0, ""
        for name, (versions, labels) in wanted.items():
            states = self.models.setdefault(name, {})
            for v in versions:
                if (name, v) in self.fail:
                    states[v] = VersionState(v, "END", 3, f"{name}/{v}: could not load")
                elif (name, v) in self.stuck:
                    states[v] = VersionState(v, "LOADING")
                elif v not in states or states[v].state != "AVAILABLE":
                    states[v] = VersionState(v, "AVAILABLE")
            serving = any(states[v].state == "AVAILABLE" for v in versions)
            for v, s in list(states.items()):  # availability-preserving: unload once a new
                if v not in versions and s.state != "END" and serving:  # version serves
                    states[v] = VersionState(v, "END")
            for label, v in labels.items():
                if states.get(v, VersionState(v, "UNKNOWN")).state != "AVAILABLE":
                    code, message = 9, f"label {label} onto {v}, which is not AVAILABLE"
            self.labels[name] = labels
        return code, message

    def restart(self) -> None:
        self.models, self.labels = {}, {}

    def close(self) -> None:
        pass
