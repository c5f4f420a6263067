"""Fixtures shared by the test suites: the GCS emulator, buckets, real demo SavedModels."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py

from modelsync.dev.emulator import GCSEmulator
from modelsync.settings import StoreSettings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

_bucket_ids = itertools.count(1)


@pytest.fixture(scope="session")
def gcs() -> Iterator[GCSEmulator]:
    """One fake-gcs-server for the session, on a free 127.0.0.1 port."""
    with GCSEmulator() as emu:
        yield emu


@pytest.fixture
def store_settings(gcs: GCSEmulator) -> StoreSettings:
    """Settings for a bucket of this test's own (created empty)."""
    from modelsync.store import GCSStore

    settings = StoreSettings(
        bucket=f"test-{os.getpid()}-{next(_bucket_ids)}",
        emulator_host=gcs.url,
        timeout_s=10,
        retry_deadline_s=10,
    )
    GCSStore(settings).ensure_bucket()
    return settings


@pytest.fixture
def store(store_settings: StoreSettings):  # type: ignore[no-untyped-def]
    from modelsync.store import GCSStore

    return GCSStore(store_settings)


@pytest.fixture(scope="session")
def model_factory(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """make(a, b=1.0, shards=1, pad_bytes=0) -> path of a real SavedModel (cached per session)."""
    from modelsync.dev.models import make_linear_model

    root = tmp_path_factory.mktemp("models")
    cache: dict[tuple[float, float, int, int], Path] = {}

    def make(a: float, b: float = 1.0, shards: int = 1, pad_bytes: int = 0) -> Path:
        key = (a, b, shards, pad_bytes)
        if key not in cache:
            cache[key] = make_linear_model(
                root / f"m{len(cache)}", a, b, shards=shards, pad_bytes=pad_bytes
            )
        return cache[key]

    return make
