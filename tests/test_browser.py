"""
The index page's echo console in a real headless Chromium (Debian's
chromium and chromium-driver, driven by Selenium), over ws: and wss:, at
1280 and 390 pixels wide, light and dark, and the site's error pages
(tests/test_console.py has the console's tools).
Screenshots are saved in artifacts/ at the top of the checkout.
"""

import os
import re
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from support import DEADLINE
from support.browser import ECHO_SCRIPT, log_lines, start_chromium
from support.certs import make_certificates
from support.daemon import start_daemon

# Each test starts real processes: deselected by -m "not system".
pytestmark = pytest.mark.system

ARTIFACTS = Path(__file__).parent.parent / "artifacts"


@pytest.fixture
def browser(tmp_path):
    chrome = start_chromium(tmp_path / "profile")
    yield chrome
    chrome.quit()


def _echoes(browser) -> list[str]:
    """
    The received lines of the console's log: their text, then the round
    trip.
    """
    return [
        f"{line['body']}  ({line['rtt']})"
        for line in log_lines(browser)
        if line["direction"] == "received"
    ]


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_echo_console(browser, tmp_path, scheme) -> None:
    """
    The page loads, connects to /socket (ws: or wss: to match the page),
    sends a text, shows its echo, and reports the connection closed with
    1001 when the daemon shuts down.
    """
    if scheme == "wss":
        paths = make_certificates(tmp_path)
        listen = (
            f"ssl:0:interface=127.0.0.1:privateKey={paths['key']}"
            f":certKey={paths['cert']}"
        )
    else:
        listen = "tcp:0:interface=127.0.0.1"
    daemon = start_daemon(tmp_path, "--listen", listen)
    page = f"{'https' if scheme == 'wss' else 'http'}://127.0.0.1:{daemon.port}/"
    wait = WebDriverWait(browser, DEADLINE)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        browser.get(page)
        status = browser.find_element(By.ID, "status")
        wait.until(lambda _: status.get_attribute("data-state") == "open")
        log = browser.find_element(By.ID, "log")
        assert f"connected to {scheme}://127.0.0.1:{daemon.port}/socket" in log.text

        message = browser.find_element(By.ID, "message")
        message.clear()
        message.send_keys(f"Hello from Chromium over {scheme}")
        browser.find_element(By.CSS_SELECTOR, "#send button").click()
        wait.until(lambda _: _echoes(browser))
        sent = [line for line in log_lines(browser) if line["direction"] == "sent"]
        assert [line["body"] for line in sent] == [f"Hello from Chromium over {scheme}"]
        (echo,) = _echoes(browser)
        assert re.fullmatch(r"Hello from Chromium over \w+  \(\d+\.\d ms\)", echo)
        browser.save_screenshot(str(ARTIFACTS / f"console-{scheme}.png"))

        daemon.terminate()
        wait.until(lambda _: status.get_attribute("data-state") == "closed")
        assert "connection closed 1001 server shutting down" in log.text
        assert status.text == "closed 1001 server shutting down"
        # The browser's Origin is the page's: same origin, accepted.
        assert f"origin={page.rstrip('/')} " in daemon.wait_for(" close ")
        browser.save_screenshot(str(ARTIFACTS / f"console-{scheme}-closed.png"))
        assert os.path.getsize(ARTIFACTS / f"console-{scheme}.png") > 1000
    finally:
        assert daemon.stop() == 0, daemon.whole_log()


@pytest.fixture
def daemon(tmp_path):
    daemon = start_daemon(
        tmp_path,
    )
    port = daemon.port
    daemon.page = f"http://127.0.0.1:{port}/"
    daemon.url = f"ws://127.0.0.1:{port}/socket"
    yield daemon
    assert daemon.stop() == 0, daemon.whole_log()


def _no_policy_violations(browser) -> None:
    messages = [entry["message"] for entry in browser.get_log("browser")]
    assert not [m for m in messages if "Content Security Policy" in m], messages


