"""Shared setup of the console's browser tests: a real cluster on 127.0.0.1 (GCS emulator
bucket, the master under gunicorn, one serving node with telemetry on, two published models
and a bounded gRPC Predict load), and what the tests do in the browser (sign in, wait for a
page's data)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from helpers import available_on, master_and_node, wait_for
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from modelsync.catalog import policy_object
from modelsync.client import PredictClient
from modelsync.dev.emulator import GCSEmulator
from modelsync.dev.procs import ManagedProcess, Node
from modelsync.policy import Policy, parse_policy
from modelsync.publish import publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore
from tests.browser import harness

ADMIN, READ, NODE = "admin-token-0123456789", "read-token-0123456789", "node-token-0123456789"
PREFIX, MARKER = "models", "_READY"
# the action buttons of a model's page: none of them may exist for the read token
ACTION_IDS = (
    "act-pin",
    "act-unpin",
    "act-rollback",
    "act-disable",
    "act-enable",
    "act-label",
    "act-keep",
    "act-sync",
)


def api(
    url: str, method: str, path: str, token: str = READ, body: dict[str, Any] | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url + path, data=data, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


class Load:
    """gRPC Predict calls from a thread, about ``rps`` a second (two thirds to ``demo``, one to
    ``other``), one in ``bad_every`` with an unknown input (TF Serving answers
    INVALID_ARGUMENT); bounded in count and time, stopped by ``stop()``."""

    def __init__(
        self,
        grpc_port: int,
        rps: float = 25,
        max_requests: int = 12000,
        max_s: float = 400,
        bad_every: int = 40,
    ) -> None:
        self.client = PredictClient(f"127.0.0.1:{grpc_port}")
        self.interval_s, self.max_requests, self.max_s = 1 / rps, max_requests, max_s
        self.bad_every = bad_every
        self.sent = self.ok = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="predict-load", daemon=True)

    def start(self) -> Load:
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_s
        while (
            not self._stop.is_set()
            and self.sent < self.max_requests
            and time.monotonic() < deadline
        ):
            bad = self.sent % self.bad_every == self.bad_every - 1
            model = "other" if self.sent % 3 == 2 and not bad else "demo"
            self.sent += 1
            try:
                self.client.predict(model, {"nope" if bad else "x": [1.0]}, timeout_s=5)
                self.ok += 1
            except grpc.RpcError:
                self.failed += 1
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.client.close()


@dataclass
class Cluster:
    url: str
    store: GCSStore
    settings: StoreSettings
    master: ManagedProcess
    node: Node
    load: Load

    def get(self, path: str, token: str = READ) -> Any:
        code, doc = api(self.url, "GET", path, token)
        assert code == 200, (path, code, doc)
        return doc


def serving(url: str, model: str, version: int, node: str = "node-1") -> bool:
    return available_on(url, READ, model, version, node)


@contextmanager
def running_cluster(
    workdir: Path, gcs: GCSEmulator, model_factory: Any, bucket: str, gateway: bool = False
) -> Iterator[Cluster]:
    """``gateway``: the node runs its gateway too (a third role on the nodes page)."""
    settings = StoreSettings(
        bucket=bucket, emulator_host=gcs.url, timeout_s=10, retry_deadline_s=10
    )
    store = GCSStore(settings)
    store.ensure_bucket()
    master, node = master_and_node(
        workdir,
        gcs.url,
        bucket,
        admin=ADMIN,
        node_secret=NODE,
        read_token=READ,
        node_env={"MODELSYNC_TELEMETRY_S": "1"},
        gateway=gateway,
    )
    url: str = master.url  # type: ignore[attr-defined]
    load = None
    try:
        node.start()
        for a in (2.0, 3.0):  # demo v1 and v2: v2 is served (keep_versions 1)
            publish(store, model_factory(a), "demo")
        publish(store, model_factory(5.0), "other")
        wait_for(
            lambda: serving(url, "demo", 2) and serving(url, "other", 1),
            120,
            "demo v2 and other v1 AVAILABLE on node-1",
        )
        # a label, as a registry would have (demo's are the tests')
        assert api(url, "PUT", "/v1/models/other/labels/stable", ADMIN, {"version": 1})[0] == 200
        load = Load(node.grpc_port).start()
        wait_for(
            lambda: (
                api(url, "GET", "/v1/models/demo/metrics?since=15m")[1]["total"]["requests"] > 0
            ),
            60,
            "the load in the master's telemetry",
        )
        yield Cluster(url, store, settings, master, node, load)
    finally:
        if load is not None:
            load.stop()
        node.stop()
        master.stop()


# --- in the browser ------------------------------------------------------------------------------
def sign_in(driver: Chrome, url: str, token: str, path: str = "/") -> None:
    driver.get(f"{url}/login?next={path}")
    box = harness.wait_for(driver, lambda d: d.find_element(By.ID, "token"))
    box.send_keys(token)
    driver.find_element(By.ID, "sign-in").click()
    harness.wait_for(driver, lambda d: "/login" not in d.current_url)


def rendered(driver: Chrome, what: str = "#updated") -> bool:
    """The page's first refresh is done ("updated at HH:MM:SS")."""
    text = driver.execute_script(
        "const e = document.querySelector(arguments[0]);return e ? e.textContent : '';", what
    )
    return str(text).startswith("updated at")


