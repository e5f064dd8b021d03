"""
A real headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium) for the page's tests, and what they measure in it: the browser's
console, downloads, touch targets, and axe-core's accessibility checks.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from . import DEADLINE, require

# Chromium's own WebSocket to arguments[0]: text, binary, 1 MiB of UTF-8
# text and 1 MiB of binary, each checked against its echo, then a close
# with 4000 and arguments[1]; the result: how many came back as sent, the
# close code and reason, the extensions agreed, and the HTTP version the
# page came over.
ECHO_SCRIPT = """
const [url, reason, done] = arguments;
const big = new Uint8Array(1 << 20).map((_, i) => (i * 7919) & 255);
const messages = ["Hello, world!", new Uint8Array([0, 1, 2, 255]),
                  "\\u00e9".repeat(1 << 19), big];
const same = (a, b) => typeof a === "string" ? a === b :
  b instanceof ArrayBuffer && a.length === b.byteLength &&
  new Uint8Array(b).every((x, i) => x === a[i]);
const ws = new WebSocket(url);
ws.binaryType = "arraybuffer";
let next = 0, echoed = 0;
ws.onopen = () => ws.send(messages[next]);
ws.onmessage = (event) => {
  if (same(messages[next], event.data)) { echoed += 1; }
  next += 1;
  if (next < messages.length) { ws.send(messages[next]); }
  else { ws.close(4000, reason); }
};
ws.onclose = (event) => done({echoed, code: event.code, reason: event.reason,
  extensions: ws.extensions,
  protocol: performance.getEntriesByType("navigation")[0].nextHopProtocol});
"""

CHECKOUT = Path(__file__).resolve().parent.parent.parent
# Where .ci/run installs axe-core (npm install --prefix tests axe-core);
# WSECHO_AXE names another copy of axe.min.js.
AXE = CHECKOUT / "tests" / "node_modules" / "axe-core" / "axe.min.js"


def start_chromium(profile: Path, downloads: Path | None = None) -> Any:
    """
    A headless Chromium with its own profile in C{profile}, logging its
    console, trusting any certificate (the tests make their own CA), and
    saving downloads in C{downloads}.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = require("chromium")
    driver = require("chromedriver")
    # Selenium must not look for drivers on the network.
    os.environ["SE_OFFLINE"] = "true"
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
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.accept_insecure_certs = True
    # The console's messages: errors, and Content-Security-Policy violations.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    if downloads is not None:
        downloads.mkdir(parents=True, exist_ok=True)
        chrome.execute_cdp_cmd(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": str(downloads)},
        )
    return chrome


def console_errors(driver: Any, allowed: tuple[str, ...] = ()) -> list[str]:
    """
    The browser console's errors and warnings since the last call (policy
    violations among them), but those containing one of C{allowed}.
    """
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] in ("SEVERE", "WARNING")
        and not any(text in entry["message"] for text in allowed)
    ]


def downloaded(directory: Path, name_start: str, before: set[str]) -> bytes:
    """
    The content of the file whose name starts with C{name_start} that
    appeared in C{directory} (not in C{before}), once Chromium has finished
    writing it.
    """
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        done = [
            p
            for p in directory.iterdir()
            if p.name.startswith(name_start)
            and p.name not in before
            and not p.name.endswith(".crdownload")
        ]
        if done:
            (path,) = done
            return path.read_bytes()
        time.sleep(0.05)
    raise AssertionError(
        f"no download {name_start}* in {sorted(p.name for p in directory.iterdir())}"
    )


# Every control a finger must hit: buttons, fields, selects, the labels of
# checkboxes (the box itself is small; its label is the target), links
# that act as buttons, and the summaries that expand a message.
_TARGETS = """
const targets = document.querySelectorAll(
  "button, input:not([type=checkbox]):not([type=radio]), select, textarea, " +
  "label:has(> input[type=checkbox]), a.download, summary");
return Array.from(targets).filter((e) => e.getClientRects().length).map((e) => {
  const box = e.getBoundingClientRect();
  return {what: e.outerHTML.slice(0, 80), width: box.width, height: box.height};
});
"""


def small_targets(driver: Any, least: float = 44.0) -> list[dict[str, Any]]:
    """
    The visible controls smaller than C{least} CSS pixels either way.
    """
    found: list[dict[str, Any]] = driver.execute_script(_TARGETS)
    assert found, "no controls found"
    return [t for t in found if t["width"] < least or t["height"] < least]


def axe_source() -> str:
    """
    axe-core's script, from WSECHO_AXE or tests/node_modules; missing, the
    test is skipped, or fails under WSECHO_REQUIRE_TOOLS=1.
    """
    import pytest

    path = Path(os.environ.get("WSECHO_AXE", AXE))
    if not path.is_file():
        message = (
            f"axe-core is not at {path} "
            "(npm install --no-save --prefix tests axe-core, as .ci/run does)"
        )
        if os.environ.get("WSECHO_REQUIRE_TOOLS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path.read_text()


def axe_violations(driver: Any, source: str) -> list[dict[str, Any]]:
    """
    axe-core's serious and critical violations on the current page (WCAG
    2.x A and AA, and best practices), each with the elements at fault.
    """
    driver.set_script_timeout(DEADLINE)
    if not driver.execute_script("return typeof axe !== 'undefined'"):
        # Injected by WebDriver, so the page's CSP does not apply to it.
        driver.execute_script(source)
    result = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        axe.run(document, {resultTypes: ["violations"]})
          .then((r) => done(r.violations.map((v) => ({id: v.id, impact: v.impact,
            help: v.help, nodes: v.nodes.map((n) => n.target.join(" ") + ": " +
            n.failureSummary)}))))
          .catch((e) => done([{id: "axe-error", impact: "critical", help: String(e),
            nodes: []}]));
        """
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


_LINES = """
return Array.from(document.querySelectorAll("#log .entry")).map((e) => {
  const body = e.querySelector(".body summary") || e.querySelector(".body");
  const rtt = e.querySelector(".rtt");
  return {direction: e.dataset.direction, type: e.dataset.type, hidden: e.hidden,
    time: e.querySelector("time").textContent, datetime: e.querySelector("time").dateTime,
    meta: e.querySelector(".meta").textContent, body: body.textContent,
    rtt: rtt ? rtt.textContent : null};
});
"""


def log_lines(driver: Any) -> list[dict[str, Any]]:
    """
    The console's log, a dict per line: direction (sent, received,
    event), type (text, json, binary, event), hidden (by the filter), time
    as shown and as ISO 8601, the meta line, the message as shown (a
    binary's summary) and the round trip as shown (or None).
    """
    lines: list[dict[str, Any]] = driver.execute_script(_LINES)
    return lines
