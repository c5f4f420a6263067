"""Test-side helpers for the puller's integration suites."""

from __future__ import annotations

from pathlib import Path

from modelsync.savedmodel import local_files
from modelsync.settings import NodeSettings, StoreSettings
from remote_model_puller.daemon import Puller
from remote_model_puller.settings import PullerSettings


def make_puller(store_settings: StoreSettings, root: Path, **overrides) -> Puller:  # type: ignore[no-untyped-def]
    settings = PullerSettings(
        store=store_settings,
        node=NodeSettings(node_id="node-a", http_port=0),
        model_root=root,
        settle_s=overrides.pop("settle_s", 0.5),
        catalog_max_age_s=overrides.pop("catalog_max_age_s", 60),
        **overrides,
    )
    return Puller(settings)


def same_tree(a: Path, b: Path) -> bool:
    fa, fb = local_files(a), local_files(b)
    return fa == fb and all((a / f).read_bytes() == (b / f).read_bytes() for f in fa)


def events(puller: Puller, name: str) -> list[dict]:
    return [e.to_json() for e in puller.events if e.name == name]
