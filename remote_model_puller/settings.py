"""The puller's settings, from ``MODELSYNC_*`` environment variables (see the README)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from modelsync.savedmodel import DEFAULT_MAX_TAR_BYTES, DEFAULT_MAX_TAR_MEMBERS
from modelsync.settings import Env, NodeSettings, StoreSettings, model_root

DEFAULT_PORT = 8001


@dataclass(frozen=True)
class PullerSettings:
    store: StoreSettings
    node: NodeSettings
    model_root: Path
    poll_s: float = 5.0
    download_workers: int = 8
    max_concurrent_installs: int = 4  # models installing at once
    max_tar_bytes: int = DEFAULT_MAX_TAR_BYTES
    max_tar_members: int = DEFAULT_MAX_TAR_MEMBERS
    settle_s: float = 30.0
    catalog_max_age_s: float = 120.0
    backoff_max_s: float = 300.0
    poll_deadline_s: float = 30.0
    stale_after_s: float | None = None  # default: 10 polls
    watch: bool = True  # hold a watch on the master (MODELSYNC_MASTER_URL): woken at once

    @property
    def stale_after(self) -> float:
        """No successful poll for this long: the node is not ready (it keeps serving)."""
        return self.stale_after_s if self.stale_after_s is not None else 10 * self.poll_s

    @classmethod
    def from_env(cls, env: Env | None = None) -> PullerSettings:
        env = env or Env()
        return cls(
            store=StoreSettings.from_env(env),
            node=NodeSettings.from_env(env, default_port=DEFAULT_PORT),
            model_root=model_root(env),
            poll_s=env.number("MODELSYNC_POLL_S", 5.0, minimum=0.1),
            download_workers=env.integer("MODELSYNC_DOWNLOAD_WORKERS", 8, minimum=1, maximum=256),
            max_concurrent_installs=env.integer(
                "MODELSYNC_MAX_CONCURRENT_INSTALLS", 4, minimum=1, maximum=64
            ),
            max_tar_bytes=env.integer("MODELSYNC_MAX_TAR_BYTES", DEFAULT_MAX_TAR_BYTES, minimum=1),
            max_tar_members=env.integer(
                "MODELSYNC_MAX_TAR_MEMBERS", DEFAULT_MAX_TAR_MEMBERS, minimum=1
            ),
            settle_s=env.number("MODELSYNC_SETTLE_S", 30.0, minimum=0),
            catalog_max_age_s=env.number("MODELSYNC_CATALOG_MAX_AGE_S", 120.0, minimum=1),
            backoff_max_s=env.number("MODELSYNC_BACKOFF_MAX_S", 300.0, minimum=0.1),
            poll_deadline_s=env.number("MODELSYNC_POLL_DEADLINE_S", 30.0, minimum=0.5),
            watch=env.flag("MODELSYNC_MASTER_WATCH", True),
            stale_after_s=(
                env.number("MODELSYNC_STALE_AFTER_S", 0.0, minimum=1)
                if env.raw("MODELSYNC_STALE_AFTER_S")
                else None
            ),
        )
