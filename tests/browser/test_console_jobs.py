"""The console's Jobs page in a real headless Chromium, against a real cluster on 127.0.0.1
(Redis of the test's own, the master, one node and a worker): submit pasted rows and a file,
watch the progress bars fill, unfold a job's errors, download its result, cancel a job; the
read-only console has no submit form and no cancel button; no JS error."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jobs_kit import ADMIN, READ, JobsCluster, jobs_cluster
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By

from modelsync.dev.brokers import RedisServer
from modelsync.dev.emulator import GCSEmulator
from tests.browser import harness
from tests.browser.console_kit import click, confirm, js, sign_in

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(
    gcs: GCSEmulator, model_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[JobsCluster]:
    work = tmp_path_factory.mktemp("console-jobs")
    with (
        RedisServer(work) as redis,
        jobs_cluster(
            work,
            gcs,
            model_factory,
            f"console-jobs-{os.getpid()}",
            redis.url,
            master_env={"MODELSYNC_JOB_CHUNK_ROWS": "50"},
            worker_env={"MODELSYNC_WORKER_BATCH_ROWS": "5", "MODELSYNC_WORKER_CONCURRENCY": "1"},
        ) as c,
    ):
        yield c


def job_state(driver: Chrome, job_id: str) -> str | None:
    return js(
        driver,
        "const r = document.querySelector(`tr[data-job='${arguments[0]}']`);"
        "return r ? r.dataset.state : null;",
        job_id,
    )


def newest_job(driver: Chrome) -> str:
    return str(
        harness.wait_for(
            driver,
            lambda d: js(
                d,
                "const j = (window.ms.data.jobs || {}).jobs || [];"
                " return j.length ? j[0].id : null;",
            ),
        )
    )


def test_submit_watch_download_and_cancel_on_the_jobs_page(
    browser: Chrome, cluster: JobsCluster, tmp_path: Path
) -> None:
    sign_in(browser, cluster.url, ADMIN, "/jobs")
    harness.wait_for(browser, lambda d: "/jobs" in d.current_url)
    harness.wait_for(
        browser, lambda d: js(d, "return document.querySelector('#job-model option') !== null")
    )
    # pasted rows, one of them bad
    click(browser, "#src-paste")
    box = browser.find_element(By.ID, "job-rows")
    box.send_keys('[{"x": 1.0}, {"x": "two"}, {"x": 3.0}, {"z": 4}]')
    click(browser, "#job-submit")
    harness.wait_for(browser, lambda d: "submitted" in d.find_element(By.ID, "submit-result").text)
    pasted = newest_job(browser)
    harness.wait_for(browser, lambda d: job_state(d, pasted) == "done")
    # a file of 600 rows (12 chunks): its bar fills
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(f'{{"x": {i}}}\n' for i in range(600)))
    click(browser, "#src-file")
    browser.find_element(By.ID, "job-file").send_keys(str(path))
    click(browser, "#job-submit")
    harness.wait_for(browser, lambda d: newest_job(d) != pasted)
    uploaded = newest_job(browser)
    harness.wait_for(browser, lambda d: job_state(d, uploaded) == "done", timeout_s=120)
    bar = js(
        browser,
        "const p = document.querySelector(`tr[data-job='${arguments[0]}'] progress`);"
        "return [p.value, p.max];",
        uploaded,
    )
    assert bar == [600, 600]
    # the pasted job's errors unfold, and its result downloads as JSON Lines
    click(browser, f"tr[data-job='{pasted}'] .job-errors summary")
    errors = browser.find_element(By.CSS_SELECTOR, f"tr[data-job='{pasted}'] .job-errors").text
    assert "2 errors" in errors and "row 1: input 'x'" in errors
    href = browser.find_element(
        By.CSS_SELECTOR, f"tr[data-job='{pasted}'] a.download"
    ).get_attribute("href")
    text = browser.execute_async_script(
        "fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.text()).then(arguments[1]);",
        href,
    )
    rows = [line for line in text.splitlines() if line]
    assert len(rows) == 4 and '"outputs":{"y":3.0}' in rows[0] and '"error"' in rows[1]
    # a big job, cancelled from the page
    big = cluster.submit_rows([{"x": float(i)} for i in range(20000)])
    harness.wait_for(browser, lambda d: job_state(d, big["id"]) in ("queued", "running"))
    harness.wait_for(
        browser,
        lambda d: js(
            d,
            "return document.querySelector(arguments[0]) !== null",
            f"tr[data-job='{big['id']}'] button.cancel",
        ),
    )
    harness.wait_for(browser, lambda d: job_state(d, big["id"]) == "running", timeout_s=60)
    harness.screenshot(browser, "console-jobs")  # a running job beside two done ones
    click(browser, f"tr[data-job='{big['id']}'] button.cancel")
    assert "Cancel job" in confirm(browser)
    harness.wait_for(browser, lambda d: job_state(d, big["id"]) == "cancelled")
    click(browser, f"tr[data-job='{pasted}'] .job-errors summary")  # folded, then open again
    click(browser, f"tr[data-job='{pasted}'] .job-errors summary")
    shot = harness.screenshot(browser, "console-jobs-done")
    assert shot.stat().st_size > 10_000
    assert harness.js_errors(browser) == []
    if os.environ.get("MODELSYNC_UPDATE_DOCS"):
        import shutil

        shutil.copy(shot, harness.REPO / "docs" / "console-jobs.png")


def test_the_read_only_console_shows_jobs_but_cannot_submit_or_cancel(
    browser: Chrome, cluster: JobsCluster
) -> None:
    running = cluster.submit_rows([{"x": float(i)} for i in range(20000)])
    sign_in(browser, cluster.url, READ, "/jobs")
    harness.wait_for(browser, lambda d: job_state(d, running["id"]) is not None)
    assert browser.find_elements(By.ID, "submit-form") == []
    assert browser.find_elements(By.CSS_SELECTOR, "button.cancel") == []
    assert harness.js_errors(browser) == []
    cluster.call("POST", f"/v1/jobs/{running['id']}/cancel")
