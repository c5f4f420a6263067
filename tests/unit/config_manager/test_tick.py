"""One pass of the config manager (``ConfigManager.tick``) against an in-memory TF Serving."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fakes import FakeServing

from config_manager.daemon import ConfigManager
from config_manager.settings import ConfigManagerSettings
from modelsync.local import InstallRecord, LocalLayout, atomic_write
from modelsync.policy import ModelPolicy, Policy
from modelsync.settings import NodeSettings


def install(layout: LocalLayout, model: str, version: int, fingerprint: str = "fp") -> None:
    d = layout.version_dir(model, version)
    d.mkdir(parents=True, exist_ok=True)
    (d / "saved_model.pb").write_bytes(b"x")
    record = InstallRecord(model, version, fingerprint, "test", 1, time.time(), 0.0)
    atomic_write(layout.record_path(model, version), record.to_json())


@pytest.fixture
def node(tmp_path: Path) -> tuple[ConfigManager, FakeServing, LocalLayout]:
    fake = FakeServing()
    settings = ConfigManagerSettings(node=NodeSettings("n1", tmp_path, 0), load_timeout_s=5,
                                     keep_on_disk=0)
    manager = ConfigManager(settings, client=fake)
    return manager, fake, manager.layout


def events(manager: ConfigManager, name: str) -> list[dict]:
    return [e for e in manager.events if e["event"] == name]


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
    assert events(manager, "tfserving_restarted_or_behind")


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
    layout.write_policy(Policy(models={"m": ModelPolicy(keep_versions=1,
                                                        labels={"stable": 2})}), 7)
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
