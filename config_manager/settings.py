"""The config manager's settings, from ``MODELSYNC_*`` environment variables (see the README)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from config_manager.planner import PlanSettings
from modelsync.settings import Env, NodeSettings, model_root

DEFAULT_PORT = 8002


@dataclass(frozen=True)
class ConfigManagerSettings:
    node: NodeSettings
    model_root: Path
    tfserving: str = "127.0.0.1:8500"
    tfserving_model_root: str | None = None
    reconcile_s: float = 30.0
    watch_s: float = 0.1
    load_timeout_s: float = 300.0
    tfs_timeout_s: float = 10.0
    keep_on_disk: int = 1
    tfserving_metrics_url: str = "http://127.0.0.1:8501/monitoring/prometheus/metrics"
    telemetry_s: float = 5.0  # 0: no telemetry
    validate: bool = True  # the validation gate (MODELSYNC_VALIDATE)
    memory_limit_bytes: int | None = None  # unload-first swaps past it (config_manager/memory)
    memory_factor: float = 2.0  # a loaded version's memory / its size on disk

    @classmethod
    def from_env(cls, env: Env | None = None) -> ConfigManagerSettings:
        env = env or Env()
        return cls(
            node=NodeSettings.from_env(env, default_port=DEFAULT_PORT),
            model_root=model_root(env),
            tfserving=env.text("MODELSYNC_TFSERVING", "127.0.0.1:8500"),
            tfserving_model_root=env.opt_text("MODELSYNC_TFSERVING_MODEL_ROOT"),
            reconcile_s=env.number("MODELSYNC_RECONCILE_S", 30.0, minimum=0.1),
            watch_s=env.number("MODELSYNC_WATCH_S", 0.1, minimum=0.01, maximum=60),
            load_timeout_s=env.number("MODELSYNC_LOAD_TIMEOUT_S", 300.0, minimum=1),
            tfs_timeout_s=env.number("MODELSYNC_TFS_TIMEOUT_S", 10.0, minimum=0.1),
            keep_on_disk=env.integer("MODELSYNC_KEEP_ON_DISK", 1, minimum=0, maximum=100),
            tfserving_metrics_url=env.text(
                "MODELSYNC_TFSERVING_METRICS_URL",
                "http://127.0.0.1:8501/monitoring/prometheus/metrics",
            ),
            telemetry_s=env.number("MODELSYNC_TELEMETRY_S", 5.0, minimum=0, maximum=3600),
            validate=env.flag("MODELSYNC_VALIDATE", True),
            memory_limit_bytes=(
                env.integer("MODELSYNC_MEMORY_LIMIT_BYTES", 0, minimum=1)
                if env.raw("MODELSYNC_MEMORY_LIMIT_BYTES")
                else None
            ),
            memory_factor=env.number("MODELSYNC_MEMORY_FACTOR", 2.0, minimum=0.1, maximum=100),
        )

    @property
    def plan(self) -> PlanSettings:
        """What every pass plans with (``planner.plan_reload``): the model root as TF Serving
        sees it (the base paths in the config), the node id and the node's limits."""
        return PlanSettings(
            self.tfserving_model_root or str(self.model_root),
            self.node.node_id,
            self.load_timeout_s,
            self.memory_limit_bytes,
            self.memory_factor,
        )
