"""Text outside the Basic Multilingual Plane, checked in a real browser (headless Chromium driven by
Selenium) against the real Label Studio server (session fixture `label_studio`).

Our entity offsets are Python code points; JavaScript strings count UTF-16 units, in which an emoji
or a mathematical letter such as "𝑥" takes two. Some Label Studio versions got this wrong
(label-studio issues 1347, 4988). The test pushes an example with such characters before and
inside entities, checks that the browser highlights exactly the entity texts, deletes one region and
draws it again by selecting its characters (so that the browser computes the offsets itself),
submits, pulls with the project's code and checks that the offsets come back as pushed.

Skipped, with the reason, when selenium, Chromium or chromedriver is missing
(`apt-get install -y chromium chromium-driver`; scripts/test.sh tries that as root). Every wait
has a timeout.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill_ner.annotators.label_studio import client, ensure_project, export_tasks, pull, push
from tests.fixtures.examples import make_example

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")


def _missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    if not CHROMIUM:
        return "no Chromium on PATH (apt-get install -y chromium chromium-driver)"
    if not CHROMEDRIVER:
        return "no chromedriver on PATH (apt-get install -y chromium-driver)"
    return None


# Checked at collection, so that a missing browser does not even start Label Studio.
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_missing() is not None, reason=f"browser test: {_missing()}")]

WAIT = 30.0  # seconds, for every wait on the page
# 🐆 and 𝑥 before every entity, 𝑥 at the start of HABITAT, 🦌 at the end of FEEDING
TEXT = "🐆 and 𝑥 first: the Amur leopard lives in 𝑥-rich temperate forests and eats roe deer 🦌, say 🐆🐆."
MENTIONS = [("Amur leopard", "SPECIES"), ("𝑥-rich temperate forests", "HABITAT"), ("roe deer 🦌", "FEEDING")]
# Redrawn: HABITAT, which no relation hangs on. It ends on a letter: with the project's
# granularity="word", a selection that ends right after an emoji followed by punctuation is
# widened over the punctuation ("roe deer 🦌" -> "roe deer 🦌,", highlighted and stored so; Label
# Studio 1.23.2, Chromium 156; with granularity="symbol" it is stored exactly). The annotator sees
# what is stored, so that is word snapping, not an offset mismatch.
REDRAWN = 1

# Select the `target` characters inside `root` as a mouse would (a DOM Range over the text nodes,
# in the DOM's own UTF-16 offsets), then release the mouse so that Label Studio makes a region.
SELECT = """
const [target, root] = arguments;
const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
const nodes = []; let all = '';
while (walker.nextNode()) { nodes.push([walker.currentNode, all.length]); all += walker.currentNode.data; }
const at = all.indexOf(target);
if (at < 0) return null;
const find = (i, isStart) => { for (const [n, s] of nodes) if (isStart ? i < s + n.data.length : i <= s + n.data.length) return [n, i - s]; };
const [sn, so] = find(at, true), [en, eo] = find(at + target.length, false);
const range = document.createRange(); range.setStart(sn, so); range.setEnd(en, eo);
const sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(range);
const selected = sel.toString();
sn.parentElement.dispatchEvent(new MouseEvent('mouseup', {bubbles: true, view: window}));
return selected;
"""


def _utf16(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")))
    except WebDriverException as err:
        pytest.skip(f"browser test: Chromium did not start ({str(err.msg or err).splitlines()[0]})")
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(WAIT)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        try:
            driver.save_screenshot(str(tmp_path / "last-page.png"))  # after a failure: what the browser showed
        finally:
            driver.quit()


def _highlights(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [s.get_attribute("textContent") for s in driver.find_elements(By.CSS_SELECTOR, "span.htx-highlight")]


def _wait_for(driver, what: str, condition):
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:  # a region re-rendered between finding it and reading it is stale: look again
        return WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,)).until(lambda d: condition(d))
    except TimeoutException:
        raise AssertionError(f"waited {WAIT:.0f} s for {what}; highlighted: {_highlights(driver)}; page {driver.current_url}") from None


def _log_in(driver, url: str, data_dir: Path) -> None:
    from selenium.webdriver.common.by import By

    creds = json.loads((data_dir / "credentials.json").read_text())  # written by ls_server.start
    driver.get(f"{url}/user/login/")
    driver.find_element(By.NAME, "email").send_keys(creds["email"])
    driver.find_element(By.NAME, "password").send_keys(creds["password"])
    driver.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
    _wait_for(driver, "the login to go through", lambda d: "/user/login" not in d.current_url)


@pytest.mark.timeout(420)
def test_astral_characters_keep_their_code_point_offsets_through_the_browser(label_studio, browser, species_spec):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    ls = client(label_studio.connection)
    pid = ensure_project(ls, species_spec, "test browser astral offsets")
    example = make_example(TEXT, MENTIONS, [(0, 2, "feed_on")], model="mock-species", confidence=0.9)
    texts = [TEXT[e.start : e.end] for e in example.entities]
    assert texts == [m for m, _ in MENTIONS] and len(TEXT) < _utf16(TEXT)  # really outside the BMP
    (task_id,) = push(ls, pid, [example], species_spec).task_ids

    _log_in(browser, label_studio.url, label_studio.data_dir)
    browser.get(f"{label_studio.url}/projects/{pid}/data?task={task_id}")
    # the pre-annotation (pushed with code-point offsets) highlights exactly the entity texts
    _wait_for(browser, "the three predicted regions", lambda d: len(_highlights(d)) == 3)
    assert _highlights(browser) == texts

    # delete HABITAT and draw it again: now the browser computes its offsets from a selection
    def click_habitat(d) -> bool:  # found and clicked in one try: the region may re-render in between
        d.find_elements(By.CSS_SELECTOR, "span.htx-highlight")[REDRAWN].click()
        return True

    _wait_for(browser, "a click on the HABITAT region", click_habitat)
    ActionChains(browser).send_keys(Keys.BACKSPACE).perform()  # deletes the selected region
    _wait_for(browser, "the HABITAT region to be deleted", lambda d: _highlights(d) == [t for i, t in enumerate(texts) if i != REDRAWN])
    browser.find_element(By.XPATH, "//span[contains(@class, 'lsf-label__text') and normalize-space(text())='HABITAT']").click()
    root = browser.find_element(By.CSS_SELECTOR, ".lsf-richtext__container")
    assert browser.execute_script(SELECT, texts[REDRAWN], root) == texts[REDRAWN]
    _wait_for(browser, "the redrawn HABITAT region", lambda d: len(_highlights(d)) == 3)
    assert _highlights(browser) == texts

    browser.find_element(By.XPATH, "//button[normalize-space()='Submit']").click()
    deadline = time.monotonic() + WAIT
    while not ls.tasks.get(id=task_id).annotations:
        assert time.monotonic() < deadline, f"no annotation stored {WAIT:.0f} s after Submit"
        time.sleep(0.5)

    # what the browser stored: code points, and the redrawn region is really the browser's own
    (task,) = [t for t in export_tasks(ls, pid) if t["id"] == task_id]
    (annotation,) = task["annotations"]
    stored = {item["id"]: item["value"] for item in annotation["result"] if item.get("type") == "labels"}
    redrawn = [v for rid, v in stored.items() if rid not in {f"e{i}" for i in range(len(MENTIONS))}]  # pushed ids: e0, e1, ...
    assert len(redrawn) == 1, f"the redrawn region is not in the stored annotation: {stored}"
    e = example.entities[REDRAWN]
    utf16 = (_utf16(TEXT[: e.start]), _utf16(TEXT[: e.end]))
    assert (redrawn[0]["start"], redrawn[0]["end"]) == (e.start, e.end), f"stored {redrawn[0]}; code points {(e.start, e.end)}, UTF-16 {utf16}"
    assert redrawn[0]["text"] == texts[REDRAWN]

    # and the project's pull gives back exactly what was pushed
    result = pull(ls, pid, species_spec, [example])
    (verified,) = result.verified
    assert [(x.start, x.end, x.label, TEXT[x.start : x.end]) for x in verified.entities] == [
        (x.start, x.end, x.label, TEXT[x.start : x.end]) for x in example.entities
    ]
    assert verified.relations == example.relations
    assert verified.review.status == "accepted", verified.review
