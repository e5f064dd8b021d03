"""
The echo console's tools in a real headless Chromium against a real
daemon: the log's lines (time, direction, JSON, binary as hex with a
download), its filter and export, the round-trip chart, the copy buttons,
the subprotocol and compression the server agreed, Send following the
connection, reconnecting with a backoff, and the layout at 1280 and 390
pixels wide, light and dark (no sideways scrolling, 44 px touch targets,
no console errors, no serious axe-core violations). Screenshots are saved
in artifacts/ at the top of the checkout.
"""

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.expected_conditions import (
    text_to_be_present_in_element,
)
from selenium.webdriver.support.ui import Select, WebDriverWait

from support import DEADLINE
from support.browser import (
    axe_source,
    axe_violations,
    console_errors,
    downloaded,
    log_lines,
    small_targets,
    start_chromium,
)
from support.daemon import start_daemon

# Each test starts real processes: deselected by -m "not system".
pytestmark = pytest.mark.system

ARTIFACTS = Path(__file__).parent.parent / "artifacts"
# What Chromium logs when a WebSocket cannot connect: expected where a test
# makes it happen on purpose.
CONNECTION_FAILED = ("WebSocket connection to",)


@pytest.fixture
def downloads(tmp_path):
    return tmp_path / "downloads"


@pytest.fixture
def chrome(tmp_path, downloads):
    driver = start_chromium(tmp_path / "profile", downloads)
    yield driver
    driver.quit()


@pytest.fixture
def axe():
    # A fixture, so that a missing axe-core skips the test before a daemon
    # starts.
    return axe_source()


@pytest.fixture
def daemon(tmp_path):
    daemon = start_daemon(tmp_path, "--subprotocol", "chat")
    daemon.page = f"http://127.0.0.1:{daemon.port}/"
    daemon.url = f"ws://127.0.0.1:{daemon.port}/socket"
    yield daemon
    assert daemon.stop() == 0, daemon.whole_log()


def open_console(chrome, daemon, width: int = 1280) -> WebDriverWait:
    chrome.set_window_size(width, 1000)
    chrome.get(daemon.page)
    wait = WebDriverWait(chrome, DEADLINE)
    status = chrome.find_element(By.ID, "status")
    wait.until(lambda _: status.get_attribute("data-state") == "open")
    return wait


def type_and_send(chrome, text: str) -> None:
    message = chrome.find_element(By.ID, "message")
    message.clear()
    message.send_keys(text, Keys.ENTER)


def echoes(chrome) -> list[dict]:
    return [line for line in log_lines(chrome) if line["direction"] == "received"]


def send_samples(chrome, wait, tmp_path) -> bytes:
    """
    Send a text, a JSON object, three bytes as hex and a 300-byte file;
    wait for their four echoes; return the file's bytes.
    """
    type_and_send(chrome, "plain words")
    type_and_send(chrome, '{"hello": "world", "n": [1, 2.5, true, null]}')
    Select(chrome.find_element(By.ID, "kind")).select_by_value("hex")
    type_and_send(chrome, "00 ff 7f")
    Select(chrome.find_element(By.ID, "kind")).select_by_value("text")
    upload = tmp_path / "three-hundred.bin"
    content = bytes(range(256)) + b"wsecho" * 7 + b"!!"
    upload.write_bytes(content)
    chrome.find_element(By.ID, "file").send_keys(str(upload))
    wait.until(lambda _: len(echoes(chrome)) == 4)
    return content


