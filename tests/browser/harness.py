"""A real headless Chromium for tests: Debian's chromium + chromedriver, driven by Selenium.

Nothing here reaches the network: the driver and browser paths are given explicitly, so
Selenium Manager never runs (and is told to stay offline and send no statistics if it ever
did), and Chromium resolves no host name but 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import (
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL_HINT = "run `bash scripts/browser.sh` (or `make test`, which runs it)"
REPO = Path(__file__).resolve().parents[2]
DEFAULT_SCREENSHOTS = REPO / "tests" / "browser" / "screenshots"
PAGE_LOAD_TIMEOUT_S = 30

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--window-size=1400,900",
    # Belt and braces for "all traffic on 127.0.0.1": any other host name fails to resolve.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)

T = TypeVar("T")
D = TypeVar("D", bound=WebDriver)


class BrowserMissing(RuntimeError):
    """Debian's chromium or chromedriver is not installed."""


def missing_binaries() -> list[Path]:
    return [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]


def start_chromium(user_data_dir: Path) -> tuple[Chrome, float]:
    """Start a headless Chromium with a fresh profile; return it and the seconds it took."""
    if missing := missing_binaries():
        raise BrowserMissing(f"{', '.join(map(str, missing))} missing: {INSTALL_HINT}")
    # Only read by Selenium Manager, which explicit paths skip; set so it could not phone home.
    os.environ["SE_AVOID_STATS"] = "true"
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER))
    started = time.monotonic()
    driver = Chrome(service=service, options=options)
    seconds = time.monotonic() - started
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    driver.set_script_timeout(PAGE_LOAD_TIMEOUT_S)
    return driver, seconds


def page_text(driver: WebDriver, limit: int = 2000) -> str:
    try:
        return str(driver.find_element(By.TAG_NAME, "body").text)[:limit]
    except WebDriverException as exc:
        return f"<no page text: {exc.msg}>"


def wait_for(driver: D, condition: Callable[[D], T], timeout_s: float = 30) -> T:
    """Wait until `condition(driver)` is truthy and return it; fail with what the page shows."""
    try:
        # a condition that reads an element an auto-refresh has just replaced is asked again
        return WebDriverWait(
            driver,
            timeout_s,
            poll_frequency=0.1,
            ignored_exceptions=(StaleElementReferenceException,),
        ).until(condition)
    except TimeoutException:
        raise AssertionError(
            f"timed out after {timeout_s} s waiting for {condition!r}\n"
            f"url: {driver.current_url}\npage text:\n{page_text(driver)}"
        ) from None


def screenshot_dir() -> Path:
    directory = Path(os.environ.get("MODELSYNC_SCREENSHOTS") or DEFAULT_SCREENSHOTS)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def screenshot(driver: WebDriver, name: str) -> Path:
    """Save a PNG of the viewport as <screenshots>/<name>.png and return its path."""
    path = screenshot_dir() / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name) + ".png")
    if not driver.save_screenshot(str(path)):
        raise AssertionError(f"could not save a screenshot to {path}")
    return path


def console_entries(driver: Chrome) -> list[dict[str, Any]]:
    """The browser console entries logged since the last call (reading empties the buffer)."""
    return list(driver.get_log("browser"))  # type: ignore[no-untyped-call]


def js_errors(driver: Chrome) -> list[str]:
    """The SEVERE console entries since the last read: uncaught errors, failed loads."""
    return [e["message"] for e in console_entries(driver) if e.get("level") == "SEVERE"]
