"""e2e fixtures: a Docker Engine (installed and started by scripts/docker-engine.sh), a
one-node Swarm, and the modelsync image built from this checkout."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from e2e_helpers import sh


@pytest.fixture(scope="session")
def images() -> str:
    """The modelsync image, built from this checkout (set MODELSYNC_E2E_IMAGE to reuse one)."""
    if os.environ.get("MODELSYNC_E2E_IMAGE"):
        image = os.environ["MODELSYNC_E2E_IMAGE"]
    else:
        image = sh("bash", "scripts/build-images.sh", timeout=3000).stdout.strip().splitlines()[-1]
    sh("bash", "scripts/swarm-init.sh")
    sh("bash", "scripts/compose-plugin.sh")
    return image
