"""The example notebook (examples/notebook.ipynb), executed cell by cell by nbclient in a real
Jupyter kernel against a real master and node (GCS emulator, the master under gunicorn, the
node's model server, config manager, puller and gateway): what a notebook user runs works."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import master_and_node, wait_for

from modelsync.dev.emulator import GCSEmulator, free_port
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ADMIN, NODE = "admin-token-0123456789", "node-secret-0123456789"
NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebook.ipynb"


@pytest.fixture(scope="module")
def cluster(gcs: GCSEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("notebook")
    bucket = f"notebook-{os.getpid()}"
    GCSStore(StoreSettings(bucket=bucket, emulator_host=gcs.url)).ensure_bucket()
    gateway_port = free_port()
    master, node = master_and_node(
        work,
        gcs.url,
        bucket,
        admin=ADMIN,
        node_secret=NODE,
        master_env={"MODELSYNC_GATEWAY_PORT": str(gateway_port)},
        node_env={"MODELSYNC_TELEMETRY_S": "1"},
        gateway=True,
        gateway_port=gateway_port,
    )
    url: str = master.url  # type: ignore[attr-defined]
    try:
        node.start()
        from modelsync import Client

        client = Client(url, ADMIN)
        wait_for(lambda: client.gateway_node() == "node-1", 60, "the node's gateway live")
        yield url
    finally:
        node.stop()
        master.stop()


@pytest.mark.timeout(900)
def test_the_example_notebook_runs_against_a_real_cluster(cluster: str, tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb,
        timeout=300,  # one cell (a publish waits for the node to serve it)
        startup_timeout=120,  # the kernel's start is bounded too
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    env = {
        **os.environ,
        "MODELSYNC_MASTER_URL": cluster,
        "MODELSYNC_TOKEN": ADMIN,
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    client.execute(env=env)  # a failing cell raises CellExecutionError with its traceback
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = [o for o in outputs if o.output_type == "execute_result"]
    htmls = [o["data"]["text/html"] for o in shown if "text/html" in o.get("data", {})]
    assert any("modelsync at" in h for h in htmls)  # the client's rich display
    assert any("y = 2x + 1, from a notebook" in h for h in htmls)  # the versions table
    from modelsync import Client

    versions = Client(cluster, ADMIN).versions("notebook-demo")
    assert list(versions.index) == [2, 1]
    assert versions.loc[1, "publisher"].startswith("admin@master ")  # the token's name
    assert versions.loc[2, "description"] == "y = x + 1, Keras"
