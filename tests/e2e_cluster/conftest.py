"""Fixtures for the tests against the multi-node cluster of `make cluster` (scripts/cluster.sh).

Run alone (`pytest tests/e2e_cluster`) they skip when no cluster is up; under
`make e2e-cluster` (MODELSYNC_CLUSTER_REQUIRED=1) a missing cluster is a failure.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from modelsync.dev.cluster import STATE, Cluster, ClusterError, wait_ready

REQUIRED = os.environ.get("MODELSYNC_CLUSTER_REQUIRED") == "1"


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    found = Cluster.load()
    if found is None:
        why = f"no multi-node cluster ({STATE}/cluster.env missing): run `make cluster` first"
        if REQUIRED:
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    try:
        wait_ready(found, 300)
    except ClusterError as exc:
        pytest.fail(f"the cluster is not ready: {exc}", pytrace=False)
    return found