def test_log_lines(chrome, daemon, tmp_path, downloads) -> None:
    """
    Every line has its time and direction; a JSON text is pretty-printed; a
    binary message shows its first 16 bytes, expands to all of them, and
    its download holds exactly its bytes; each echo has its round trip and
    the chart has a point per echo with the p50 and p99 of them.
    """
    wait = open_console(chrome, daemon)
    started = datetime.now(UTC)
    content = send_samples(chrome, wait, tmp_path)
    lines = log_lines(chrome)
    assert [(line["direction"], line["type"]) for line in lines] == [
        ("event", "event"),
        *[
            (direction, kind)
            for kind in ("text", "json", "binary", "binary")
            for direction in ("sent", "received")
        ],
    ]
    for line in lines:
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", line["time"]), line
        when = datetime.fromisoformat(line["datetime"].replace("Z", "+00:00"))
        assert abs((when - started).total_seconds()) < 60 + DEADLINE, line
        assert line["meta"].split()[1] == line["direction"], line
    sent_text, echo_text, _, echo_json, _, echo_hex, _, echo_file = lines[1:]
    assert echo_text["body"] == "plain words"
    assert echo_text["meta"].split()[2:4] == ["text,", "11"], echo_text
    assert json.loads(echo_json["body"]) == {
        "hello": "world",
        "n": [1, 2.5, True, None],
    }
    assert echo_json["body"] == json.dumps(json.loads(echo_json["body"]), indent=2)
    assert echo_hex["body"] == "binary, 3 bytes: 00 ff 7f"
    assert echo_file["body"] == (
        "binary, 300 bytes: 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f …"
    )
    # Echoes have a round trip; what was sent has none.
    assert sent_text["rtt"] is None
    assert all(re.fullmatch(r"[\d.]+ ms", e["rtt"]) for e in echoes(chrome))

    # Expanded: the whole message, 16 bytes a line, with offsets and ASCII.
    entry = chrome.find_elements(By.CSS_SELECTOR, "#log .entry")[-1]
    dump = entry.find_element(By.CSS_SELECTOR, ".dump")
    assert not dump.is_displayed()
    entry.find_element(By.TAG_NAME, "summary").click()
    wait.until(lambda _: dump.text.count("\n") == 18)
    rows = dump.text.splitlines()
    assert rows[0].startswith("0000  00 01 02 03 04 05 06 07  08 09 0a 0b")
    assert rows[-1].startswith("0120  65 63 68 6f 77 73 65 63  68 6f 21 21 ")
    assert rows[-1].endswith("|echowsecho!!|")
    offsets = [int(row.split()[0], 16) for row in rows]
    assert offsets == list(range(0, 300, 16))
    hex_digits = "".join("".join(row.split("|")[0].split()[1:]) for row in rows)
    assert bytes.fromhex(hex_digits) == content

    before = {p.name for p in downloads.iterdir()} if downloads.exists() else set()
    link = entry.find_element(By.CSS_SELECTOR, "a.download")
    assert link.get_attribute("href").startswith("blob:")
    link.click()
    assert downloaded(downloads, "wsecho-received-", before) == content

    # The chart: a point per echo, and its p50 and p99 those of the log's
    # round trips (nearest rank).
    wait.until(
        lambda _: len(chrome.find_elements(By.CSS_SELECTOR, "#rtt-chart circle")) == 4
    )
    stats = chrome.find_element(By.ID, "rtt-stats").text
    shown = sorted((float(e["rtt"].split()[0]), e["rtt"]) for e in echoes(chrome))
    assert stats.startswith(
        f"4 round trips: p50 {shown[1][1]}, p99 {shown[3][1]}, last "
    ), (stats, shown)
    labels = [
        t.text for t in chrome.find_elements(By.CSS_SELECTOR, "#rtt-chart .level text")
    ]
    assert labels == [f"p50 {shown[1][1]}", f"p99 {shown[3][1]}"]
    assert console_errors(chrome) == []
    # All of it written as text: the page's policy refuses markup from
    # strings (Trusted Types), and nothing on the page tried (no error
    # above).
    refused = chrome.execute_script(
        "try { document.createElement('div').innerHTML = '<b>x</b>'; return 'allowed'; }"
        " catch (e) { return e.name; }"
    )
    assert refused == "TypeError"
    assert ["TrustedHTML" in m for m in console_errors(chrome)] == [True]


