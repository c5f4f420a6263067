"""The console's second day (issue #20, parts 2 and 3), in a real headless Chromium against a
real cluster (GCS emulator, the master under gunicorn, one node with its gateway, a Predict
load). Every screen: every page the navigation links to (found at run time, so a new page is
checked too) and a model's page, at 375, 768 and 1400 px wide — a screenshot of each, and the
test fails on a horizontal overflow of the page, on sibling cards or controls whose boxes
intersect, or on a sign-out button out of reach. The registry: who published each version, its
notes edited from the page, a model added with the upload form (its progress shown), who did
what in the event log. The models table's rollout badges, start/stop and copy-id buttons and a
sparkline without the minute under way; every role a node reports on the nodes page; a
container model's badges and its stop and start."""

from __future__ import annotations

import getpass
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from modelsync.annotations import parse_annotations
from modelsync.catalog import annotations_object, policy_object
from modelsync.container import Descriptor
from modelsync.dev.emulator import GCSEmulator
from modelsync.policy import dump_policy, parse_policy
from modelsync.publish import publish_image
from modelsync.rollout import RolloutState
from tests.browser import harness
from tests.browser.console_kit import (
    ADMIN,
    PREFIX,
    Cluster,
    action_result,
    api,
    bucket_policy,
    click,
    column,
    confirm,
    js,
    present,
    rendered,
    running_cluster,
    sign_in,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
DOCS = harness.REPO / "docs"
WIDTHS = (375, 768, 1400)
HEIGHT = 900

# Boxes that must not intersect their siblings: cards, controls, headings, figures, badges,
# charts. Inside a table cell or a legend the table's own layout rules (and it scrolls).
LAYOUT_CHECK = """
const SEL = [".card", "button", "input", "select", "textarea", "summary", "a", ".badge",
  ".figure", "h1", "h2", "h3", ".seg", ".role", "label", ".chart", ".uplot", ".spark",
  ".toolbar > *", ".page-head > *", ".card > header > *", ".topbar > *", "nav > *",
  ".stage", "progress", "p"].join(", ");
const visible = (e) => {
  const r = e.getBoundingClientRect();
  const s = getComputedStyle(e);
  return r.width > 0 && r.height > 0 && s.visibility !== "hidden" && s.display !== "none";
};
const cls = (e) => (typeof e.className === "string" && e.className.trim()
  ? "." + e.className.trim().split(/\\s+/).join(".") : "");
const name = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + cls(e) +
  (e.textContent ? " \\"" + e.textContent.trim().slice(0, 30) + "\\"" : "");
const els = [...new Set(document.querySelectorAll(SEL))].filter(visible)
  .filter((e) => !e.closest("td, th, .u-legend, .menu, .chooser[open] .menu, datalist, svg"));
const groups = new Map();
for (const e of els) {
  const p = e.parentElement;
  if (!groups.has(p)) groups.set(p, []);
  groups.get(p).push(e);
}
const overlaps = [];
for (const kids of groups.values()) {
  for (let i = 0; i < kids.length; i++) {
    for (let j = i + 1; j < kids.length; j++) {
      const a = kids[i].getBoundingClientRect(), b = kids[j].getBoundingClientRect();
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (w > 1 && h > 1) overlaps.push(name(kids[i]) + " overlaps " + name(kids[j]));
    }
  }
}
const doc = document.documentElement;
const out = document.getElementById("sign-out");
const r = out ? out.getBoundingClientRect() : null;
return {
  overlaps,
  scrollWidth: doc.scrollWidth,
  innerWidth: window.innerWidth,
  signOut: r ? {left: r.left, right: r.right, top: r.top, bottom: r.bottom,
                visible: visible(out)} : null,
  tables: [...document.querySelectorAll(".table-wrap")].filter(visible).map((w) => ({
    id: (w.querySelector("table") || {}).id || "", overflowX: getComputedStyle(w).overflowX,
    right: w.getBoundingClientRect().right})),
};
"""


@pytest.fixture(scope="module")
def cluster(
    gcs: GCSEmulator, model_factory: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    with running_cluster(
        tmp_path_factory.mktemp("screens"),
        gcs,
        model_factory,
        f"screens-{os.getpid()}",
        gateway=True,
    ) as c:
        yield c


CHARTS_DRAWN = "return !!(window.ms.charts && window.ms.charts.rate)"
CHART_FITS = (
    "const c = window.ms.charts.rate;"
    "return Math.abs(c.width - document.querySelector('#chart-rate').clientWidth) <= 2"
)


def set_width(driver: Chrome, width: int) -> None:
    driver.execute_cdp_cmd(  # type: ignore[no-untyped-call]
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": width < 800},
    )


def nav_pages(driver: Chrome) -> list[str]:
    """Every page the navigation links to, and the first model's page."""
    links = js(
        driver,
        "return [...document.querySelectorAll('nav a[href]')].map(a => a.getAttribute('href'))",
    )
    model = harness.wait_for(
        driver,
        lambda d: js(
            d,
            "const a = document.querySelector('#models a.model-link');"
            "return a ? a.getAttribute('href') : null",
        ),
    )
    return [*dict.fromkeys([*links, model])]


def layout_problems(driver: Chrome, width: int, where: str) -> list[str]:
    """What is wrong with the page at ``width`` (the screen's: a phone's browser widens its
    layout viewport, and so ``innerWidth``, to content that overflows)."""
    found: dict[str, Any] = js(driver, LAYOUT_CHECK)
    widest = min(width, found["innerWidth"])
    problems = []
    if found["scrollWidth"] > widest:
        problems.append(f"the page scrolls sideways ({found['scrollWidth']} > {widest} px)")
    problems += found["overlaps"][:10]
    out = found["signOut"]
    if out is None or not out["visible"]:
        problems.append("no sign-out button")
    elif out["left"] < 0 or out["right"] > widest or out["top"] < 0:
        problems.append(f"sign-out out of reach: {out}")
    for table in found["tables"]:
        if table["right"] > widest + 1 or table["overflowX"] not in ("auto", "scroll"):
            problems.append(f"table {table}")
    return [f"{where}: {p}" for p in problems]


def test_every_page_at_every_width_has_no_overlap_and_no_sideways_scroll(
    browser: Chrome, cluster: Cluster
) -> None:
    sign_in(browser, cluster.url, ADMIN)
    harness.wait_for(browser, rendered)
    pages = nav_pages(browser)
    assert {"/", "/nodes", "/events"} <= set(pages) and any(p.startswith("/models/") for p in pages)
    shots: dict[tuple[str, int], Path] = {}
    problems: list[str] = []
    for width in WIDTHS:
        set_width(browser, width)
        for path in pages:
            browser.get(cluster.url + path)
            harness.wait_for(browser, rendered)
            if path.startswith("/models/"):  # the charts drawn at this width
                harness.wait_for(
                    browser, lambda d: js(d, "return !!(window.ms.charts && window.ms.charts.rate)")
                )
                chart = js(
                    browser,
                    "return [window.ms.charts.rate.width, "
                    "document.querySelector('#chart-rate').clientWidth]",
                )
                if abs(chart[0] - chart[1]) > 2:
                    problems.append(f"{path} at {width}: chart {chart[0]} px in {chart[1]} px")
            name = "models" if path == "/" else path.strip("/").replace("/", "-")
            problems += layout_problems(browser, width, f"{path} at {width} px")
            shots[(name, width)] = harness.screenshot(browser, f"screen-{name}-{width}")
    assert problems == [], "\n".join(problems)
    # the charts follow a resize of the window (no reload)
    browser.get(cluster.url + next(p for p in pages if p.startswith("/models/")))
    harness.wait_for(
        browser, lambda d: js(d, "return !!(window.ms.charts && window.ms.charts.rate)")
    )
    set_width(browser, 1400)
    harness.wait_for(
        browser,
        lambda d: js(
            d,
            "const c = window.ms.charts.rate;"
            "return Math.abs(c.width - document.querySelector('#chart-rate').clientWidth) <= 2",
        ),
    )
    assert harness.js_errors(browser) == []
    if os.environ.get("MODELSYNC_UPDATE_DOCS"):
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(shots[("models", 375)], DOCS / "console-phone.png")


def test_the_phone_menu_keeps_every_page_and_sign_out_reachable(
    browser: Chrome, cluster: Cluster
) -> None:
    set_width(browser, 375)
    sign_in(browser, cluster.url, ADMIN, "/nodes")
    harness.wait_for(browser, rendered)
    for link in browser.find_elements(By.CSS_SELECTOR, "nav a[href]"):
        assert link.is_displayed(), link.text
    browser.find_element(By.ID, "sign-out").click()
    harness.wait_for(browser, lambda d: "/login" in d.current_url)


def test_versions_show_who_published_and_notes_are_edited_in_place(
    browser: Chrome, cluster: Cluster
) -> None:
    sign_in(browser, cluster.url, ADMIN, "/models/demo")
    row = '#versions tr[data-version="2"]'
    harness.wait_for(browser, present(row + ' td[data-col="publisher"] .publisher'))
    assert getpass.getuser() in cell(browser, row, "publisher")
    click(browser, row + " button.edit-notes")
    box = harness.wait_for(browser, present(row + " textarea.note-description"))[0]
    box.send_keys("the one that serves")
    tags = browser.find_element(By.CSS_SELECTOR, row + " input.note-tags")
    tags.send_keys("owner=ana, stage=prod")
    browser.find_element(By.CSS_SELECTOR, row + " button.save-notes").click()
    assert "v2" in confirm(browser)
    assert action_result(browser, "notes saved by admin") == "ok"
    note = parse_annotations(cluster.store.read(annotations_object(PREFIX))).get("demo", 2)
    assert note is not None and note.tags == {"owner": "ana", "stage": "prod"}
    assert note.description == "the one that serves" and note.by == "admin"
    harness.wait_for(browser, lambda d: "edited by admin" in cell(d, row, "notes"))
    assert "owner=ana" in cell(browser, row, "notes")
    harness.screenshot(browser, "console-versions-notes")


def test_a_model_is_added_from_the_console_with_its_progress(
    browser: Chrome, cluster: Cluster, model_factory: Callable[..., Path], tmp_path: Path
) -> None:
    archive = tmp_path / "model.tar.gz"
    src = model_factory(7.0)
    with tarfile.open(archive, "w:gz") as tar:
        for p in sorted(src.rglob("*")):
            tar.add(p, arcname=str(p.relative_to(src)), recursive=False)
    sign_in(browser, cluster.url, ADMIN)
    harness.wait_for(browser, rendered)
    click(browser, "#add-open")
    browser.find_element(By.ID, "add-name").send_keys("added")
    assert "--model added" in browser.find_element(By.ID, "add-cli").text  # the CLI hint
    browser.find_element(By.ID, "add-file").send_keys(str(archive))
    browser.find_element(By.ID, "add-description").send_keys("added from the console")
    browser.find_element(By.ID, "add-tags").send_keys("team=search")
    browser.find_element(By.ID, "add-send").click()
    states = set()

    def finished(d: Chrome) -> str | None:
        box = d.find_element(By.ID, "add-result")
        states.add(box.text.split(":")[0])
        state = box.get_attribute("data-state")
        return str(state) if state in ("ok", "err") else None

    assert harness.wait_for(browser, finished, timeout_s=120) == "ok", states
    text = browser.find_element(By.ID, "add-result").text
    assert text.startswith("Published gs://") and "version 1" in text, text
    assert float(browser.find_element(By.ID, "add-progress").get_attribute("value") or 0) == 1.0
    assert cluster.store.stat(f"{PREFIX}/added/1/model.tar.gz") is not None
    harness.screenshot(browser, "console-add-model")
    doc = cluster.get("/v1/models/added")
    assert doc["versions"]["1"]["publisher"]["user"] == "admin"
    assert doc["versions"]["1"]["tags"] == {"team": "search"}
    # what modelsync publish refuses, the form shows refused
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not a tarball")
    browser.find_element(By.ID, "add-file").send_keys(str(junk))
    browser.find_element(By.ID, "add-send").click()
    assert harness.wait_for(browser, finished, timeout_s=60) == "err"
    assert "Refused" in browser.find_element(By.ID, "add-result").text


def test_models_table_badges_row_buttons_and_a_sparkline_without_the_minute_under_way(
    browser: Chrome, cluster: Cluster
) -> None:
    name = policy_object(PREFIX)
    good = cluster.store.read(name)
    policy = bucket_policy(cluster)
    state = RolloutState(1, None, "rolled_back", reason="p99 4.2 ms over 1.5 x the baseline's")
    mp = replace(policy.for_model("other"), rollout_state=state)
    cluster.store.write(name, dump_policy(policy.with_model("other", mp)))
    try:
        sign_in(browser, cluster.url, ADMIN)
        row = '#models tr[data-model="other"]'
        harness.wait_for(browser, lambda d: "rolled back v1" in cell(d, row, "state"))
        # the sparkline: every complete minute, never the one under way
        spark = js(browser, "return window.ms.data.sparklines")
        points = int(
            js(
                browser,
                "return document.querySelector('tr[data-model=\"demo\"] .trend').dataset.points",
            )
        )
        assert points == len(spark["minutes"]) - (spark["partial"] is not None)
        # copy the model's id
        click(browser, row + " button.copy-id")
        harness.wait_for(
            browser,
            lambda d: (
                js(
                    d,
                    "return document.querySelector("
                    "'tr[data-model=\"other\"] button.copy-id').dataset.copied",
                )
                == "other"
            ),
        )
        # stop, then start, from its row
        click(browser, row + " button.toggle-serving")
        assert "Stop other" in confirm(browser)
        harness.wait_for(
            browser, lambda d: "stopped" in d.find_element(By.ID, "models-result").text
        )
        assert bucket_policy(cluster).for_model("other").disabled is True
        harness.wait_for(browser, lambda d: cell(d, row, "actions").startswith("start"))
        harness.screenshot(browser, "console-models-stopped")
        click(browser, row + " button.toggle-serving")
        assert "Start other" in confirm(browser)
        harness.wait_for(
            browser, lambda d: "started" in d.find_element(By.ID, "models-result").text
        )
        assert bucket_policy(cluster).for_model("other").disabled is False
    finally:
        current = parse_policy(cluster.store.read(name))
        restored = parse_policy(good)
        cluster.store.write(name, dump_policy(restored if current != restored else current))


def test_nodes_list_every_role_and_the_log_names_who(browser: Chrome, cluster: Cluster) -> None:
    sign_in(browser, cluster.url, ADMIN, "/nodes")
    row = '#nodes tr[data-node="node-1"]'
    for role in ("puller", "config_manager", "gateway"):
        line = harness.wait_for(browser, present(f'{row} .role-line[data-role="{role}"]'))[0]
        assert "live" in line.text, line.text
    browser.get(cluster.url + "/events")
    harness.wait_for(browser, present("#events tr.event"))
    Select(browser.find_element(By.ID, "ev-kind")).select_by_value("audit")
    harness.wait_for(browser, lambda d: (a := column(d, 5)) and set(a) == {"admin"})


def cell(driver: Chrome, row: str, col: str) -> str:
    text = js(
        driver,
        "const c = document.querySelector(arguments[0] + ' td[data-col=\"' + "
        "arguments[1] + '\"]'); return c ? c.textContent : '';",
        row,
        col,
    )
    return str(text)


def result_text(driver: Chrome) -> str:
    return str(driver.find_element(By.ID, "models-result").text)


def test_the_pin_confirmation_tells_the_truth_when_a_label_keeps_a_version(
    browser: Chrome, cluster: Cluster
) -> None:
    assert api(cluster.url, "PUT", "/v1/models/demo/labels/stable", ADMIN, {"version": 2})[0] == 200
    try:
        sign_in(browser, cluster.url, ADMIN, "/models/demo")
        harness.wait_for(browser, present('#pin-version option[value="1"]'))
        harness.wait_for(browser, lambda d: "stable" in d.find_element(By.ID, "policy").text)
        Select(browser.find_element(By.ID, "pin-version")).select_by_value("1")
        browser.find_element(By.ID, "act-pin").click()
        question = confirm(browser)
        assert "v2 (label stable)" in question and "only" not in question, question
        assert action_result(browser, "Pinned demo to v1") == "ok"
        assert "every node serves v1, v2" in browser.find_element(By.ID, "action-result").text
    finally:
        api(cluster.url, "DELETE", "/v1/models/demo/pin", ADMIN)
        api(cluster.url, "DELETE", "/v1/models/demo/labels/stable", ADMIN)


def test_a_container_model_is_badged_and_its_stop_scales_its_containers(
    browser: Chrome, cluster: Cluster
) -> None:
    """A container model beside the SavedModels (its versions are descriptors in the bucket;
    what the page shows needs no Docker Engine): the model and each version badged
    ``container``, and its stop and start say what they do to its containers (ML-Kraken's
    start/stop button) and change the policy."""
    for tag in (1, 2):
        publish_image(cluster.store, Descriptor(f"127.0.0.1:5000/churn:{tag}"), "churn")
    wait_for(
        lambda: (api(cluster.url, "GET", "/v1/models/churn")[1] or {}).get("kind") == "container",
        60,
        "churn in the master's catalog",
    )
    sign_in(browser, cluster.url, ADMIN, "/models/churn")
    harness.wait_for(browser, lambda d: "container" in d.find_element(By.ID, "model-badges").text)
    for v in ("1", "2"):
        harness.wait_for(
            browser, lambda d, v=v: "container" in cell(d, f'tr[data-version="{v}"]', "version")
        )
    # this master runs no container (no Docker): the page says so, rather than converging
    # for ever in silence
    harness.wait_for(
        browser,
        lambda d: "not run by this master" in d.find_element(By.ID, "model-problems").text,
    )
    browser.set_window_size(1400, 1700)  # the whole page, versions included, for the docs
    shot = harness.screenshot(browser, "console-container")
    browser.set_window_size(1400, 900)
    try:
        browser.find_element(By.ID, "act-disable").click()
        assert "Its containers scale to 0 on every node" in confirm(browser)
        assert action_result(browser, "churn stopped") == "ok"
        assert bucket_policy(cluster).for_model("churn").disabled is True
        harness.wait_for(
            browser, lambda d: "disabled" in d.find_element(By.ID, "model-badges").text
        )
        browser.find_element(By.ID, "act-enable").click()
        assert "Its containers scale back up" in confirm(browser)
        assert action_result(browser, "churn started") == "ok"
        assert bucket_policy(cluster).for_model("churn").disabled is False
    finally:
        api(cluster.url, "POST", "/v1/models/churn/start", ADMIN)
    if os.environ.get("MODELSYNC_UPDATE_DOCS"):
        shutil.copyfile(shot, DOCS / "console-container.png")