def wait_js(driver: Chrome, script: str) -> Any:
    """Wait until `script` returns something truthy in the page; return that."""
    return harness.wait_for(driver, lambda d: d.execute_script(script))


def refreshed(driver: Chrome) -> None:
    """Pause and resume the auto-refresh (which refreshes at once); wait until that is done
    (the "updated at" label carries the time of the last refresh in ``data-at``)."""
    before = updated_at(driver)
    for _ in range(2):
        driver.find_element(By.ID, "pause").click()
    harness.wait_for(driver, lambda d: updated_at(d) != before)


def updated_at(driver: Chrome) -> str | None:
    value = driver.find_element(By.ID, "updated").get_attribute("data-at")
    return None if value is None else str(value)


def model_rows(driver: Chrome, visible_only: bool = True) -> list[str]:
    rows = driver.execute_script(
        """
        return [...document.querySelectorAll('#models tbody tr[data-model]')]
          .filter(tr => !arguments[0] || !tr.hidden).map(tr => tr.dataset.model);""",
        visible_only,
    )
    return list(rows)


def fetch(
    driver: Chrome, method: str, path: str, csrf: bool, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A request from the signed-in page, with the session cookie (and the CSRF header)."""
    result: dict[str, Any] = driver.execute_async_script(
        """
        const [method, path, csrf, body, done] = arguments;
        const headers = {"Content-Type": "application/json"};
        if (csrf) headers["X-CSRF-Token"] =
          document.querySelector('meta[name="csrf-token"]').content;
        fetch(path, {method, credentials: "same-origin", headers,
                     body: body === null ? undefined : JSON.stringify(body)})
          .then(async r => done({status: r.status, doc: await r.json()}))
          .catch(e => done({status: -1, doc: {error: String(e)}}));""",
        method,
        path,
        csrf,
        body,
    )
    return result


def js(driver: Chrome, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def present(css: str) -> Callable[[Chrome], list[WebElement]]:
    return lambda d: d.find_elements(By.CSS_SELECTOR, css)


def click(driver: Chrome, css: str) -> None:
    """Click what `css` finds, again if an auto-refresh replaced it meanwhile."""

    def attempt(d: Chrome) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, css).click()
        except (StaleElementReferenceException, NoSuchElementException):
            return False
        return True

    harness.wait_for(driver, attempt, timeout_s=15)


def cell_text(driver: Chrome, row: str, col: str) -> str:
    return str(
        js(
            driver,
            "const c = document.querySelector(arguments[0] + ' td[data-col=\"' +"
            " arguments[1] + '\"]'); return c ? c.textContent : null;",
            row,
            col,
        )
    )


def column(driver: Chrome, index: int) -> list[str]:
    """The texts of one column of the event log."""
    return list(
        js(
            driver,
            "return [...document.querySelectorAll('#events tr.event')]"
            ".map(tr => tr.children[arguments[0]].textContent)",
            index,
        )
    )


def bucket_policy(cluster: Cluster) -> Policy:
    return parse_policy(cluster.store.read(policy_object(PREFIX)))


def bucket_pin(cluster: Cluster, model: str = "demo") -> int | None:
    return bucket_policy(cluster).for_model(model).pin


def confirm(driver: Chrome, accept: bool = True) -> str:
    alert = harness.wait_for(driver, lambda d: d.switch_to.alert, timeout_s=10)
    text = str(alert.text)
    if accept:
        alert.accept()
    else:
        alert.dismiss()
    return text


def action_result(driver: Chrome, contains: str) -> str:
    def shown(d: Chrome) -> str | None:
        box = d.find_element(By.ID, "action-result")
        state = box.get_attribute("data-state")
        return str(state) if state != "pending" and contains in box.text else None

    return str(harness.wait_for(driver, shown, timeout_s=30))
