"""The operator console in a real headless Chromium, against a real cluster on 127.0.0.1 (GCS
emulator, the master under gunicorn, one node under a gRPC Predict load): sign in, the models
table, a model's graphs and versions, actions from the UI that change the bucket's policy, the
read-only console and CSRF, the banner over a malformed policy, and no JS errors anywhere."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import wait_for
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from modelsync.catalog import policy_object
from modelsync.dev.emulator import GCSEmulator
from modelsync.nodeauth import node_token
from modelsync.policy import Policy, dump_policy
from tests.browser import harness
from tests.browser.console_kit import (
    ACTION_IDS,
    ADMIN,
    NODE,
    PREFIX,
    READ,
    Cluster,
    action_result,
    api,
    bucket_pin,
    bucket_policy,
    cell_text,
    click,
    column,
    confirm,
    fetch,
    js,
    model_rows,
    present,
    refreshed,
    rendered,
    running_cluster,
    sign_in,
    wait_js,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DOCS = harness.REPO / "docs"


@pytest.fixture(scope="module")
def cluster(
    gcs: GCSEmulator, model_factory: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("console"), gcs, model_factory, f"console-{os.getpid()}"
    ) as c:
        yield c


def test_sign_in_once_lists_models_with_a_strict_session_cookie(
    browser: Chrome, cluster: Cluster
) -> None:
    browser.get(cluster.url + "/nodes")
    harness.wait_for(browser, lambda d: "/login" in d.current_url)  # not signed in yet
    sign_in(browser, cluster.url, ADMIN)
    harness.wait_for(browser, lambda d: "demo" in model_rows(d))
    row = 'tr[data-model="demo"]'
    harness.wait_for(browser, lambda d: "v2" in cell_text(d, row, "serving"))
    assert "v2 1/1" in cell_text(browser, row, "available")
    assert cell_text(browser, row, "targets") == "v2"
    (cookie,) = [c for c in browser.get_cookies() if c["name"] == "modelsync_session"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict", cookie
    for path, ready in (
        ("/nodes", '#nodes tr[data-node="node-1"]'),
        ("/events", "#events tr.event"),
        ("/", '#models tr[data-model="demo"]'),
    ):
        browser.get(cluster.url + path)
        harness.wait_for(browser, present(ready))
        assert "/login" not in browser.current_url
    harness.screenshot(browser, "console-signed-in")


def test_filter_box_hides_rows_that_do_not_match(browser: Chrome, cluster: Cluster) -> None:
    sign_in(browser, cluster.url, READ)
    harness.wait_for(browser, lambda d: set(model_rows(d)) == {"demo", "other"})
    box = browser.find_element(By.ID, "filter")
    box.send_keys("oth")
    harness.wait_for(browser, lambda d: model_rows(d) == ["other"])
    assert set(model_rows(browser, visible_only=False)) == {"demo", "other"}
    box.clear()
    box.send_keys("no-such-model")
    harness.wait_for(browser, lambda d: model_rows(d) == [])
    assert "No row matches" in browser.find_element(By.ID, "models").text
    harness.screenshot(browser, "console-filtered")
    box.clear()
    box.send_keys("demo")  # survives an auto-refresh (every 5 s)
    harness.wait_for(browser, lambda d: model_rows(d) == ["demo"])


def test_sort_and_column_chooser_remembered(browser: Chrome, cluster: Cluster) -> None:
    sign_in(browser, cluster.url, READ)
    harness.wait_for(browser, lambda d: model_rows(d) == ["demo", "other"])
    click(browser, '#models th[data-col="model"]')
    harness.wait_for(browser, lambda d: model_rows(d) == ["other", "demo"])
    click(browser, "#columns summary")
    click(browser, '#columns-menu input[data-col="p99"]')
    hidden = "return document.querySelector('#models th[data-col=\"p99\"]').hidden"
    harness.wait_for(browser, lambda d: js(d, hidden) is True)
    browser.refresh()
    harness.wait_for(browser, lambda d: rendered(d) and model_rows(d))
    assert js(browser, hidden) is True  # remembered in localStorage
    assert not browser.find_element(
        By.CSS_SELECTOR, '#columns-menu input[data-col="p99"]'
    ).is_selected()


def test_model_page_graphs_the_real_load_and_lists_versions(
    browser: Chrome, cluster: Cluster
) -> None:
    sign_in(browser, cluster.url, READ, "/models/demo")
    for chart in ("#chart-latency", "#chart-rate"):
        (canvas,) = harness.wait_for(browser, present(chart + " canvas"))
        assert canvas.size["width"] > 200 and canvas.size["height"] > 100
    assert wait_js(browser, "const m = window.ms.data.metrics; return m && m.total.requests") > 0
    # the chart itself holds points with requests > 0 (series 1: requests per second), waited
    # for: while all the load is in the minute under way, its rate is drawn only once that
    # minute is 10 s old (a rate over less would be noise), a refresh later
    wait_js(browser, "return window.ms.charts.rate.data[1].filter(v => v > 0).length >= 1")
    wait_js(browser, "return window.ms.charts.latency.data[2].filter(v => v > 0).length >= 1")
    harness.wait_for(
        browser, lambda d: "node-1" in cell_text(d, 'tr[data-version="2"]', "available")
    )
    assert cell_text(browser, 'tr[data-version="2"]', "target") == "target"
    assert cell_text(browser, 'tr[data-version="1"]', "complete") == "yes"
    assert cell_text(browser, 'tr[data-version="1"]', "manifest") == "verified"
    assert cell_text(browser, 'tr[data-version="1"]', "available") == "\u2014"
    # the range buttons ask for another span
    click(browser, '#range button[data-since="1h"]')
    wait_js(browser, "const m = window.ms.data.metrics; return m.until - m.since > 3000")
    # the model's log: a node event, its details expand
    harness.wait_for(browser, lambda d: "version_installed" in d.find_element(By.ID, "events").text)
    click(browser, "#events tr.event button.expand")
    detail = harness.wait_for(
        browser, lambda d: d.find_element(By.CSS_SELECTOR, "#events tr.detail pre")
    )
    assert '"model": "demo"' in detail.text
    harness.screenshot(browser, "console-model-read")


def test_pin_and_unpin_from_the_ui_change_the_bucket_policy(
    browser: Chrome, cluster: Cluster
) -> None:
    sign_in(browser, cluster.url, ADMIN, "/models/demo")
    harness.wait_for(browser, present('#pin-version option[value="1"]'))
    Select(browser.find_element(By.ID, "pin-version")).select_by_value("1")
    browser.find_element(By.ID, "act-pin").click()
    assert "v1" in confirm(browser, accept=False)  # dismissed: nothing happens
    browser.find_element(By.ID, "act-pin").click()
    confirm(browser)
    assert action_result(browser, "Pinned demo to v1") == "ok"
    assert bucket_pin(cluster) == 1
    assert cluster.get("/v1/models/demo")["policy"]["pin"] == 1
    harness.wait_for(browser, lambda d: "pinned v1" in d.find_element(By.ID, "model-badges").text)
    harness.screenshot(browser, "console-model-pinned")

    browser.find_element(By.ID, "act-unpin").click()
    confirm(browser)
    action_result(browser, "Unpinned demo")
    assert bucket_pin(cluster) is None
    assert cluster.get("/v1/models/demo")["policy"]["pin"] is None

    # an error of the API is shown on the page, and changes nothing
    keep = browser.find_element(By.ID, "keep-versions")
    # typed over, not cleared: WebDriver's clear() blurs the field, and a refresh landing
    # between clear and typing refills it (the page leaves only a focused or edited field alone)
    keep.send_keys(Keys.CONTROL, "a")
    keep.send_keys("0")
    browser.find_element(By.ID, "act-keep").click()
    confirm(browser)
    assert action_result(browser, "keep_versions") == "err"
    assert "HTTP 400" in browser.find_element(By.ID, "action-result").text
    assert cluster.get("/v1/models/demo")["policy"]["keep_versions"] == 1
    wait_for(
        lambda: cluster.get("/v1/cluster")["models"]["demo"]["target_versions"] == [2],
        30,
        "demo back on v2",
    )


def test_label_moved_and_removed_from_the_ui(browser: Chrome, cluster: Cluster) -> None:
    sign_in(browser, cluster.url, ADMIN, "/models/demo")
    harness.wait_for(browser, present('#label-version option[value="2"]'))
    browser.find_element(By.ID, "label-name").send_keys("canary")
    Select(browser.find_element(By.ID, "label-version")).select_by_value("2")
    browser.find_element(By.ID, "act-label").click()
    assert "canary" in confirm(browser)
    assert action_result(browser, "Label canary") == "ok"
    assert bucket_policy(cluster).for_model("demo").labels == {"canary": 2}
    harness.wait_for(browser, present('.act-label-remove[data-label="canary"]'))
    assert "canary" in cell_text(browser, 'tr[data-version="2"]', "version")
    click(browser, '.act-label-remove[data-label="canary"]')
    confirm(browser)
    assert action_result(browser, "Label canary removed") == "ok"
    assert bucket_policy(cluster).for_model("demo").labels == {}
    assert cluster.get("/v1/models/demo")["policy"]["labels"] == {}


def test_read_token_has_no_write_buttons_and_writes_need_csrf(
    browser: Chrome, cluster: Cluster
) -> None:
    assert api(cluster.url, "PUT", "/v1/models/demo/labels/stable", ADMIN, {"version": 2})[0] == 200
    try:
        sign_in(browser, cluster.url, ADMIN, "/models/demo")
        harness.wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".act-label-remove"))
        assert all(browser.find_elements(By.ID, i) for i in ACTION_IDS)
        forged = fetch(browser, "POST", "/v1/sync", csrf=False)
        assert forged["status"] == 403 and "CSRF" in forged["doc"]["error"], forged
        allowed = fetch(browser, "POST", "/v1/sync", csrf=True)
        assert allowed["status"] == 200 and allowed["doc"]["sync_requested_at"] > 0, allowed
        browser.find_element(By.ID, "sign-out").click()
        harness.wait_for(browser, lambda d: "/login" in d.current_url)
        assert fetch(browser, "GET", "/v1/models", csrf=False)["status"] == 401

        sign_in(browser, cluster.url, READ, "/models/demo")
        harness.wait_for(
            browser, lambda d: rendered(d) and "stable" in d.find_element(By.ID, "policy").text
        )
        for i in ACTION_IDS:
            assert browser.find_elements(By.ID, i) == [], i
        assert browser.find_elements(By.ID, "actions") == []
        assert browser.find_elements(By.CSS_SELECTOR, ".act-label-remove") == []
        assert browser.find_elements(By.CSS_SELECTOR, "main button.danger, #action-result") == []
        assert "read-only" in browser.find_element(By.CSS_SELECTOR, ".topbar").text.lower()
        refused = fetch(browser, "POST", "/v1/models/demo/pin", csrf=True, body={"version": 1})
        assert refused["status"] == 403 and "admin" in refused["doc"]["error"], refused
        harness.screenshot(browser, "console-model-read-only")
    finally:
        assert api(cluster.url, "DELETE", "/v1/models/demo/labels/stable", ADMIN)[0] == 200
    assert bucket_pin(cluster) is None


def test_malformed_policy_shows_the_banner_and_keeps_the_tables(
    browser: Chrome, cluster: Cluster
) -> None:
    name = policy_object(PREFIX)
    good = cluster.store.read(name) if cluster.store.stat(name) else dump_policy(Policy())
    sign_in(browser, cluster.url, READ)
    harness.wait_for(browser, lambda d: rendered(d) and "demo" in model_rows(d))
    banner = browser.find_element(By.ID, "banner")
    assert not banner.is_displayed()
    try:
        cluster.store.write(name, b'{"schema": 1, "models": {"demo": {"pinn": 2}}}')
        harness.wait_for(browser, lambda d: banner.is_displayed() and "pinn" in banner.text)
        assert "demo" in model_rows(browser)  # answered from the last good policy
        harness.screenshot(browser, "console-banner")
        browser.get(cluster.url + "/models/demo")
        harness.wait_for(browser, lambda d: "pinn" in d.find_element(By.ID, "banner").text)
        harness.wait_for(
            browser, lambda d: d.find_elements(By.CSS_SELECTOR, '#versions tr[data-version="2"]')
        )
    finally:
        cluster.store.write(name, good)
    harness.wait_for(browser, lambda d: not d.find_element(By.ID, "banner").is_displayed())


def test_events_page_filters_and_expands(browser: Chrome, cluster: Cluster) -> None:
    sign_in(browser, cluster.url, ADMIN, "/events")
    harness.wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#events tr.event"))
    Select(browser.find_element(By.ID, "ev-kind")).select_by_value("audit")
    harness.wait_for(browser, lambda d: (k := column(d, 2)) and set(k) == {"audit"})
    harness.wait_for(browser, lambda d: "console_signed_in" in d.find_element(By.ID, "events").text)
    browser.find_element(By.ID, "ev-node").send_keys("node-1")
    Select(browser.find_element(By.ID, "ev-kind")).select_by_value("node")
    harness.wait_for(browser, lambda d: (n := column(d, 3)) and set(n) == {"node-1"})
    click(browser, "#events tr.event button.expand")
    harness.wait_for(
        browser,
        lambda d: (
            '"node": "node-1"' in d.find_element(By.CSS_SELECTOR, "#events tr.detail pre").text
        ),
    )


def test_untrusted_text_stays_text_and_stale_nodes_stand_out(
    browser: Chrome, cluster: Cluster
) -> None:
    """A node's report and events are checked at the master and shown as text (never parsed
    as HTML): a markup hostname and model name are dropped (one report_dropped event says so,
    as text), an event's markup detail is shown as text; a node that stops sending
    heartbeats is marked stale (class, color and the word)."""
    html = '<img src=x onerror="window.pwned=1">'
    beat = {
        "node_id": "node-9",
        "role": "puller",
        "hostname": "<b>bold</b>",
        "heartbeat_s": 0.5,
        "status": {
            "installed": {"demo": [2], html: [1]},
            "disk_free_bytes": 1234,
            "last_poll_ok": False,
        },
        "events": [{"event": "download_failed", "error": html}],
    }
    token = node_token(NODE, "node-9")
    assert api(cluster.url, "POST", "/v1/nodes/heartbeat", token, beat)[0] == 200
    sign_in(browser, cluster.url, READ, "/events")
    harness.wait_for(browser, lambda d: html in d.find_element(By.ID, "events").text)
    harness.wait_for(browser, lambda d: "report_dropped" in d.find_element(By.ID, "events").text)
    click(browser, "#events tr.event[data-id] button.expand")
    harness.wait_for(browser, present("#events tr.detail pre"))
    browser.get(cluster.url + "/nodes")
    row = harness.wait_for(browser, present('#nodes tr.stale[data-node="node-9"]'))[0]
    assert "stale" in row.text and "missing" in row.text
    assert "bold" not in row.text and "img" not in row.text  # dropped at the master
    color = row.find_element(By.CSS_SELECTOR, ".state-stale").value_of_css_property("color")
    assert color != browser.find_element(By.TAG_NAME, "body").value_of_css_property("color")
    assert js(browser, "return window.pwned") is None
    assert browser.find_elements(By.CSS_SELECTOR, "main img, main b") == []
    assert [m["model"] for m in cluster.get("/v1/models")["models"] if "<" in m["model"]] == []
    harness.screenshot(browser, "console-nodes-stale")


def test_xss_probes_are_text_under_a_strict_policy(browser: Chrome, cluster: Cluster) -> None:
    """A markup model name in the path (signed in or not) is answered escaped, with the
    security headers; the console's pages run under a CSP that allows no inline script, and
    an injected inline script does not run."""
    probe = "/models/%3Cimg%20src=x%20onerror=window.pwned=1%3E"
    browser.get(cluster.url + probe)  # not signed in: the 404 page, escaped
    harness.wait_for(browser, lambda d: d.find_element(By.ID, "error-message"))
    assert "<img src=x onerror=window.pwned=1>" in browser.find_element(By.ID, "error-message").text
    assert browser.find_elements(By.CSS_SELECTOR, "main img") == []
    assert js(browser, "return window.pwned") is None
    sign_in(browser, cluster.url, ADMIN)
    browser.get(cluster.url + probe)
    harness.wait_for(browser, lambda d: d.find_element(By.ID, "error-message"))
    assert js(browser, "return window.pwned") is None
    browser.get(cluster.url + "/")
    harness.wait_for(browser, rendered)
    harness.js_errors(browser)  # empty the log
    # an inline script, as an injection would add it: the CSP refuses to run it
    js(
        browser,
        "const s = document.createElement('script');"
        "s.textContent = 'window.inline = 1'; document.body.append(s);",
    )
    harness.wait_for(
        browser, lambda d: any("Content Security Policy" in e for e in harness.js_errors(d))
    )
    assert js(browser, "return window.inline") is None


PAGES = (  # path, name, what shows that its data is there
    (
        "/",
        "models",
        "return [...document.querySelectorAll('.trend')].some(t => t.dataset.total > 0)",
    ),
    ("/models/demo", "model", "return !!(window.ms.charts && window.ms.charts.rate)"),
    ("/nodes", "nodes", "return !!document.querySelector('#nodes tr[data-node]')"),
    ("/events", "events", "return !!document.querySelector('#events tr.event')"),
)


def test_no_js_errors_on_any_page(browser: Chrome, cluster: Cluster) -> None:
    browser.get(cluster.url + "/login")
    harness.wait_for(browser, lambda d: d.find_element(By.ID, "token"))
    harness.screenshot(browser, "console-login")
    assert harness.js_errors(browser) == []
    sign_in(browser, cluster.url, ADMIN)
    shots = {}
    for path, name, ready in PAGES:
        browser.get(cluster.url + path)
        harness.wait_for(browser, rendered)
        wait_js(browser, ready)
        refreshed(browser)  # one more refresh too, then the console must be clean
        shots[name] = harness.screenshot(browser, f"console-{name}")
        if name == "model":  # the whole page, graphs to log, for the docs
            browser.set_window_size(1400, 1350)
            shots[name] = harness.screenshot(browser, "console-model-full")
            browser.set_window_size(1400, 900)
        assert harness.js_errors(browser) == [], path
    if os.environ.get("MODELSYNC_UPDATE_DOCS"):  # make the README's pictures again
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(shots["models"], DOCS / "console.png")
        shutil.copyfile(shots["model"], DOCS / "console-model.png")
