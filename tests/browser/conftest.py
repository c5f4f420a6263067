"""Fixtures for the real-browser tests: `browser`, a fresh headless Chromium per test."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import pytest
from selenium.webdriver import Chrome

from tests.browser.harness import INSTALL_HINT, missing_binaries, screenshot, start_chromium


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so `browser` can tell that its test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def browser(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Chrome]:
    """A headless Chromium with a new empty profile, quit after the test.

    Function scope on purpose: every test starts with no cookies, storage, cache, open tabs or
    console entries left by another, and a crashed browser takes down one test only. A start
    costs about half a second here, small next to what a console page test does. When the
    test fails, a screenshot `<test name>-failed.png` is saved first.
    """
    if missing := missing_binaries():
        pytest.fail(f"{', '.join(map(str, missing))} missing: {INSTALL_HINT}", pytrace=False)
    driver, _ = start_chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield driver
        call = getattr(request.node, "report_call", None)
        if call is not None and call.failed:
            screenshot(driver, f"{request.node.name}-failed")
    finally:
        driver.quit()
