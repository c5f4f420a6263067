"""The worker's settings, from ``MODELSYNC_*`` environment variables (see jobs/README.md)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from modelsync.jobs.queue import BrokerSettings
from modelsync.settings import Env, NodeSettings, SettingsError, StoreSettings, host_port

DEFAULT_PORT = 8003


@dataclass(frozen=True)
class WorkerSettings:
    node: NodeSettings  # which node (its id names the worker), where /healthz listens
    store: StoreSettings
    broker: BrokerSettings
    tfserving: str = "127.0.0.1:8500"
    concurrency: int = 2  # chunks scored at once (threads)
    batch_rows: int = 1000  # rows per Predict call
    timeout_s: float = 30.0  # per Predict call
    retry_s: float = 300.0  # how long a chunk waits for TF Serving before its rows are errors

    @classmethod
    def from_env(cls, env: Env | None = None) -> WorkerSettings:
        env = env or Env()
        broker = BrokerSettings.from_env(env)
        if broker is None:
            raise SettingsError(
                "MODELSYNC_BROKER_URL (or MODELSYNC_BROKER_URL_FILE) is required: the broker "
                "the master sends the jobs' chunks to (redis://HOST:6379/0)"
            )
        return cls(
            node=NodeSettings.from_env(env, default_port=DEFAULT_PORT),
            store=StoreSettings.from_env(env),
            broker=broker,
            tfserving=host_port(env, "MODELSYNC_TFSERVING", "127.0.0.1:8500"),
            concurrency=env.integer("MODELSYNC_WORKER_CONCURRENCY", 2, minimum=1, maximum=64),
            batch_rows=env.integer("MODELSYNC_WORKER_BATCH_ROWS", 1000, minimum=1, maximum=100_000),
            timeout_s=env.number("MODELSYNC_WORKER_TIMEOUT_S", 30.0, minimum=0.1, maximum=3600),
            retry_s=env.number("MODELSYNC_JOB_RETRY_S", 300.0, minimum=0, maximum=7 * 86400),
        )

    def with_port(self, port: int | None) -> WorkerSettings:
        return self if port is None else dataclasses.replace(self, node=self.node.with_port(port))
