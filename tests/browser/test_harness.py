"""Self-test of the browser harness: a real Chromium against a tiny server on 127.0.0.1.

It checks what the console tests will rely on: JS runs and changes the page, the vendored uPlot
loads from our own server and draws, screenshots are real PNGs, and console errors are seen.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from tests.browser.harness import REPO, js_errors, screenshot, wait_for

UPLOT = REPO / "master" / "static" / "vendor" / "uplot"
# An empty icon: otherwise Chromium asks for /favicon.ico and logs the 404 as a SEVERE error.
HEAD = '<meta charset="utf-8"><link rel="icon" href="data:,">'

BUTTON_PAGE = f"""<!doctype html><html><head>{HEAD}<title>button</title></head><body>
<p id="msg">before</p><button id="go">go</button>
<script>
document.getElementById("go").addEventListener("click", () => {{
  document.getElementById("msg").textContent = "clicked " + (1 + 1);
}});
</script></body></html>"""

CHART_PAGE = f"""<!doctype html><html><head>{HEAD}<title>chart</title>
<link rel="stylesheet" href="/vendor/uplot/uPlot.min.css">
<script src="/vendor/uplot/uPlot.iife.min.js"></script></head><body>
<h1>three points</h1><div id="chart"></div>
<script>
const opts = {{width: 600, height: 300, scales: {{x: {{time: false}}}},
              series: [{{}}, {{label: "y", stroke: "#d62728", width: 3}}]}};
window.chart = new uPlot(opts, [[1, 2, 3], [1, 4, 9]], document.getElementById("chart"));
window.chartReady = true;
</script></body></html>"""

BROKEN_PAGE = (
    f"<!doctype html><html><head>{HEAD}</head><body><script>nope();</script></body></html>"
)

ROUTES: dict[str, tuple[str, bytes]] = {
    "/button.html": ("text/html; charset=utf-8", BUTTON_PAGE.encode()),
    "/chart.html": ("text/html; charset=utf-8", CHART_PAGE.encode()),
    "/broken.html": ("text/html; charset=utf-8", BROKEN_PAGE.encode()),
    "/vendor/uplot/uPlot.iife.min.js": (
        "text/javascript",
        (UPLOT / "uPlot.iife.min.js").read_bytes(),
    ),
    "/vendor/uplot/uPlot.min.css": ("text/css", (UPLOT / "uPlot.min.css").read_bytes()),
}


class Handler(BaseHTTPRequestHandler):
    def __init__(self, requested: list[str], *args: object) -> None:
        self.requested = requested
        super().__init__(*args)  # type: ignore[arg-type]

    def do_GET(self) -> None:
        self.requested.append(self.path)
        content_type, body = ROUTES.get(self.path, ("text/plain", b""))
        self.send_response(200 if self.path in ROUTES else 404)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[tuple[str, list[str]]]:
    """The pages above on 127.0.0.1, a port the OS picks; yields (base URL, paths requested)."""
    requested: list[str] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, requested))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_click_changes_text(browser: Chrome, site: tuple[str, list[str]]) -> None:
    base, _ = site
    browser.get(f"{base}/button.html")
    msg = wait_for(browser, lambda d: d.find_element(By.ID, "msg"))
    assert msg.text == "before"
    browser.find_element(By.ID, "go").click()
    wait_for(browser, lambda d: d.find_element(By.ID, "msg").text == "clicked 2", timeout_s=10)
    assert js_errors(browser) == []


def test_uplot_draws_chart(browser: Chrome, site: tuple[str, list[str]]) -> None:
    base, requested = site
    browser.get(f"{base}/chart.html")
    wait_for(browser, lambda d: d.execute_script("return window.chartReady === true"))
    canvas = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#chart canvas"))
    assert canvas.size["width"] > 0 and canvas.size["height"] > 0
    assert int(canvas.get_attribute("width") or 0) > 0
    # Something was drawn: the series' red stroke (#d62728) is on the canvas.
    red_pixels = browser.execute_script("""
        const c = document.querySelector("#chart canvas");
        const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < px.length; i += 4)
          if (px[i] > 180 && px[i + 1] < 80 && px[i + 2] < 80 && px[i + 3] > 0) n++;
        return n;""")
    assert red_pixels > 50
    assert browser.execute_script("return window.chart.data[0].length") == 3
    assert {"/vendor/uplot/uPlot.iife.min.js", "/vendor/uplot/uPlot.min.css"} <= set(requested)
    path: Path = screenshot(browser, "uplot-chart")
    assert path.is_file()
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 1024
    assert js_errors(browser) == []


def test_js_errors_are_reported(browser: Chrome, site: tuple[str, list[str]]) -> None:
    """The no-JS-errors assertions above would catch an error: an uncaught one shows up."""
    base, _ = site
    browser.get(f"{base}/broken.html")
    errors = wait_for(browser, js_errors, timeout_s=10)
    assert any("nope is not defined" in e for e in errors), errors
