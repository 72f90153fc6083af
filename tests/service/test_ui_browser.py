"""The review page in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium; nothing downloaded): pick a class, see its top list and queue with evidence,
enter the token once, label two segments and see the ranking move. A screenshot is kept in
``tests/artifacts/ui-review.png``.

``make test`` installs the browser (scripts/ensure-test-deps.sh) and sets
``CCRL_REQUIRE_BROWSER``, so there a missing browser fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.yt8m import Video

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
BROWSER_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1400,1000",
)


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the dev extra)"
    return None


pytestmark = pytest.mark.skipif(
    _missing() is not None and not os.environ.get("CCRL_REQUIRE_BROWSER"),
    reason=str(_missing()),
)


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium on a fresh profile, through the system's chromedriver."""
    assert _missing() is None, _missing()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="ccrl-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*BROWSER_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _text(driver: Any, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)


def _rows(driver: Any, table: str) -> list[tuple[str, float]]:
    """(member, score) of every row of a table of the page."""
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr[data-member]")
    return [(r.get_attribute("data-member"), float(r.get_attribute("data-score"))) for r in found]


def _wait_status(driver: Any, *words: str) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(lambda d: any(w in _text(d, "status") for w in words))
    return _text(driver, "status")


@pytest.mark.slow
def test_review_page_labels_segments_and_shows_the_ranking_move(
    browser: Any,
    sim_bundle: Path,
    serve_app: Any,
    test_videos: list[Video],
    make_payload: Any,
    api_token: str,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from service.api.app import create_app
    from service.config import Settings

    settings = Settings(
        bundle=sim_bundle, api_token=api_token, redis_url=None, ort_intra_threads=1, xgb_nthread=1
    )
    with serve_app(create_app(settings)) as server, httpx.Client(base_url=server.url) as http:
        auth = {"Authorization": f"Bearer {api_token}"}
        for v in test_videos:
            body = make_payload(v, video_id=v.id)
            assert http.post("/localize", json=body, headers=auth).status_code == 200
        c = http.post("/localize", json=make_payload(test_videos[0])).json()["classes"][0]
        c = c["class_id"]
        bank0 = http.get(f"/classes/{c}/review?limit=1").json()["bank"]

        browser.get(f"{server.url}/ui")
        _wait_status(browser, "loaded")
        Select(browser.find_element(By.ID, "class-select")).select_by_value(str(c))
        _wait_status(browser, f"class {c} loaded")
        browser.find_element(By.ID, "token").send_keys(api_token)
        browser.find_element(By.ID, "token-save").click()
        assert browser.execute_script("return sessionStorage.getItem('ccrl-token')") == api_token
        assert "token set" in _text(browser, "token-state")
        top_before = dict(_rows(browser, "top-table"))
        queue = _rows(browser, "queue-table")
        assert top_before and len(queue) == 10
        assert browser.find_elements(By.CSS_SELECTOR, "#queue-table details.evidence")

        first = browser.find_element(By.CSS_SELECTOR, "#queue-table tbody tr[data-member]")
        first.find_element(By.CSS_SELECTOR, "button.mark.pos").click()
        status = _wait_status(browser, "labelled", "not stored")
        assert "positive" in status and "re-scored" in status, status
        top_after = dict(_rows(browser, "top-table"))
        moved = [m for m in top_after if m in top_before and top_after[m] != top_before[m]]
        assert moved, "the top list's scores did not change after the label"
        assert queue[0][0] not in dict(_rows(browser, "queue-table"))
        marks = {
            e.text
            for e in browser.find_elements(
                By.CSS_SELECTOR, "#top-table td.up, #top-table td.down, #top-table td.new"
            )
        }
        assert marks, "no rank movement shown"

        # a second label with the token entered once
        second = browser.find_element(By.CSS_SELECTOR, "#queue-table tbody tr[data-member]")
        second.find_element(By.CSS_SELECTOR, "button.mark.neg").click()
        assert "negative" in _wait_status(browser, "negative", "not stored")
        bank1 = http.get(f"/classes/{c}/review?limit=1").json()["bank"]
        assert bank1 == {"positive": bank0["positive"] + 1, "negative": bank0["negative"] + 1}

        browser.find_element(By.CSS_SELECTOR, "#queue-table details.evidence summary").click()
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "ui-review.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")

        browser.refresh()  # the token and the class outlive a reload of the tab
        _wait_status(browser, f"class {c} loaded")
        assert "token set" in _text(browser, "token-state")
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors  # no script error, no blocked (CSP) or failed load
