"""The review web site in a real headless Chromium (selenium) against the demo's database:
the real daemon has processed 30 simulated epochs with an injected ESE. Two named
reviewers (alice, bob) review the candidate; its page shows the postage stamps (loaded
images), the position in sexagesimal, the links out, the whole legend and the history;
``/sources`` finds it by name and by a position 10" away; an image moved away leaves a
placeholder saying so.

Uses Debian's /usr/bin/chromium and /usr/bin/chromedriver (installed by
scripts/test-setup.sh; never downloaded). With CONTIMG_WRITE_SCREENSHOTS=1 the test
writes docs/screenshots/{overview,candidates,source}.png.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# the demo season behind the module is built in the first test's setup (minutes under load)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {"alice": "review-token-of-alice-7f3a", "bob": "review-token-of-bob-91c2"}
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo's service directory after the daemon processed every epoch."""
    from dsa110_contimg.cli.demo_run import make_sky, run_demo

    root = tmp_path_factory.mktemp("webdemo")
    log = root / "demo.out"
    with open(log, "w") as out:
        rc = run_demo(workdir=root, epochs=30, workers=2, timeout_s=240.0, out=out)
    assert rc == 0, log.read_text()
    ra, dec, _ = make_sky()
    token_file = root / "state" / "web_token"
    token_file.write_text("".join(f"{name}:{token}\n" for name, token in TOKENS.items()))
    token_file.chmod(0o600)
    with open(root / "photometry.toml", "a") as fh:
        fh.write(f'\n[web]\nlisten = "127.0.0.1:8088"\ntoken_file = "{token_file}"\n')
    # the daemon runs again (nothing left to do) so that the overview shows it alive
    daemon_log = root / "daemon2.log"
    with open(daemon_log, "wb") as fh:
        daemon = subprocess.Popen([sys.executable, "-m", "dsa110_contimg.cli.main", "run", "--config",
                                   str(root / "photometry.toml")], stdout=fh, stderr=subprocess.STDOUT,
                                  env={k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"})
    try:
        wait_for(lambda: '"event": "ready"' in daemon_log.read_text() or daemon.poll() is not None,
                 "the daemon to be ready", 120)
        assert daemon.poll() is None, daemon_log.read_text()[-2000:]
        yield {"root": root, "config": root / "photometry.toml",
               "ese_name": f"DEMO J{ra[0]:08.4f}{dec[0]:+08.4f}", "ra": float(ra[0]), "dec": float(dec[0])}
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(10)


@pytest.fixture(scope="module")
def server(demo):
    from web_harness import ServeProcess

    srv = ServeProcess("--config", str(demo["config"]), log=demo["root"] / "serve.log")
    yield srv
    assert srv.stop() == 0, srv.log.read_text()[-2000:]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), \
        "chromium and chromium-driver are needed (scripts/test-setup.sh installs them)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1360,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


def ese_list(demo) -> dict:
    """``contimg-photometry ese list --json`` as a subprocess, by candidate id."""
    out = subprocess.run([sys.executable, "-m", "dsa110_contimg.cli.main", "ese", "list", "--json",
                          "--config", str(demo["config"])], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return {c["id"]: c for c in json.loads(out.stdout)["candidates"]}


def shot(driver, name: str) -> None:
    if os.environ.get("CONTIMG_WRITE_SCREENSHOTS") == "1":
        out = ROOT / "docs" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": 1360, "height": min(max(height, 600), 1800), "deviceScaleFactor": 1, "mobile": False})
        driver.save_screenshot(str(out / f"{name}.png"))
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def wait_for(pred, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_review_in_the_browser(demo, server, browser):
    from selenium.webdriver.common.by import By

    # the overview shows what `status --json` says
    browser.get(server.url + "/")
    assert browser.find_element(By.ID, "jobs-done").text == "31"   # 30 epochs + 1 backfill
    assert browser.find_element(By.ID, "daemon-state").text == "running"
    states = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#nodes tr td:nth-child(3)")]
    assert states[0] == "running"
    assert browser.find_elements(By.CSS_SELECTOR, "svg.bars rect")
    shot(browser, "overview")

    # the source in no catalogue that switched on is on the new-sources page, with its light
    # curve (backfilled before it appeared), linked from the navigation
    browser.find_element(By.CSS_SELECTOR, 'nav a[href="/new-sources"], a[href="/new-sources"]').click()
    rows = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "tr.new-source"), "new sources")
    assert rows[0].find_element(By.CSS_SELECTOR, "a.source-link").text.startswith("DSA110 J")
    assert rows[0].find_elements(By.CSS_SELECTOR, "svg")
    assert float(rows[0].find_element(By.CSS_SELECTOR, "td.significance").text) > 10
    shot(browser, "new_sources")
    # its own page renders: kind new, the light curve over all 30 epochs (backfilled)
    name = rows[0].find_element(By.CSS_SELECTOR, "a.source-link").text
    rows[0].find_element(By.CSS_SELECTOR, "a.source-link").click()
    wait_for(lambda: browser.find_elements(By.ID, "lightcurve"), "the new source's page")
    assert name in browser.find_element(By.TAG_NAME, "h1").text
    plot = browser.find_element(By.CSS_SELECTOR, "#lightcurve svg.lightcurve")
    assert plot.is_displayed() and plot.size["width"] > 300
    assert len(plot.find_elements(By.CSS_SELECTOR, "g.norm rect, g.raw rect")) >= 25

    # the variables page, linked from the navigation: each field's eta-V diagram with its
    # thresholds, beside its variables (the injected ESE among them)
    browser.find_element(By.CSS_SELECTOR, 'nav a[href="/variables"], a[href="/variables"]').click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "h2.field"), "variables page")
    assert browser.find_elements(By.CSS_SELECTOR, "svg.etav g.field circle")
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "tr.variable a.source-link")]
    assert demo["ese_name"] in names, names
    shot(browser, "variables")

    # the injected ESE is the top candidate, with a thumbnail light curve
    browser.get(server.url + "/candidates")
    first = browser.find_elements(By.CSS_SELECTOR, "tr.candidate")[0]
    link = first.find_element(By.CSS_SELECTOR, "a.source-link")
    assert link.text == demo["ese_name"]
    assert first.find_elements(By.CSS_SELECTOR, "svg.thumb circle")
    cid = int(first.get_attribute("data-candidate-id"))
    shot(browser, "candidates")
    before = ese_list(demo)
    assert before[cid]["status"] == "active" and before[cid]["catalog_id"] == demo["ese_name"]

    # its page shows the light-curve plot (points, the fitted template) and the eta-V diagram
    link.click()
    wait_for(lambda: browser.find_elements(By.ID, "lightcurve"), "the source page")
    plot = browser.find_element(By.CSS_SELECTOR, "#lightcurve svg.lightcurve")
    assert plot.is_displayed() and plot.size["width"] > 300
    assert len(plot.find_elements(By.CSS_SELECTOR, "g.norm rect")) >= 20
    assert plot.find_elements(By.CSS_SELECTOR, "path.fit")
    assert browser.find_elements(By.CSS_SELECTOR, "svg.etav circle")
    source_url = browser.current_url
    check_astronomers_page(browser, demo)
    shot(browser, "source")

    # dismiss without the token: refused, nothing changes
    browser.find_element(By.ID, "note").send_keys("scintillation, not an ESE")
    browser.find_element(By.ID, "dismiss").click()
    refused = wait_for(lambda: browser.find_elements(By.ID, "refused"), "the refusal")
    assert "token" in refused[0].text
    assert ese_list(demo)[cid]["status"] == "active"
    # ... nor through the API without a token or with a wrong one
    assert server.post_json(f"/api/candidates/{cid}", {"status": "dismissed"})[0] == 401
    assert server.post_json(f"/api/candidates/{cid}", {"status": "dismissed"}, token="wrong-token")[0] == 403
    assert ese_list(demo)[cid]["status"] == "active"

    # alice enters her token, then dismisses from the page: `ese list --json` reports it
    browser.get(source_url)
    browser.find_element(By.ID, "token").send_keys(TOKENS["alice"])
    browser.find_element(By.ID, "login").click()
    wait_for(lambda: browser.find_elements(By.ID, "signed-in-as"), "signed in")
    assert browser.find_element(By.ID, "signed-in-as").text == "alice"
    browser.find_element(By.ID, "note").send_keys("scintillation, not an ESE")
    browser.find_element(By.ID, "dismiss").click()
    wait_for(lambda: browser.find_elements(By.ID, "candidate-status")
             and browser.find_element(By.ID, "candidate-status").text == "dismissed", "dismissed on the page")
    after = ese_list(demo)[cid]
    assert after["status"] == "dismissed" and after["notes"] == "scintillation, not an ESE"

    # bob reactivates through the API with his token; the JSON equals the CLI's object
    code, body = server.post_json(f"/api/candidates/{cid}", {"status": "reactivated", "note": "look again"},
                                  token=TOKENS["bob"])
    assert code == 200 and body["status"] == "active" and body["history"][-1]["reviewer"] == "bob"
    cli = ese_list(demo)[cid]
    assert cli["status"] == "active" and cli["notes"] == "look again"
    code, raw, _ = server.get("/api/candidates")
    api = {c["id"]: c for c in json.loads(raw)["candidates"]}
    assert api[cid] == cli
    # the page keeps both reviews, by name, after the pipeline's flagging
    browser.get(source_url)
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in browser.find_elements(By.CSS_SELECTOR, "#review-history tr.review-entry")]
    assert [(r[1], r[2], r[4]) for r in rows] == [
        ("pipeline", "flagged", rows[0][4]), ("alice", "dismissed", "scintillation, not an ESE"),
        ("bob", "reactivated", "look again")]
    # the tokens appear in no page and no log line
    for token in TOKENS.values():
        assert token not in browser.page_source and token not in server.log.read_text()

    find_sources(browser, server, demo, source_url)
    browser.get(source_url)
    moved_image_placeholder(browser, server, source_url)


