"""Publishing from CI or a git hook: scripts/hooks/publish-model is idempotent on retries and
says why it refuses, with the documented exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelsync.layout import parse_listing

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
HOOK = ROOT / "scripts" / "hooks" / "publish-model"


def run(args: list[str], store_settings, **env: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    bin_dir = Path(sys.executable).parent
    full = {
        **os.environ,
        "MODELSYNC_BUCKET": store_settings.bucket,
        "STORAGE_EMULATOR_HOST": store_settings.emulator_host,
        "MODELSYNC_BIN": str(bin_dir / "modelsync"),
        **env,
    }
    return subprocess.run([str(HOOK), *args], env=full, capture_output=True, text=True, timeout=120)


def versions(store) -> list[int]:  # type: ignore[no-untyped-def]
    return sorted(
        parse_listing(store.list_objects("models/"), "models", "_READY").models.get("ranker", {})
    )


def test_retries_publish_once_and_refusals_are_one_line(
    store,
    store_settings,
    model_factory,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    export = model_factory(2.0)
    first = run([str(export), "ranker"], store_settings)
    assert first.returncode == 0 and "published" in first.stdout, first.stderr
    again = run([str(export)], store_settings, MODELSYNC_MODEL="ranker")
    assert again.returncode == 0 and again.stdout.startswith("unchanged"), again
    assert versions(store) == [1]  # the retry made no second version
    newer = run([str(model_factory(3.0)), "ranker"], store_settings)
    assert newer.returncode == 0 and versions(store) == [1, 2]
    junk = tmp_path / "junk"
    (junk / "variables").mkdir(parents=True)
    (junk / "saved_model.pb").write_bytes(b"12345")
    (junk / "variables" / "variables.index").write_bytes(b"x")
    (junk / "variables" / "variables.data-00000-of-00001").write_bytes(b"x")
    bad = run([str(junk), "ranker"], store_settings)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 1 and len(lines) == 1 and "not a SavedModel" in lines[0]
    assert versions(store) == [1, 2]
    unset = run([str(export), "ranker"], store_settings, MODELSYNC_BUCKET="")
    assert unset.returncode == 2 and "MODELSYNC_BUCKET" in unset.stderr
