"""
Chromium over HTTP/2: the console loaded over https:// from a daemon with
TLS (ALPN h2), and its WebSockets opened on that h2 connection with RFC
8441's extended CONNECT, as Chromium does when the server's SETTINGS allow
it; the daemon's close lines say http=2.
"""

import re

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from support import DEADLINE
from support.browser import ECHO_SCRIPT, log_lines, start_chromium
from support.certs import make_certificates
from support.daemon import start_daemon
from support.markers import needs_http2

# Each test starts real processes: deselected by -m "not system".
pytestmark = [pytest.mark.system, needs_http2]


@pytest.fixture
def tls_daemon(tmp_path):
    paths = make_certificates(tmp_path)
    daemon = start_daemon(
        tmp_path,
        "--listen",
        f"ssl:0:interface=127.0.0.1:privateKey={paths['key']}:certKey={paths['cert']}",
    )
    yield daemon
    assert daemon.stop() == 0
    log = daemon.whole_log()
    assert "Traceback" not in log and "Unhandled" not in log, log


@pytest.fixture
def browser(tmp_path):
    chrome = start_chromium(tmp_path / "profile")
    yield chrome
    chrome.quit()


def test_chromium_websocket_over_h2(browser, tls_daemon) -> None:
    """
    The console page comes over h2; the console's own WebSocket echoes a
    text typed in it; Chromium's WebSocket sends text and binary (1 MiB
    too), gets each echo as sent, and its close code and reason back; the
    daemon's close line for it says code 4000 and http=2.
    """
    port = tls_daemon.port
    wait = WebDriverWait(browser, DEADLINE)
    browser.get(f"https://127.0.0.1:{port}/")
    protocol = browser.execute_script(
        "return performance.getEntriesByType('navigation')[0].nextHopProtocol"
    )
    assert protocol == "h2"
    status = browser.find_element(By.ID, "status")
    wait.until(lambda _: status.get_attribute("data-state") == "open")
    message = browser.find_element(By.ID, "message")
    message.clear()
    message.send_keys("typed over h2")
    browser.find_element(By.CSS_SELECTOR, "#send button").click()
    wait.until(
        lambda _: (
            [
                line["body"]
                for line in log_lines(browser)
                if line["direction"] == "received"
            ]
            == ["typed over h2"]
        )
    )
    browser.set_script_timeout(DEADLINE)
    result = browser.execute_async_script(
        ECHO_SCRIPT, f"wss://127.0.0.1:{port}/socket", "chromium-h2"
    )
    assert result == {
        "echoed": 4,
        "code": 4000,
        "reason": "chromium-h2",
        "extensions": result["extensions"],
        "protocol": "h2",
    }
    line = tls_daemon.wait_for("reason='chromium-h2'")
    assert " code=4000 " in line and " clean=True " in line, line
    assert re.search(r" http=2\b", line), line
    assert "messages=4/4" in line, line
    # Chromium gone, the console's WebSocket (which navigating away leaves
    # open on the h2 connection) ends with it, also logged as over h2.
    browser.quit()
    line = tls_daemon.wait_for(" close ")
    assert "closed_by=client" in line and re.search(r" http=2\b", line), line