def check_astronomers_page(browser, demo) -> None:
    """Stamps loaded, sexagesimal position, links out, the whole legend."""
    from selenium.webdriver.common.by import By

    from dsa110_contimg.web.formatting import dec_dms, ra_hms

    images = browser.find_elements(By.CSS_SELECTOR, "#stamps figure.stamp img")
    assert len(images) == 8
    wait_for(lambda: all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)
                         for i in images), "every stamp loaded")
    assert all(browser.execute_script("return arguments[0].naturalWidth", i) == 128 for i in images)
    assert not browser.find_elements(By.CSS_SELECTOR, ".stamp-placeholder")
    position = browser.find_element(By.ID, "position-sexagesimal").text
    assert position.startswith(ra_hms(demo["ra"])[:8]) and dec_dms(demo["dec"])[:6] in position
    links = {a.text: a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#links-out a")}
    assert {"SIMBAD", "NED", "VizieR", "Aladin Lite (NVSS)", "NVSS cutout"} <= set(links)
    assert f"{demo['ra']:.3f}" in links["SIMBAD"] and f"{demo['ra']:.3f}" in links["VizieR"]
    # every legend entry is inside the plot, as the browser lays out its text
    inside = browser.execute_script(
        "const svg = document.querySelector('#lightcurve svg.lightcurve');"
        "const w = svg.viewBox.baseVal.width;"
        "return Array.from(svg.querySelectorAll('text.legend')).map(t => {"
        "  const b = t.getBBox(); return [t.textContent, b.x + b.width <= w, b.width > 0]; });")
    assert len(inside) >= 7 and all(ok and shown for _, ok, shown in inside), inside


def find_sources(browser, server, demo, source_url) -> None:
    """``/sources`` finds the candidate by name and by a position 10" north of it."""
    from selenium.webdriver.common.by import By

    from dsa110_contimg.web.formatting import dec_dms, ra_hms

    colons = (":", ":", "")
    north_10 = f"{ra_hms(demo['ra'], 2, colons)} {dec_dms(demo['dec'] + 10 / 3600, 1, colons)}"
    for query, radius in ((demo["ese_name"].lower(), ""), (north_10, '15"')):
        browser.get(server.url + "/sources")
        box = browser.find_element(By.ID, "search-q")
        box.clear()
        box.send_keys(query)
        if radius:
            browser.find_element(By.ID, "search-radius").clear()
            browser.find_element(By.ID, "search-radius").send_keys(radius)
        browser.find_element(By.ID, "search").click()
        # the unfiltered list is links too: wait for the answer's page, not the one before
        wait_for(lambda: "q=" in browser.current_url, f"the answer to {query}")
        first = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#sources a.source-link"), query)[0]
        assert first.text == demo["ese_name"] and first.get_attribute("href") == source_url, query
    shot(browser, "sources")


def moved_image_placeholder(browser, server, source_url) -> None:
    """An image moved away: its stamp is a placeholder that says so."""
    from selenium.webdriver.common.by import By

    image_id = browser.find_element(By.CSS_SELECTOR, "#stamps figure.stamp").get_attribute("data-image-id")
    path = Path(json.loads(server.get(f"/api/images/{image_id}")[1])["path"])
    moved = path.with_name(path.name + ".moved")
    path.rename(moved)
    try:
        browser.get(source_url)
        holder = browser.find_element(By.CSS_SELECTOR,
                                      f'#stamps figure.stamp[data-image-id="{image_id}"] .stamp-placeholder')
        assert "moved or deleted" in holder.text and path.name in holder.text
        assert len(browser.find_elements(By.CSS_SELECTOR, "#stamps figure.stamp img")) == 7
    finally:
        moved.rename(path)
