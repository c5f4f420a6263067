"""A node never installs a container model's version: its bucket view leaves them out, from
the catalog and from its own listing alike (the master runs them as Swarm services)."""

from __future__ import annotations

import time
from pathlib import Path

from modelsync.catalog import build_catalog, catalog_object, dump_catalog
from modelsync.dev.memstore import MemoryStore
from modelsync.layout import DESCRIPTOR_NAME, SettleTracker, parse_listing
from modelsync.local import LocalLayout
from modelsync.settings import StoreSettings
from remote_model_puller.bucket_view import BucketView


def bucket() -> tuple[MemoryStore, StoreSettings]:
    store = MemoryStore()
    for name in (
        "models/churn/1/" + DESCRIPTOR_NAME,
        "models/churn/1/_READY",
        "models/ranker/1/saved_model.pb",
        "models/ranker/1/_READY",
    ):
        store.write(name, b"{}" if name.endswith(".json") else b"x")
    return store, StoreSettings(bucket="b")


def test_listing_leaves_container_versions_out(tmp_path: Path) -> None:
    store, settings = bucket()
    view = BucketView(store, settings, LocalLayout(tmp_path), settle_s=0)
    state = view.poll()
    assert state.source == "listing"
    assert set(state.versions) == {"ranker"}


def test_catalog_leaves_container_versions_out(tmp_path: Path) -> None:
    store, settings = bucket()
    listing = parse_listing(store.list_objects("models/"), "models", "_READY")
    catalog = build_catalog(listing, SettleTracker.markers_only(), time.time(), "models")
    assert catalog.models["churn"][1].complete  # complete, but not for a node
    store.write(
        catalog_object("models"), dump_catalog(catalog), metadata={"listed_at": f"{time.time()}"}
    )
    view = BucketView(store, settings, LocalLayout(tmp_path))
    state = view.poll()
    assert state.source == "catalog"
    assert set(state.versions) == {"ranker"}