def test_filter_and_export(chrome, daemon, tmp_path, downloads) -> None:
    """
    The filter hides the lines that do not contain its text or are not of
    the kind chosen, and says how many it shows; the export downloads the
    whole session as JSON: every message with its time, direction, text or
    bytes (base64), and every round trip.
    """
    wait = open_console(chrome, daemon)
    content = send_samples(chrome, wait, tmp_path)
    total = len(log_lines(chrome))

    search = chrome.find_element(By.ID, "filter")
    search.send_keys("WORLD")
    visible = [line for line in log_lines(chrome) if not line["hidden"]]
    assert [(v["direction"], v["type"]) for v in visible] == [
        ("sent", "json"),
        ("received", "json"),
    ]
    shown = chrome.find_element(By.ID, "shown")
    assert shown.text == f"showing 2 of {total} lines"
    assert len(chrome.find_elements(By.CSS_SELECTOR, "#log .entry:not([hidden])")) == 2
    search.clear()
    search.send_keys(" ")  # an input event with no text: everything
    Select(chrome.find_element(By.ID, "filter-kind")).select_by_value("received")
    visible = [line for line in log_lines(chrome) if not line["hidden"]]
    assert [v["direction"] for v in visible] == ["received"] * 4
    Select(chrome.find_element(By.ID, "filter-kind")).select_by_value("event")
    visible = [line for line in log_lines(chrome) if not line["hidden"]]
    assert [v["body"] for v in visible] == [log_lines(chrome)[0]["body"]] and visible[
        0
    ]["body"].startswith("connected to ")
    Select(chrome.find_element(By.ID, "filter-kind")).select_by_value("all")
    assert not any(line["hidden"] for line in log_lines(chrome))
    assert shown.text == ""

    before = {p.name for p in downloads.iterdir()} if downloads.exists() else set()
    chrome.find_element(By.ID, "export").click()
    session = json.loads(downloaded(downloads, "wsecho-session-", before))
    assert session["url"] == daemon.url
    assert session["extensions"].startswith("permessage-deflate")
    entries = session["entries"]
    assert len(entries) == total
    received = [e for e in entries if e["direction"] == "received"]
    assert [e.get("text") for e in received[:2]] == [
        "plain words",
        '{"hello": "world", "n": [1, 2.5, true, null]}',
    ]
    assert [e["base64"] for e in received[2:]] == ["AP9/", _b64(content)]
    assert [e["size"] for e in received] == [11, 45, 3, 300]
    assert all(
        datetime.fromisoformat(e["time"].replace("Z", "+00:00")) for e in entries
    )
    assert session["round_trips_ms"] == [e["round_trip_ms"] for e in received]
    assert session["counts"] == {
        "sent": 4,
        "sent_bytes": 359,
        "received": 4,
        "received_bytes": 359,
    }
    assert console_errors(chrome) == []


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def test_copy_buttons(chrome, daemon) -> None:
    """
    Each terminal command has a copy button that puts that command, with
    this server's URL and the subprotocols offered, on the clipboard.
    """
    chrome.execute_cdp_cmd(
        "Browser.grantPermissions",
        {
            "origin": daemon.page.rstrip("/"),
            "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"],
        },
    )
    open_console(chrome, daemon)
    chrome.set_script_timeout(DEADLINE)
    read = "navigator.clipboard.readText().then(arguments[0], (e) => arguments[0]('! ' + e))"
    items = chrome.find_elements(By.CSS_SELECTOR, "#commands li")
    assert len(items) == 4
    for item in items:
        command = item.find_element(By.TAG_NAME, "code").text
        button = item.find_element(By.TAG_NAME, "button")
        assert button.get_attribute("aria-label").startswith("Copy the ")
        button.click()
        WebDriverWait(chrome, DEADLINE).until(
            text_to_be_present_in_element((By.ID, "copied"), f"Copied: {command}")
        )
        assert chrome.execute_async_script(read) == command

    chrome.find_element(By.ID, "subprotocols").send_keys("chat, v2.json")
    websocat = chrome.find_elements(By.CSS_SELECTOR, "#commands li")[1]
    assert websocat.find_element(By.TAG_NAME, "code").text == (
        f"websocat --protocol chat,v2.json {daemon.url}"
    )
    # Without the Clipboard API (the page over plain http from another
    # host), the copy takes the old path; the test reads the clipboard
    # through the API the page no longer sees.
    chrome.execute_script(
        "Object.defineProperty(navigator, 'clipboard', {value: undefined})"
    )
    command = (
        f"wsecho-client --subprotocol chat --subprotocol v2.json {daemon.url} "
        '"Hello, world!"'
    )
    wsecho = chrome.find_elements(By.CSS_SELECTOR, "#commands li")[0]
    wsecho.find_element(By.TAG_NAME, "button").click()
    WebDriverWait(chrome, DEADLINE).until(
        text_to_be_present_in_element((By.ID, "copied"), f"Copied: {command}")
    )
    hidden = (
        "Object.getOwnPropertyDescriptor(Navigator.prototype, 'clipboard')"
        ".get.call(navigator).readText().then(arguments[0], (e) => arguments[0]('! ' + e))"
    )
    assert chrome.execute_async_script(hidden) == command
    assert console_errors(chrome) == []


