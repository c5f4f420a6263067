from __future__ import annotations

from pathlib import Path

import pytest

from modelsync.settings import Env, SettingsError, StoreSettings, normalize_prefix


def test_store_settings_defaults_and_values() -> None:
    s = StoreSettings.from_env(Env({"MODELSYNC_BUCKET": "b"}))
    assert (s.bucket, s.prefix, s.marker, s.emulator_host) == ("b", "models", "_READY", None)
    s = StoreSettings.from_env(
        Env(
            {
                "MODELSYNC_BUCKET": "b",
                "MODELSYNC_PREFIX": "/a/b/",
                "STORAGE_EMULATOR_HOST": "http://127.0.0.1:1",
            }
        )
    )
    assert s.prefix == "a/b" and s.emulator_host == "http://127.0.0.1:1"


def test_missing_bucket_is_one_clear_line() -> None:
    with pytest.raises(SettingsError, match="MODELSYNC_BUCKET is required"):
        StoreSettings.from_env(Env({}))


@pytest.mark.parametrize(
    ("env", "msg"),
    [
        ({"MODELSYNC_GCS_TIMEOUT_S": "abc"}, "MODELSYNC_GCS_TIMEOUT_S: expected a number"),
        ({"MODELSYNC_GCS_TIMEOUT_S": "0"}, "must be >="),
        ({"MODELSYNC_GCS_TIMEOUT_S": "nan"}, "finite"),
        ({"MODELSYNC_PREFIX": "a//b"}, "malformed prefix"),
        ({"MODELSYNC_PREFIX": "a/../b"}, "malformed prefix"),
        ({"MODELSYNC_MARKER": "x/y"}, "MODELSYNC_MARKER"),
    ],
)
def test_bad_values(env: dict[str, str], msg: str) -> None:
    with pytest.raises(SettingsError, match=msg):
        StoreSettings.from_env(Env({"MODELSYNC_BUCKET": "b", **env}))


def test_typed_reads() -> None:
    env = Env({"I": "5", "B": "yes", "F": "0.5", "BAD": "x"})
    assert env.integer("I", 1) == 5 and env.integer("NONE", 7) == 7
    assert env.flag("B", False) is True and env.number("F", 0) == 0.5
    with pytest.raises(SettingsError, match="BAD: expected an integer"):
        env.integer("BAD", 1)
    with pytest.raises(SettingsError, match="BAD: expected true or false"):
        env.flag("BAD", True)
    with pytest.raises(SettingsError, match="I: must be <= 3"):
        env.integer("I", 1, maximum=3)


def test_secret_from_file(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("s3cret\n")
    assert Env({"T_FILE": str(f)}).secret("T") == "s3cret"
    assert Env({"T": "direct"}).secret("T") == "direct"
    assert Env({}).secret("T") is None
    with pytest.raises(SettingsError, match="both set"):
        Env({"T": "a", "T_FILE": str(f)}).secret("T")
    with pytest.raises(SettingsError, match="cannot read"):
        Env({"T_FILE": str(tmp_path / "missing")}).secret("T")
    (tmp_path / "empty").write_text("")
    with pytest.raises(SettingsError, match="is empty"):
        Env({"T_FILE": str(tmp_path / "empty")}).secret("T")


def test_normalize_prefix() -> None:
    assert normalize_prefix("") == "" and normalize_prefix("/") == ""
    assert normalize_prefix(" m/x ") == "m/x"
