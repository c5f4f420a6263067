"""The worker's and the master's jobs settings: defaults, and one clear line for a bad value."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.settings import WorkerSettings
from master.settings import JobsSettings
from modelsync.settings import Env, SettingsError

BASE = {"MODELSYNC_BUCKET": "b", "MODELSYNC_BROKER_URL": "redis://127.0.0.1:6379/0"}


def test_worker_defaults() -> None:
    s = WorkerSettings.from_env(Env(BASE))
    assert (s.concurrency, s.batch_rows, s.retry_s, s.tfserving) == (
        2,
        1000,
        300.0,
        "127.0.0.1:8500",
    )
    assert s.broker.backend == s.broker.url  # Redis: the result backend too
    assert s.node.http_port == 8003 and s.broker.visibility_s == 300.0


def test_rabbitmq_has_no_default_backend_and_passwords_stay_out_of_logs() -> None:
    s = WorkerSettings.from_env(Env({**BASE, "MODELSYNC_BROKER_URL": "amqp://u:secret@h:5672//"}))
    assert s.broker.backend is None
    assert "secret" not in s.broker.safe_url and s.broker.safe_url == "amqp://u:***@h:5672//"


def test_the_broker_password_comes_from_its_own_secret(tmp_path: Any) -> None:
    secret = tmp_path / "pw"
    secret.write_text("p@ss word\n")
    env = {**BASE, "MODELSYNC_BROKER_PASSWORD_FILE": str(secret)}
    s = WorkerSettings.from_env(Env(env))
    assert s.broker.url == "redis://:p%40ss%20word@127.0.0.1:6379/0" == s.broker.backend
    assert s.broker.safe_url == "redis://***@127.0.0.1:6379/0"
    amqp = {**env, "MODELSYNC_BROKER_URL": "amqp://jobs@h:5672//"}
    assert WorkerSettings.from_env(Env(amqp)).broker.url == "amqp://jobs:p%40ss%20word@h:5672//"
    twice = {**env, "MODELSYNC_BROKER_URL": "redis://:a@h:1/0"}
    with pytest.raises(SettingsError, match="holds a password already"):
        WorkerSettings.from_env(Env(twice))


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MODELSYNC_BROKER_URL": ""},
            "MODELSYNC_BROKER_URL (or MODELSYNC_BROKER_URL_FILE) is required",
        ),
        ({"MODELSYNC_BROKER_URL": "http://x"}, "MODELSYNC_BROKER_URL: expected redis://"),
        (
            {"MODELSYNC_JOB_BACKEND_URL": "amqp://x"},
            "MODELSYNC_JOB_BACKEND_URL: expected a redis://",
        ),
        ({"MODELSYNC_WORKER_CONCURRENCY": "0"}, "MODELSYNC_WORKER_CONCURRENCY: must be >= 1"),
        ({"MODELSYNC_WORKER_BATCH_ROWS": "x"}, "MODELSYNC_WORKER_BATCH_ROWS: expected an integer"),
        ({"MODELSYNC_JOB_VISIBILITY_S": "1"}, "MODELSYNC_JOB_VISIBILITY_S: must be >= 2"),
        ({"MODELSYNC_TFSERVING": "nohost"}, "MODELSYNC_TFSERVING: expected host:port"),
    ],
)
def test_a_bad_worker_setting_is_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        WorkerSettings.from_env(Env({**BASE, **env}))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_master_jobs_defaults_and_bad_values() -> None:
    s = JobsSettings.from_env(Env({}))
    assert s.broker is None and s.ttl_s == 7 * 86400 and s.max_upload_bytes == 1 << 30
    assert s.chunk.max_rows == 5000
    for env, message in [
        ({"MODELSYNC_JOB_TTL_S": "10"}, "MODELSYNC_JOB_TTL_S: must be >= 60"),
        ({"MODELSYNC_WEBHOOK_SECRET": "short"}, "MODELSYNC_WEBHOOK_SECRET: must be at least 16"),
        ({"MODELSYNC_JOB_CHUNK_ROWS": "0"}, "MODELSYNC_JOB_CHUNK_ROWS: must be >= 1"),
        ({"MODELSYNC_JOB_MAX_UPLOAD_BYTES": "1k"}, "MODELSYNC_JOB_MAX_UPLOAD_BYTES: expected"),
    ]:
        with pytest.raises(SettingsError, match=message):
            JobsSettings.from_env(Env(env))


def test_a_bad_setting_stops_the_worker_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    import os

    from cli.main import main

    old = dict(os.environ)
    try:
        os.environ.update({**BASE, "MODELSYNC_WORKER_CONCURRENCY": "lots"})
        assert main(["worker"]) == 2
    finally:
        os.environ.clear()
        os.environ.update(old)
    err = capsys.readouterr().err.strip()
    assert (
        err
        == "modelsync worker: error: MODELSYNC_WORKER_CONCURRENCY: expected an integer, got 'lots'"
    )
