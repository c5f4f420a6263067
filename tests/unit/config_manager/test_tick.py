"""One pass of the config manager (``ConfigManager.tick``) against an in-memory TF Serving."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fakes import FakeServing
from helpers import wait_for

from config_manager.checks import ValidationResult
from config_manager.daemon import ConfigManager
from config_manager.settings import ConfigManagerSettings
from modelsync.local import InstallRecord, LocalLayout, atomic_write
from modelsync.policy import ModelPolicy, Policy
from modelsync.settings import NodeSettings


def install(
    layout: LocalLayout, model: str, version: int, fingerprint: str = "fp", size: int = 1
) -> None:
    d = layout.version_dir(model, version)
    d.mkdir(parents=True, exist_ok=True)
    (d / "saved_model.pb").write_bytes(b"x")
    record = InstallRecord(model, version, fingerprint, "test", size, time.time(), 0.0)
    atomic_write(layout.record_path(model, version), record.to_json())


@pytest.fixture
def node(tmp_path: Path) -> tuple[ConfigManager, FakeServing, LocalLayout]:
    fake = FakeServing()
    settings = ConfigManagerSettings(
        node=NodeSettings("n1", 0),
        model_root=tmp_path,
        load_timeout_s=5,
        keep_on_disk=0,
        validate=False,
    )
    manager = ConfigManager(settings, client=fake)
    return manager, fake, manager.layout


def events(manager: ConfigManager, name: str) -> list[dict]:
    return [e.to_json() for e in manager.events if e.name == name]


def test_first_pass_serves_what_is_installed(node) -> None:  # type: ignore[no-untyped-def]
    manager, fake, layout = node
    install(layout, "m", 1)
    result = manager.tick()
    assert result.pushed == 1 and result.settled
    assert fake.models["m"][1].state == "AVAILABLE"
    assert layout.config_path.read_text() == fake.reloads[-1]
    assert manager.tick().pushed == 0  # nothing changed: no reload


def test_restart_detected_pushes_config_again(node) -> None:  # type: ignore[no-untyped-def]
    manager, fake, layout = node
    install(layout, "m", 1)
    manager.tick()
    fake.restart()
    result = manager.tick()
    assert result.pushed == 1
    assert fake.reloads[-1] == fake.reloads[0]
    assert fake.models["m"][1].state == "AVAILABLE"
    assert events(manager, "tfserving_restarted")


def test_tfserving_down_keeps_file_current_and_pushes_when_back(node) -> None:  # type: ignore[no-untyped-def]
    manager, fake, layout = node
    fake.up = False
    install(layout, "m", 1)
    result = manager.tick()
    assert not result.tfserving_up and result.pushed == 0
    assert "versions: 1" in layout.config_path.read_text()
    fake.up = True
    assert manager.tick().pushed == 1
    assert fake.models["m"][1].state == "AVAILABLE"


def test_failed_version_left_out_until_its_record_changes(node) -> None:  # type: ignore[no-untyped-def]
    manager, fake, layout = node
    install(layout, "m", 1)
    manager.tick()
    fake.fail = {("m", 2)}
    install(layout, "m", 2, fingerprint="bad")
    assert manager.tick().failed == []  # pushed; TF Serving reports the failure afterwards
    result = manager.tick()  # noted, and re-rendered without the failed version at once
    assert result.failed == [("m", 2)] and result.pushed == 1
    assert len(events(manager, "version_load_failed")) == 1
    assert "versions: 2" not in fake.reloads[-1] and "versions: 1" in fake.reloads[-1]
    assert fake.models["m"][1].state == "AVAILABLE"
    pushes = len(fake.reloads)
    assert manager.tick().pushed == 0 and len(fake.reloads) == pushes  # not retried
    assert (layout.version_dir("m", 2)).exists()  # selected by the policy: never pruned
    fake.fail = set()
    install(layout, "m", 2, fingerprint="fixed")  # new content: another chance
    manager.tick()
    assert fake.models["m"][2].state == "AVAILABLE"
    assert "versions: 2" in fake.reloads[-1]


def test_label_staged_in_two_reloads(node) -> None:  # type: ignore[no-untyped-def]
    manager, fake, layout = node
    install(layout, "m", 1)
    manager.tick()
    layout.write_policy(Policy(models={"m": ModelPolicy(keep_versions=1, labels={"stable": 2})}), 7)
    install(layout, "m", 2)
    before = len(fake.reloads)
    result = manager.tick()
    first, second = fake.reloads[before:]
    assert result.pushed == 2
    assert "versions: 2" in first and "stable" not in first  # v2 not AVAILABLE yet
    assert 'key: "stable"' in second and "value: 2" in second
    assert fake.labels["m"] == {"stable": 2}


def test_prunes_what_tfserving_reports_end(node) -> None:  # type: ignore[no-untyped-def]
    manager, fake, layout = node
    install(layout, "m", 1)
    manager.tick()
    install(layout, "m", 2)
    result = manager.tick()
    assert ("m", 1) in result.pruned
    assert not layout.version_dir("m", 1).exists() and layout.version_dir("m", 2).exists()
    assert fake.models["m"][2].state == "AVAILABLE"


def test_stuck_version_never_holds_back_the_versions_behind_it(tmp_path: Path) -> None:
    fake = FakeServing()
    settings = ConfigManagerSettings(
        node=NodeSettings("n1", 0), model_root=tmp_path, load_timeout_s=0.5, validate=False
    )
    manager = ConfigManager(settings, client=fake)
    layout = manager.layout
    layout.write_policy(Policy(models={"m": ModelPolicy(keep_versions=3)}), 1)
    install(layout, "m", 1)
    manager.tick()
    fake.stuck = {("m", 2)}
    install(layout, "m", 2)
    # a new install while the reload waits on the stuck one: the wait ends at once
    pushes = len(fake.reloads)

    def install_v3_once_v2_is_pushed() -> None:
        if len(fake.reloads) > pushes and fake.on_status is not None:
            fake.on_status = None
            install(layout, "m", 3)

    fake.on_status = install_v3_once_v2_is_pushed
    result = manager.tick()
    assert not result.settled and events(manager, "reload_wait_interrupted")
    manager.tick()  # v3 gets its own reload while v2 is still loading
    assert fake.models["m"][3].state == "AVAILABLE"
    assert fake.models["m"][2].state == "LOADING"
    # past the load timeout the stuck version is a failure, reported and left out
    wait_for(lambda: manager.tick().failed == [("m", 2)], 10, "v2 given up")
    failed = events(manager, "version_load_failed")
    assert failed and "still LOADING" in failed[-1]["error"]
    manager.tick()
    assert "versions: 2" not in fake.reloads[-1] and "versions: 3" in fake.reloads[-1]
    assert manager.summary()["failed"] == {"m": {"2": failed[-1]["error"]}}


def config(text: str) -> dict[str, set[int]]:
    from google.protobuf import text_format

    from modelsync.protos import serving_protos

    cfg = text_format.Parse(text, serving_protos().ModelServerConfig())
    return {
        c.name: set(c.model_version_policy.specific.versions) for c in cfg.model_config_list.config
    }


class FakeValidator:
    """Passes every version except those in ``bad`` (model, version) -> reason."""

    def __init__(self, bad: dict[tuple[str, int], str] | None = None) -> None:
        self.bad = bad or {}
        self.calls: list[tuple[str, int]] = []

    def validate(self, shadow: str, version: int, version_dir: Path) -> ValidationResult:
        assert version_dir.is_dir()
        self.calls.append((shadow, version))
        why = self.bad.get((shadow.removeprefix("_validate."), version))
        return ValidationResult(why is None, why or "ok", "signature", 1, (1.5,))

    def close(self) -> None:
        pass


def test_no_request_reaches_a_version_before_it_passes_validation(tmp_path: Path) -> None:
    fake, validator = FakeServing(), FakeValidator({("m", 3): "output 'y' has 1 non-finite"})
    settings = ConfigManagerSettings(
        node=NodeSettings("n1", 0), model_root=tmp_path, load_timeout_s=5
    )
    manager = ConfigManager(settings, client=fake, validator=validator)
    layout = manager.layout
    install(layout, "m", 1)
    manager.tick()  # v1 validated under its shadow name, not yet in the real model
    assert validator.calls == [("_validate.m", 1)]
    assert 'name: "_validate.m"' in fake.reloads[-1] and 'name: "m"' not in fake.reloads[-1]
    manager.tick()  # the verdict is in: v1 joins the real model, the shadow goes
    assert 'name: "m"' in fake.reloads[-1] and "_validate" not in fake.reloads[-1]
    assert fake.models["m"][1].state == "AVAILABLE"
    install(layout, "m", 2)
    manager.tick()  # v2 validating while v1 serves: the real model still lists only v1
    assert config(fake.reloads[-1]) == {"m": {1}, "_validate.m": {2}}
    manager.tick()
    assert fake.models["m"][2].state == "AVAILABLE" and config(fake.reloads[-1]) == {"m": {2}}
    install(layout, "m", 3)  # fails validation: never in the real model, v2 keeps serving
    manager.tick()
    manager.tick()
    assert all(3 not in config(r).get("m", set()) for r in fake.reloads)
    assert fake.models["m"][2].state == "AVAILABLE"
    failed = events(manager, "version_validation_failed")
    assert failed and "non-finite" in failed[0]["error"]
    assert manager.summary()["failed"] == {"m": {"3": "validation: output 'y' has 1 non-finite"}}
    calls = len(validator.calls)
    manager.tick()
    assert len(validator.calls) == calls  # retried only when its content changes
    validator.bad.clear()
    install(layout, "m", 3, fingerprint="fixed")
    manager.tick()
    manager.tick()
    assert fake.models["m"][3].state == "AVAILABLE"


def test_a_swap_past_the_memory_limit_unloads_first_and_is_not_ready(tmp_path: Path) -> None:
    fake = FakeServing()
    settings = ConfigManagerSettings(
        node=NodeSettings("n1", 0),
        model_root=tmp_path,
        load_timeout_s=5,
        validate=False,
        memory_limit_bytes=300,
        memory_factor=2.0,
    )
    manager = ConfigManager(settings, client=fake)
    install(manager.layout, "m", 1, size=100)
    install(manager.layout, "small", 1, size=10)
    manager.tick()  # 2 x 110 fits
    assert manager.ready()[0] and fake.models["m"][1].state == "AVAILABLE"
    install(manager.layout, "m", 2, size=100)  # 2 x (110 + 100) would not
    manager.tick()
    assert config(fake.reloads[-1]) == {"small": {1}}  # m left the config: v1 unloaded first
    assert fake.models["m"][1].state == "END"
    ready, detail = manager.ready()
    assert not ready and "unload-first" in detail["reason"]
    assert events(manager, "swap_unload_first")
    manager.tick()  # then only the new version comes back
    assert config(fake.reloads[-1]) == {"small": {1}, "m": {2}}
    manager.tick()
    assert manager.ready()[0] and fake.models["m"][2].state == "AVAILABLE"
    install(manager.layout, "small", 2, size=10)  # 2 x (110 + 10) fits: the usual swap
    manager.tick()
    assert config(fake.reloads[-1]) == {"small": {2}, "m": {2}} and manager.ready()[0]