@pytest.mark.parametrize("width", [1280, 390])
def test_console_features(browser, daemon, tmp_path, width) -> None:
    """
    At 1280 and 390 pixels wide: long messages wrap (no sideways
    scrolling); text sent with the keyboard, binary from hex and from a
    file are echoed, each with its round trip; the counts follow and Clear
    empties them; the terminal commands name this server's URL; every
    field has a label; a close with a code and reason shows them as the
    status (the echo sends them back).
    """
    browser.set_window_size(width, 900)
    wait = WebDriverWait(browser, DEADLINE)
    browser.get(daemon.page)
    status = browser.find_element(By.ID, "status")
    wait.until(lambda _: status.get_attribute("data-state") == "open")
    log = browser.find_element(By.ID, "log")
    message = browser.find_element(By.ID, "message")

    long = "x" * 3000
    message.clear()
    message.send_keys(long, Keys.ENTER)  # the keyboard sends
    wait.until(lambda _: log.text.count("x" * 100) >= 2)
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth"
    )
    assert overflow <= 0, f"{overflow} px of sideways scrolling"

    Select(browser.find_element(By.ID, "kind")).select_by_value("hex")
    message.clear()
    message.send_keys("00 ff 7f")
    browser.find_element(By.CSS_SELECTOR, "#send button[type=submit]").click()
    wait.until(lambda _: "binary, 3 bytes: 00 ff 7f  (" in " ".join(_echoes(browser)))

    upload = tmp_path / "five.bin"
    upload.write_bytes(b"\x01\x02\x03\x04\x05")
    browser.find_element(By.ID, "file").send_keys(str(upload))
    wait.until(lambda _: len(_echoes(browser)) == 3)
    echoes = _echoes(browser)
    assert echoes[2].startswith("binary, 5 bytes: 01 02 03 04 05  (")
    sent = [line["body"] for line in log_lines(browser) if line["direction"] == "sent"]
    assert sent[2] == "binary, five.bin, 5 bytes: 01 02 03 04 05"
    assert all(re.search(r"\(\d+\.\d ms\)$", e) for e in echoes)
    counts = browser.find_element(By.ID, "counts")
    assert counts.text == ("sent 3 messages (3008 bytes), received 3 (3008 bytes)"), (
        counts.text
    )

    commands = browser.find_element(By.ID, "commands").text
    for command in (
        f'wsecho-client {daemon.url} "Hello, world!"',
        f"websocat {daemon.url}",
        f"wscat -c {daemon.url}",
        f"python -m websockets {daemon.url}",
    ):
        assert command in commands, commands
    unlabelled = browser.execute_script(
        "return Array.from(document.querySelectorAll('input, select, textarea'))"
        ".filter(e => e.labels.length === 0).map(e => e.id)"
    )
    assert unlabelled == []
    icon = browser.execute_script(
        "return document.querySelector('link[rel=icon]').getAttribute('href')"
    )
    assert icon == "/favicon.svg"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"console-{width}px.png"))

    browser.find_element(By.ID, "clear").click()
    assert log.text == ""
    assert counts.text == "sent 0 messages (0 bytes), received 0 (0 bytes)"

    code = browser.find_element(By.ID, "close-code")
    code.clear()
    code.send_keys("4000")
    browser.find_element(By.ID, "close-reason").send_keys("bye")
    browser.find_element(By.ID, "close").click()
    wait.until(lambda _: status.get_attribute("data-state") == "closed")
    assert status.text == "closed 4000 bye"
    _no_policy_violations(browser)
    assert os.path.getsize(ARTIFACTS / f"console-{width}px.png") > 1000


def test_dark_theme_and_error_pages(browser, daemon) -> None:
    """
    With prefers-color-scheme: dark the page is dark; the site's own pages
    answer 404 and 426, styled like the rest.
    """
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    browser.get(daemon.page)
    WebDriverWait(browser, DEADLINE).until(
        lambda _: (
            browser.find_element(By.ID, "status").get_attribute("data-state") == "open"
        )
    )
    background = browser.execute_script(
        "return getComputedStyle(document.body).backgroundColor"
    )
    assert sum(map(int, re.findall(r"\d+", background)[:3])) < 150, background
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "console-dark.png"))
    for path, heading in (
        ("nope", "404 Not Found"),
        ("socket", "426 Upgrade Required"),
    ):
        browser.get(daemon.page + path)
        assert browser.find_element(By.TAG_NAME, "h1").text == heading
        # The site's style sheet applies (the dark background here too).
        background = browser.execute_script(
            "return getComputedStyle(document.body).backgroundColor"
        )
        assert sum(map(int, re.findall(r"\d+", background)[:3])) < 150, background
        browser.save_screenshot(str(ARTIFACTS / f"error-{path}.png"))
    _no_policy_violations(browser)


def test_chromium_as_a_client(browser, daemon) -> None:
    """
    Chromium's own WebSocket (it offers permessage-deflate) sends text and
    binary, small and 1 MiB, gets every echo back as sent, and gets its
    close code and reason back.
    """
    browser.get(daemon.page)
    browser.set_script_timeout(DEADLINE)
    result = browser.execute_async_script(ECHO_SCRIPT, daemon.url, "bye")
    assert result == {
        "echoed": 4,
        "code": 4000,
        "reason": "bye",
        "extensions": result["extensions"],
        "protocol": result["protocol"],
    }
    assert result["extensions"].startswith("permessage-deflate")