def test_subprotocol_and_compression(chrome, daemon) -> None:
    """
    The page offers the subprotocols given and shows the one the server
    chose and the extensions it agreed (permessage-deflate); when the
    server accepts none of those offered, the log says why the browser
    refused the connection.
    """
    wait = open_console(chrome, daemon)
    assert chrome.find_element(By.ID, "protocol").text == "none"
    assert chrome.find_element(By.ID, "deflate").text == "permessage-deflate"
    assert chrome.find_element(By.ID, "extensions").text.startswith(
        "permessage-deflate"
    )

    chrome.find_element(By.ID, "subprotocols").send_keys("superchat chat")
    chrome.find_element(By.ID, "reconnect").click()
    protocol = chrome.find_element(By.ID, "protocol")
    wait.until(lambda _: protocol.text == "chat")
    assert chrome.find_element(By.ID, "status").text == "open"
    # The first connection, closed by the reconnection, had none.
    assert " subprotocol=- " in daemon.wait_for(" close ")
    type_and_send(chrome, "over chat")
    wait.until(lambda _: [e["body"] for e in echoes(chrome)] == ["over chat"])
    connected = [
        e["body"] for e in log_lines(chrome) if e["body"].startswith("connected")
    ]
    assert connected[-1].endswith(
        "offered superchat, chat; subprotocol chat; extensions "
        + chrome.find_element(By.ID, "extensions").text
    )

    field = chrome.find_element(By.ID, "subprotocols")
    field.clear()
    field.send_keys("superchat")
    chrome.find_element(By.ID, "reconnect").click()
    status = chrome.find_element(By.ID, "status")
    wait.until(lambda _: status.get_attribute("data-state") == "closed")
    wait.until(
        lambda _: (
            "accepts none of the subprotocols offered (superchat)"
            in log_lines(chrome)[-1]["body"]
        )
    )
    assert chrome.find_element(By.ID, "send-button").is_enabled() is False
    # The chat connection's close line (the refused one may log first).
    assert " close " in daemon.wait_for(" subprotocol=chat ")
    assert console_errors(chrome, CONNECTION_FAILED) == []


def test_send_follows_the_connection_and_reconnects(chrome, tmp_path) -> None:
    """
    Send, the file input and Close work only while the connection is open;
    with reconnection on, the page reconnects after the daemon restarts on
    the same port (retrying with a growing delay meanwhile), and not after
    a close of its own.
    """
    first = start_daemon(tmp_path)
    first.page = f"http://127.0.0.1:{first.port}/"
    second = None
    try:
        wait = open_console(chrome, first)
        controls = [
            chrome.find_element(By.ID, i) for i in ("send-button", "file", "close")
        ]
        assert all(c.is_enabled() for c in controls)
        status = chrome.find_element(By.ID, "status")

        # Closed by the user: everything off, nothing sent, no reconnection.
        chrome.find_element(By.ID, "auto-reconnect").click()
        chrome.find_element(By.ID, "close").click()
        wait.until(lambda _: status.text == "closed 1000")
        assert not any(c.is_enabled() for c in controls)
        assert chrome.find_element(By.ID, "reconnect").text == "Connect"
        type_and_send(chrome, "into the void")
        wait.until(
            lambda _: log_lines(chrome)[-1]["body"] == "not connected: nothing sent"
        )
        assert "sent 0 messages" in chrome.find_element(By.ID, "counts").text
        assert chrome.find_element(By.ID, "retry").text == ""

        chrome.find_element(By.ID, "reconnect").click()
        wait.until(lambda _: status.get_attribute("data-state") == "open")
        assert all(c.is_enabled() for c in controls)

        # Dropped by the server: the page retries until it is back. (The
        # status moves on at the first retry: the log keeps what happened.)
        first.terminate()
        wait.until(
            lambda _: any(
                e["body"].startswith("connection closed 1001 server shutting down")
                for e in log_lines(chrome)
            )
        )
        assert not any(c.is_enabled() for c in controls)
        assert first.stop() == 0, first.whole_log()
        retry = chrome.find_element(By.ID, "retry")
        wait.until(
            lambda _: (
                sum("reconnecting in" in e["body"] for e in log_lines(chrome)) >= 2
                # Shown while a retry waits (not during an attempt).
                and "reconnecting in" in retry.text
            )
        )
        delays = [
            e["body"]
            for e in log_lines(chrome)
            if e["body"].startswith("reconnecting in")
        ]
        assert delays[:2] == [
            "reconnecting in 1 second (attempt 1)",
            "reconnecting in 2 seconds (attempt 2)",
        ]
        ARTIFACTS.mkdir(exist_ok=True)
        chrome.save_screenshot(str(ARTIFACTS / "console-reconnecting.png"))

        second = start_daemon(tmp_path, "--port", str(first.port))
        # The retry delay doubles up to 30 s: the next attempt is at most
        # that far away.
        WebDriverWait(chrome, DEADLINE + 30).until(
            lambda _: status.get_attribute("data-state") == "open"
        )
        assert chrome.find_element(By.ID, "retry").text == ""
        assert all(c.is_enabled() for c in controls)
        type_and_send(chrome, "back again")
        wait.until(
            lambda _: echoes(chrome) and echoes(chrome)[-1]["body"] == "back again"
        )
        assert console_errors(chrome, CONNECTION_FAILED) == []
    finally:
        assert first.stop() == 0, first.whole_log()
        if second is not None:
            assert second.stop() == 0, second.whole_log()


