"""
The index page's echo console in a real headless Chromium (Debian's
chromium and chromium-driver, driven by Selenium), over ws: and wss:.
Screenshots are saved in artifacts/ at the top of the checkout.
"""

import os
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from helpers import DEADLINE, free_port, make_certificates, require, start_daemon

ARTIFACTS = Path(__file__).parent.parent / "artifacts"


@pytest.fixture
def browser(tmp_path, monkeypatch):
    chromium = require("chromium")
    driver = require("chromedriver")
    # Selenium must not look for drivers on the network.
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1000,700",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    # The wss daemon's certificate comes from a CA the test made.
    options.accept_insecure_certs = True
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    yield chrome
    chrome.quit()


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_echo_console(browser, tmp_path, scheme) -> None:
    """
    The page loads, connects to /socket (ws: or wss: to match the page),
    sends a text, shows its echo, and reports the connection closed with
    1001 when the daemon shuts down.
    """
    port = free_port()
    if scheme == "wss":
        paths = make_certificates(tmp_path)
        listen = (
            f"ssl:{port}:interface=127.0.0.1:privateKey={paths['key']}"
            f":certKey={paths['cert']}"
        )
        page = f"https://127.0.0.1:{port}/"
    else:
        listen = f"tcp:{port}:interface=127.0.0.1"
        page = f"http://127.0.0.1:{port}/"
    daemon = start_daemon(tmp_path, port, "--listen", listen)
    wait = WebDriverWait(browser, DEADLINE)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        browser.get(page)
        status = browser.find_element(By.ID, "status")
        wait.until(lambda _: status.get_attribute("data-state") == "open")
        log = browser.find_element(By.ID, "log")
        assert f"connected to {scheme}://127.0.0.1:{port}/socket" in log.text

        message = browser.find_element(By.ID, "message")
        message.clear()
        message.send_keys(f"Hello from Chromium over {scheme}")
        browser.find_element(By.CSS_SELECTOR, "#send button").click()
        wait.until(lambda _: f"< Hello from Chromium over {scheme}" in log.text)
        assert f"> Hello from Chromium over {scheme}" in log.text
        browser.save_screenshot(str(ARTIFACTS / f"console-{scheme}.png"))

        daemon.terminate()
        wait.until(lambda _: status.get_attribute("data-state") == "closed")
        assert "connection closed (code 1001, server shutting down)" in log.text
        # The browser's Origin is the page's: same origin, accepted.
        assert f"origin={page.rstrip('/')} " in daemon.wait_for(" close ")
        browser.save_screenshot(str(ARTIFACTS / f"console-{scheme}-closed.png"))
        assert os.path.getsize(ARTIFACTS / f"console-{scheme}.png") > 1000
    finally:
        assert daemon.stop() == 0, daemon.whole_log()
