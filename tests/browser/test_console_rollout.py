"""A model's page in a real headless Chromium, against a real cluster on 127.0.0.1 (GCS emulator,
the master under gunicorn, one node with its gateway): "Try it" through the node's gateway,
the recent requests the gateways report, a staged rollout driven from the panel (what its stage
is judged on: "waiting for traffic", then the new version against the label's baseline; pause,
resume, abort, clearing the rejection, the spec form), the read-only view, no JS errors."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from modelsync.client import PredictClient
from modelsync.dev.emulator import GCSEmulator, free_port
from modelsync.dev.procs import MasterSpec, Node, start_master
from modelsync.publish import publish
from modelsync.settings import StoreSettings
from modelsync.store import GCSStore
from tests.browser import harness
from tests.browser.console_kit import (
    ADMIN,
    NODE,
    READ,
    api,
    click,
    confirm,
    js,
    present,
    rendered,
    serving,
    sign_in,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DOCS = harness.REPO / "docs"
# the admin's rollout controls (every id of a button or field starts with "ro-")
ROLLOUT_CONTROLS = "#rollout-controls, #rollout-spec-form, #rollout-result, [id^='ro-']"
# an element's text (no attribute name given) or one of its attributes; None: no such element
GET = "const e = document.querySelector(arguments[0]); if (!e) return null;"
GET += "return arguments[1] ? e.getAttribute(arguments[1]) : e.textContent;"


@dataclass
class GatewayCluster:
    url: str
    store: GCSStore
    gateway_url: str
    model_factory: Callable[..., Path]
    grpc_port: int

    def get(self, path: str, token: str = READ) -> Any:
        code, doc = api(self.url, "GET", path, token)
        assert code == 200, (path, code, doc)
        return doc

    def rollout(self) -> Any:
        return self.get("/v1/models/demo/rollout")

    def recent(self) -> list[Any]:
        return list(self.get("/v1/models/demo/requests")["recent"])

    def invoke(self, x: list[float]) -> Any:
        """One MLflow request straight to the node's gateway."""
        req = urllib.request.Request(
            self.gateway_url + "/model/demo/invocations",
            data=json.dumps({"inputs": {"x": x}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def predict(self, n: int, labelled: float, bad: float) -> None:
        """``n`` gRPC Predicts straight to the node: ``labelled`` of them name the label
        ``stable``, ``bad`` have a wrong input (the client's mistake, INVALID_ARGUMENT)."""
        client, rng = PredictClient(f"127.0.0.1:{self.grpc_port}"), random.Random(n)
        try:
            for _ in range(n):
                name = "nope" if rng.random() < bad else "x"
                label = "stable" if rng.random() < labelled else None
                try:
                    client.predict("demo", {name: [rng.random()]}, label=label, timeout_s=10)
                except Exception as exc:  # the bad ones, on purpose
                    assert name == "nope", exc
        finally:
            client.close()

    def gateway_history(self) -> int:
        with urllib.request.urlopen(self.gateway_url + "/v1/history?model=demo", timeout=30) as r:
            doc = json.loads(r.read())
        return len(doc["entries"])


def gateway_live(url: str) -> bool:
    code, doc = api(url, "GET", "/v1/nodes")
    nodes = {n["node_id"]: n for n in doc["nodes"]} if code == 200 else {}
    gw = nodes.get("node-1", {}).get("roles", {}).get("gateway")
    return bool(gw and gw["state"] == "live" and gw["status"].get("url"))


@pytest.fixture(scope="module")
def cluster(
    gcs: GCSEmulator, model_factory: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayCluster]:
    workdir = tmp_path_factory.mktemp("console-rollout")
    bucket = f"console-rollout-{os.getpid()}"
    store = GCSStore(
        StoreSettings(bucket=bucket, emulator_host=gcs.url, timeout_s=10, retry_deadline_s=10)
    )
    store.ensure_bucket()
    where: dict[str, Any] = {"bucket": bucket, "emulator_host": gcs.url, "node_secret": NODE}
    gateway_port = free_port()  # where the master's try-it reaches the node's gateway
    master = start_master(
        workdir,
        MasterSpec(
            admin_token=ADMIN,
            read_token=READ,
            catalog_s=0.5,
            extra_env={"MODELSYNC_GATEWAY_PORT": str(gateway_port)},
            **where,
        ),
    )
    url: str = master.url  # type: ignore[attr-defined]
    beats = {"MODELSYNC_HEARTBEAT_S": "1", "MODELSYNC_TELEMETRY_S": "1"}
    opts: dict[str, Any] = {
        "name": "node-1",
        "poll_s": 0.5,
        "gateway": True,
        "gateway_port": gateway_port,
        "extra_env": beats,
    }
    node = Node(workdir / "node", master_url=url, **opts, **where)
    try:
        node.start()
        assert node.gateway_url is not None
        publish(store, model_factory(2.0), "demo")  # y = 2x + 1
        wait_for(lambda: serving(url, "demo", 1), 120, "demo v1 AVAILABLE on node-1")
        wait_for(lambda: gateway_live(url), 60, "node-1's gateway live at the master")
        # the real gateway's, puller's and config manager's reports pass the master's checks
        events = api(url, "GET", "/v1/events?node=node-1&limit=1000")[1]["events"]
        assert not [e for e in events if e["event"] == "report_dropped"], events
        yield GatewayCluster(url, store, node.gateway_url, model_factory, node.grpc_port)
    finally:
        node.stop()
        master.stop()


def no_js_errors(browser: Chrome, allowed: str | None = None) -> None:
    errors = [e for e in harness.js_errors(browser) if not (allowed and allowed in e)]
    assert errors == []


def text(browser: Chrome, css: str) -> str:
    return str(js(browser, GET, css, None) or "")


def attr(browser: Chrome, css: str, name: str) -> str | None:
    value = js(browser, GET, css, name)
    return None if value is None else str(value)


def try_once(browser: Chrome, body: str | None) -> str:
    """Choose node-1, type ``body`` (None: keep the prefilled one), send; the result's state."""
    harness.wait_for(browser, present('#try-node option[value="node-1"]'))
    Select(browser.find_element(By.ID, "try-node")).select_by_value("node-1")
    if body is not None:  # select all, type over it
        browser.find_element(By.ID, "try-body").send_keys(Keys.CONTROL, "a", Keys.NULL, body)
    js(browser, "document.querySelector('#try-result').dataset.state = 'before'")
    browser.find_element(By.ID, "try-send").click()

    def answered(d: Chrome) -> str | None:
        state = attr(d, "#try-result", "data-state")
        return state if state not in ("before", "pending") else None

    return str(harness.wait_for(browser, answered))


def test_try_it_sends_one_request_through_the_gateway(
    browser: Chrome, cluster: GatewayCluster
) -> None:
    sign_in(browser, cluster.url, ADMIN, "/models/demo")
    # the signature of the version serving now, and the body prefilled from its example
    harness.wait_for(browser, present('#try-signature tr[data-tensor="x"][data-kind="input"]'))
    row = text(browser, '#try-signature tr[data-tensor="x"]')
    assert "float32" in row and "[?]" in row, row
    assert "y" in text(browser, '#try-signature tr[data-kind="output"]')
    prefilled = json.loads(str(browser.find_element(By.ID, "try-body").get_property("value")))
    assert prefilled == {"inputs": {"x": [0.0]}}
    assert try_once(browser, None) == "ok"  # the prefilled body as it is
    assert json.loads(text(browser, "#try-answer")) == {"predictions": [1.0]}

    assert try_once(browser, '{"inputs": {"x": [1.0, 2.0]}}') == "ok"
    assert json.loads(text(browser, "#try-answer")) == {"predictions": [3.0, 5.0]}
    assert "HTTP 200" in text(browser, "#try-status")
    assert attr(browser, "#try-answered-version", "data-version") == "1"
    assert "v1" in text(browser, "#try-answered-version")
    assert float(attr(browser, "#try-latency", "data-ms") or 0) > 0
    assert text(browser, "#try-latency").endswith(" ms")
    js(browser, "document.querySelector('#tryit').scrollIntoView()")
    harness.screenshot(browser, "console-tryit")

    # bad JSON: a clear message, and no request at all
    sent = cluster.gateway_history()
    assert try_once(browser, '{"inputs": {"x": [1.0,') == "invalid"
    assert "The body is not valid JSON" in text(browser, "#try-result")
    assert "Nothing was sent" in text(browser, "#try-result")
    assert try_once(browser, "[1, 2]") == "invalid"
    assert "must be a JSON object" in text(browser, "#try-result")
    time.sleep(1.5)
    assert cluster.gateway_history() == sent
    no_js_errors(browser)


def test_recent_requests_list_what_the_gateways_answered(
    browser: Chrome, cluster: GatewayCluster
) -> None:
    for x in (1.0, 4.0, 6.0):
        assert cluster.invoke([x]) == {"predictions": [2 * x + 1]}
    wait_for(lambda: len(cluster.recent()) >= 3, 30, "three requests in the gateway's heartbeat")
    sign_in(browser, cluster.url, READ, "/models/demo")
    harness.wait_for(browser, lambda d: len(node_rows(d)) >= 3)
    first = text(browser, '#requests tbody tr[data-node="node-1"]')  # the newest
    assert "node-1" in first and "mlflow" in first and "200" in first and "v1" in first, first
    assert " ms" in first
    per_node = '#requests-nodes .per-node[data-node="node-1"]'
    summary = text(browser, per_node)
    assert "requests" in summary and "p99" in summary, summary
    # refreshed with the page: one more request shows up without a reload
    count = int(attr(browser, per_node, "data-count") or 0)
    assert count >= 3
    assert cluster.invoke([9.0]) == {"predictions": [19.0]}
    harness.wait_for(
        browser, lambda d: int(attr(d, per_node, "data-count") or 0) > count, timeout_s=30
    )
    no_js_errors(browser)
    # the gateway's report with its recent requests passed the master's checks whole
    events = api(cluster.url, "GET", "/v1/events?node=node-1&limit=1000")[1]["events"]
    assert not [e for e in events if e["event"] == "report_dropped"], events


def test_read_token_may_try_but_has_no_rollout_controls(
    browser: Chrome, cluster: GatewayCluster
) -> None:
    sign_in(browser, cluster.url, READ, "/models/demo")
    harness.wait_for(browser, lambda d: rendered(d) and attr(d, "#rollout-status", "data-status"))
    assert browser.find_element(By.ID, "rollout").is_displayed()  # the panel is there to read
    assert browser.find_elements(By.CSS_SELECTOR, ROLLOUT_CONTROLS) == []
    anything = "#rollout button, #rollout form, #rollout input, .act-unreject"
    assert browser.find_elements(By.CSS_SELECTOR, anything) == []
    harness.screenshot(browser, "console-model-rollout-read-only")
    assert browser.find_element(By.ID, "try-form").is_displayed()
    assert try_once(browser, '{"inputs": {"x": [3.0]}}') == "ok"  # reads may try
    assert json.loads(text(browser, "#try-answer")) == {"predictions": [7.0]}
    no_js_errors(browser)


def node_rows(browser: Chrome) -> list[Any]:
    return list(browser.find_elements(By.CSS_SELECTOR, '#requests tr[data-node="node-1"]'))


def rollout_status(cluster: GatewayCluster, status: str) -> Any:
    return wait_for(
        lambda: (r := cluster.rollout())["status"] == status and r, 90, f"demo's rollout {status}"
    )


def press(browser: Chrome, button: str, done: str) -> str:
    """Press a rollout button (an id, or a CSS selector), accept its confirm; the result box's
    state once it says ``done``."""
    click(browser, button if button[0] in ".#" else "#" + button)
    assert confirm(browser)

    def shown(d: Chrome) -> str | None:
        state = attr(d, "#rollout-result", "data-state")
        return state if state != "pending" and done in text(d, "#rollout-result") else None

    return str(harness.wait_for(browser, shown, timeout_s=30))


def shows_status(status: str) -> Callable[[Chrome], bool]:
    return lambda d: attr(d, "#rollout-status", "data-status") == status


def test_staged_rollout_from_the_panel(browser: Chrome, cluster: GatewayCluster) -> None:
    # the label `stable` keeps v1 beside the new version on the node: the baseline's traffic
    assert api(cluster.url, "PUT", "/v1/models/demo/labels/stable", ADMIN, {"version": 1})[0] == 200
    spec = {"canary_nodes": 1, "waves": [1.0], "bake_s": 3600, "min_requests": 100}
    spec |= {"warmup_s": 0, "max_p99_ratio": 5}  # a loaded test machine: latency is not the point
    assert api(cluster.url, "PUT", "/v1/models/demo/rollout", ADMIN, spec)[0] == 200
    rollout_status(cluster, "complete")  # v1 adopted as the stable version
    publish(cluster.store, cluster.model_factory(3.0), "demo")
    sign_in(browser, cluster.url, ADMIN, "/models/demo")
    # with one node the canary is the whole fleet: validating, then baking on node-1
    harness.wait_for(browser, shows_status("baking"), timeout_s=120)
    assert text(browser, "#rollout-status") == "baking"
    statuses = [h["status"] for h in cluster.rollout()["history"]]
    assert statuses[-2:] == ["validating", "baking"], statuses
    history = browser.find_element(By.ID, "rollout-history").text
    assert "validating" in history and "baking" in history and "v2 published" in history
    assert "v2" in text(browser, "#rollout-versions") and "v1" in text(browser, "#rollout-versions")
    assert attr(browser, "#rollout-stages", "data-stage") == "0"
    assert attr(browser, "#rollout-stages", "data-stages") == "2"
    assert attr(browser, '#rollout-stages .stage[data-stage="0"]', "data-state") == "current"
    assert attr(browser, '#rollout-stages .stage[data-stage="1"]', "data-state") == "todo"
    assert "canary" in text(browser, '#rollout-stages .stage[data-stage="0"]')
    assert text(browser, "#rollout-nodes-text") == "1 of 1 live serving node on v2"
    assert not re.search(r"\bnull\b|undefined|\[object", text(browser, "#rollout"))
    assert "baking 3600 s" in text(browser, "#rollout-reason")
    # the countdown ticks every second
    left = int(attr(browser, "#rollout-countdown", "data-remaining") or 0)
    assert 3500 < left <= 3600, left
    assert "left of 1:00:00" in text(browser, "#rollout-countdown")
    harness.wait_for(
        browser,
        lambda d: int(attr(d, "#rollout-countdown", "data-remaining") or 0) <= left - 2,
        timeout_s=10,
    )
    # no request of v2 yet: the stage waits for traffic, and says so
    harness.wait_for(browser, present("#rollout-waiting"), timeout_s=30)
    waiting = text(browser, "#rollout-waiting")
    assert waiting.startswith("waiting for traffic: 0 of 100 requests"), waiting
    assert "the stage holds; paused 14,400 s after it began baking" in waiting
    assert attr(browser, "#rollout-judged", "data-verdict") == "waiting"
    assert text(browser, "#rollout-source") == "no figures"  # not one request yet
    assert not re.search(r"null|undefined|\[object|NaN", text(browser, "#rollout-figures"))
    js(browser, "document.querySelector('#rollout').scrollIntoView()")
    harness.screenshot(browser, "console-rollout-waiting")
    # traffic: name-only requests reach v2, the label's reach v1; 8 % are the clients' mistakes
    cluster.predict(400, labelled=0.4, bad=0.08)
    harness.wait_for(
        browser, lambda d: attr(d, "#rollout-judged", "data-verdict") == "healthy", timeout_s=60
    )
    assert not browser.find_elements(By.ID, "rollout-waiting")
    assert text(browser, "#rollout-source") == "versions"  # the server's per-version figures
    counts = browser.find_element(By.ID, "rollout-counts")
    assert int(counts.get_attribute("data-new") or 0) >= 100
    assert int(counts.get_attribute("data-baseline") or 0) >= 100
    assert "requests (100 needed) against" in counts.text and counts.text.startswith("v2: ")
    # the new version against the baseline, side by side, by status class and latency
    figures = browser.find_element(By.ID, "rollout-figures")
    assert figures.is_displayed()
    for row in ("Requests", "Server errors", "Client errors", "p50", "p99"):
        assert row in figures.text, row
    assert "v2" in text(browser, '#rollout-figures th[data-side="new"]')
    assert "v1" in text(browser, '#rollout-figures th[data-side="baseline"]')
    client = text(browser, '#rollout-figures tr[data-row="client_errors"] td[data-side="new"]')
    assert "%" in client and not client.startswith("0 ")  # the mistakes show on both sides
    checks = browser.find_elements(By.CSS_SELECTOR, "#rollout-checks li")
    assert [c.get_attribute("data-check") for c in checks] == [
        "server_errors",
        "client_errors",
        "latency",
    ]
    assert {c.get_attribute("data-verdict") for c in checks} <= {"pass"}
    assert "Newcombe" in text(browser, "#rollout-limits")
    assert not re.search(r"null|undefined|\[object|NaN", text(browser, "#rollout"))
    browser.set_window_size(1400, 1500)
    js(browser, "document.querySelector('#rollout').scrollIntoView()")
    shot = harness.screenshot(browser, "console-rollout")
    browser.set_window_size(1400, 900)
    if os.environ.get("MODELSYNC_UPDATE_DOCS"):
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(shot, DOCS / "console-rollout.png")

    assert press(browser, "ro-pause", "paused") == "ok"
    assert cluster.rollout()["status"] == "paused"
    harness.wait_for(browser, shows_status("paused"))
    assert "paused while baking" in text(browser, "#rollout-countdown")
    assert press(browser, "ro-resume", "resumed") == "ok"
    assert cluster.rollout()["status"] == "baking"
    harness.wait_for(browser, shows_status("baking"))
    assert press(browser, "ro-abort", "aborted") == "ok"
    r = rollout_status(cluster, "rolled_back")
    assert r["rejected"] == [2] and r["reason"] == "aborted by an operator"
    harness.wait_for(browser, shows_status("rolled_back"))
    assert text(browser, "#rollout-status") == "rolled back"
    assert attr(browser, '#rollout-stages .stage[data-stage="0"]', "data-state") == "failed"
    harness.wait_for(browser, present('#rollout-rejected .rejected[data-version="2"]'))

    # a refused action shows the API's error text (the button is off: force it on)
    js(browser, "document.querySelector('#ro-pause').disabled = false")
    assert press(browser, "ro-pause", "failed") == "err"
    result = text(browser, "#rollout-result")
    assert "no rollout under way" in result and "HTTP 409" in result, result
    no_js_errors(browser, allowed="409")

    # clear the rejection from the UI
    assert press(browser, '.act-unreject[data-version="2"]', "no longer rejected") == "ok"
    wait_for(lambda: cluster.rollout()["rejected"] == [], 30, "v2 no longer rejected")
    harness.wait_for(browser, lambda d: not d.find_elements(By.CSS_SELECTOR, ".act-unreject"))

    # the spec form: its empty fields show the API's defaults (spec_defaults, one home)
    defaults = cluster.rollout()["spec_defaults"]
    assert float(attr(browser, "#ro-bake", "placeholder") or "nan") == defaults["bake_s"]
    waves = str(attr(browser, "#ro-waves", "placeholder")).split(",")
    assert [float(w) for w in waves] == defaults["waves"]
    assert attr(browser, "#ro-warmup", "placeholder") == "bake/10"  # derived from the bake
    assert attr(browser, "#ro-max-client", "placeholder") == "0.05"
    # set another spec, then remove it
    form = {"ro-canary": "1", "ro-waves": "0.5, 1", "ro-bake": "60"}
    form |= {"ro-max-error": "0.05", "ro-max-p99": "2", "ro-min-requests": "10"}
    form |= {"ro-max-client": "0.1", "ro-warmup": "5", "ro-max-wait": "600"}
    for field, value in form.items():  # select all, type over it (the field keeps the focus)
        browser.find_element(By.ID, field).send_keys(Keys.CONTROL, "a", Keys.NULL, value)
    Select(browser.find_element(By.ID, "ro-on-insufficient")).select_by_value("promote")
    assert press(browser, "ro-spec-save", "set") == "ok"
    got = cluster.rollout()
    assert got["spec_from"] == "model"
    want = {"canary_nodes": 1, "waves": [0.5, 1.0], "bake_s": 60.0, "max_error_rate": 0.05}
    want |= {"max_client_error_increase": 0.1, "warmup_s": 5.0, "max_wait_s": 600.0}
    want |= {"max_p99_ratio": 2.0, "min_requests": 10, "on_insufficient": "promote"}
    assert got["spec"] == want
    harness.wait_for(browser, lambda d: "waves 50 %, 100 %" in text(d, "#rollout-spec"))
    assert press(browser, "ro-spec-remove", "removed") == "ok"
    got = cluster.rollout()
    assert got["spec"] is None and got["spec_from"] is None
    assert got["status"] == "idle"  # no spec left: the old state goes with it
    harness.wait_for(browser, lambda d: "none" in text(d, "#rollout-spec"))
    harness.wait_for(browser, present("#rollout.idle"))
    assert not browser.find_element(By.ID, "ro-abort").is_enabled()
    no_js_errors(browser)