_ALIGNED = """
const box = (id) => document.getElementById(id).getBoundingClientRect();
return {message: box("message"), file: box("file"), reason: box("close-reason"),
        kind: box("kind"), send: box("send-button"), code: box("close-code"),
        width: innerWidth};
"""


@pytest.mark.parametrize("width", [1280, 390])
def test_layout_and_accessibility(axe, chrome, daemon, tmp_path, width) -> None:
    """
    At 1280 and 390 pixels wide, light and dark, with every kind of line in
    the log and a message expanded: no sideways scrolling; the fields
    start at one edge (the reason field and the file input lined up) and
    Send shares its row; every button, field, select and checkbox label is
    at least 44 px either way; no console errors; no serious or critical
    axe-core violation.
    """
    wait = open_console(chrome, daemon, width)
    send_samples(chrome, wait, tmp_path)
    chrome.find_elements(By.CSS_SELECTOR, "#log summary")[-1].click()
    chrome.find_element(By.ID, "auto-reconnect").click()
    wait.until(
        lambda _: len(chrome.find_elements(By.CSS_SELECTOR, "#rtt-chart circle")) == 4
    )
    ARTIFACTS.mkdir(exist_ok=True)
    for scheme in ("light", "dark"):
        chrome.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        )
        boxes = chrome.execute_script(_ALIGNED)
        assert boxes["width"] == width
        overflow = chrome.execute_script(
            "return document.documentElement.scrollWidth - window.innerWidth"
        )
        assert overflow <= 0, f"{overflow} px of sideways scrolling"
        # The expanded message's hex dump fits its line too (8 bytes a line
        # on a phone).
        dump = chrome.execute_script(
            "const d = [...document.querySelectorAll('#log .dump')].pop();"
            "return [d.textContent.split('\\n').length, d.scrollWidth - d.clientWidth]"
        )
        assert dump == [300 // (16 if width > 600 else 8) + 1, 0]
        lefts = {
            round(boxes[k]["left"])
            for k in ("message", "file", "reason", "kind", "code")
        }
        assert len(lefts) == 1, boxes
        assert round(boxes["file"]["right"]) == round(boxes["message"]["right"]), boxes
        assert boxes["send"]["top"] == boxes["kind"]["top"], boxes
        # The keyboard's hints are on the page, next to the field.
        hint = chrome.find_element(By.ID, "message-hint")
        assert hint.is_displayed()
        assert hint.text == "Enter sends; Shift+Enter starts a new line."
        assert (
            chrome.find_element(By.ID, "message").get_attribute("aria-describedby")
            == "message-hint"
        )
        assert small_targets(chrome) == []
        assert axe_violations(chrome, axe) == []
        assert console_errors(chrome) == []
        # The whole page from its top, not only the window's height.
        chrome.execute_script("window.scrollTo(0, 0)")
        height = chrome.execute_script("return document.documentElement.scrollHeight")
        chrome.set_window_size(width, height + 100)
        suffix = "" if scheme == "light" else "-dark"
        chrome.save_screenshot(str(ARTIFACTS / f"console-page-{width}px{suffix}.png"))
        chrome.set_window_size(width, 1000)
