"""The console on every screen (issue #20, part 3), in a real headless Chromium against a real
cluster: every page the navigation links to (found at run time, so a new page is checked too)
and a model's page, at 375, 768 and 1400 px wide — a screenshot of each, and the test fails on
a horizontal overflow of the page, on sibling cards or controls whose boxes intersect, or on a
sign-out button out of reach."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from modelsync.dev.emulator import GCSEmulator
from tests.browser import harness
from tests.browser.console_kit import ADMIN, Cluster, js, rendered, running_cluster, sign_in

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
