"""The browser labeller as a person uses it: headless Chromium on the real `al4dstem label --ui
browser` process. Label 5 patterns by key presses, undo one, reload the page, resume, skip,
finish with q; after every key press the row is in the label file by the time the next pattern
is on screen. Records the key-press-to-next-pattern latencies the page measures, and saves a
screenshot at the default window size (to $AL4DSTEM_SHOTS when set, e.g. /tmp/team/shots).

Needs Chromium and its driver (Debian packages ``chromium`` and ``chromium-driver``) and the
``selenium`` package; skipped with that reason where they are missing.
"""

import json
import os
import shutil
import statistics
import time

import pytest
from web_helpers import KEY_OF_CLASS, LabelProcess, answered, make_scan

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
pytest.importorskip("starlette")

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="Chromium or chromedriver is missing (apt-get install chromium chromium-driver)")
BUDGET = 8
WAIT = 60  # seconds for anything the page waits for: generous for a loaded two-core CI machine, still ends a hang


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--disable-extensions", "--no-first-run"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_script_timeout(WAIT)
    yield driver
    driver.quit()


def body_data(driver, name):
    return driver.execute_script(f"return document.body.dataset.{name} || null")


def wait_for(driver, test, what, timeout=WAIT):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = test()
        if got:
            return got
        time.sleep(0.01)
    status = driver.execute_script("return document.getElementById('status').textContent")
    pytest.fail(f"timed out waiting for {what}; status line: {status!r}")


def shown_position(driver):
    position = body_data(driver, "position")
    return tuple(map(int, position.split(","))) if position else None


def press(driver, key):
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(key).perform()


def answer_by_key(driver, key, labels, expected_rows):
    """Press ``key`` on the pattern shown; as soon as the page hears back (its state moves on),
    the row is on disk; then wait for the next pattern (a new round may come first)."""
    before, shown = body_data(driver, "version"), shown_position(driver)
    press(driver, key)
    wait_for(driver, lambda: body_data(driver, "version") != before, f"the reply to key {key}")
    assert answered(labels) == expected_rows
    if key != "u":
        wait_for(driver, lambda: shown_position(driver) != shown, f"the pattern after key {key}")


def test_label_undo_reload_skip_and_finish_in_chromium(browser, tmp_path):
    data, truth = make_scan(tmp_path, nx=16, ny=10, detector=256)  # the simulator's default detector and ghosts
    labels = tmp_path / "labels.csv"
    with LabelProcess(data, labels, BUDGET) as run:
        browser.get(run.url)
        wait_for(browser, lambda: body_data(browser, "drawn"), "the first pattern")
        wait_for(browser, lambda: body_data(browser, "survey") == "ready", "the scan survey")
        rings = browser.execute_script("return document.querySelectorAll('#overlay circle').length")
        assert rings > 0  # the ghost rings of both classes are drawn on the pattern

        rows = []
        for _ in range(5):
            x, y = wait_for(browser, lambda: shown_position(browser), "a position")
            name = truth[(x, y)]
            rows.append((x, y, name))
            answer_by_key(browser, KEY_OF_CLASS[name], labels, rows)
        assert browser.execute_script("return document.getElementById('progress-text').textContent") \
            .startswith(f"5 of {BUDGET} labelled")

        undone = rows[-1][:2]
        rows.append((*undone, "undo"))
        answer_by_key(browser, "u", labels, rows)
        wait_for(browser, lambda: shown_position(browser) == undone, "the retracted position, asked again")
        latencies = wait_for(browser, lambda: browser.execute_script(
            "return window.al4dstemLatencies.length >= 6 && window.al4dstemLatencies"), "the undo's latency")

        browser.refresh()  # the page keeps nothing: everything comes back from the server
        wait_for(browser, lambda: body_data(browser, "drawn") and shown_position(browser) == undone, "the reload")
        assert browser.execute_script("return document.getElementById('progress-text').textContent") \
            .startswith(f"4 of {BUDGET} labelled")
        name = truth[undone]
        rows.append((*undone, name))
        answer_by_key(browser, KEY_OF_CLASS[name], labels, rows)

        x, y = shown_position(browser)
        rows.append((x, y, "skip"))
        answer_by_key(browser, "s", labels, rows)
        latencies += wait_for(browser, lambda: browser.execute_script(
            "return window.al4dstemLatencies.length >= 2 && window.al4dstemLatencies"), "the last latencies")

        shots = os.environ.get("AL4DSTEM_SHOTS")
        if shots:
            os.makedirs(shots, exist_ok=True)
            browser.save_screenshot(os.path.join(shots, "browser.png"))

        press(browser, "q")
        wait_for(browser, lambda: body_data(browser, "stopped") == "quit", "the finished panel")
        assert browser.find_element("id", "finished").is_displayed()
        code, out, err = run.finish()
        assert code == 0, err
        assert f"5 of {BUDGET} labelled" in out and "1 skipped" in out
        assert answered(labels) == rows
    if shots:
        with open(os.path.join(shots, "latency.json"), "w") as f:
            json.dump({"latencies_ms": latencies, "median_ms": statistics.median(latencies),
                       "max_ms": max(latencies)}, f)
    print("\nlatencies (ms):", [round(v) for v in latencies])
    print(f"key press -> next pattern drawn, {len(latencies)} presses: median {statistics.median(latencies):.0f} ms, "
          f"max {max(latencies):.0f} ms")
