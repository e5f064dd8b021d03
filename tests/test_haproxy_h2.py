"""
HAProxy 2.6 in front, speaking HTTP/2 to wsecho (deploy/haproxy.cfg's
C{wsecho_h2} backend: C{proto h2}, C{ws h2}): HTTP/1.1 WebSocket clients
are relayed to the daemon as RFC 8441 streams, and the whole Autobahn
TestSuite passes through it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from urllib.request import urlopen

import pytest
from websockets.sync.client import connect

from support import BIN, DEADLINE, poll_until, require
from support.daemon import free_port, start_daemon
from support.markers import needs_http2

# Each test starts real processes: deselected by -m "not system".
pytestmark = [pytest.mark.system, needs_http2]

ROOT = Path(__file__).parent.parent
# The TestSuite's 517 cases (1.* to 13.*): 514 OK, and 3 INFORMATIONAL
# (7.1.6, 7.13.1, 7.13.2).
ALL_CASES = 517


def h2_config(front: int, port: int) -> str:
    """
    deploy/haproxy.cfg with its frontend on C{front} sent to the h2 backend,
    that backend's first server on C{port} and no second one, and a faster
    health check.
    """
    text = (ROOT / "deploy" / "haproxy.cfg").read_text()
    assert "proto h2 ws h2" in text and "default_backend wsecho\n" in text
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{front}")
    text = text.replace("default_backend wsecho\n", "default_backend wsecho_h2\n")
    text = text.replace("127.0.0.1:8181", f"127.0.0.1:{port}")
    lines = [line for line in text.splitlines() if "127.0.0.1:8182" not in line]
    return "\n".join(lines).replace("inter 2s", "inter 200ms") + "\n"


class Proxied:
    """
    A daemon and HAProxy in front of it over h2.
    """

    def __init__(self, tmp_path: Path) -> None:
        haproxy = require("haproxy")
        self.daemon = start_daemon(tmp_path)
        self.front = free_port()  # HAProxy does not say where it listens
        config = tmp_path / "haproxy.cfg"
        config.write_text(h2_config(self.front, self.daemon.port))
        self.log = tmp_path / "haproxy.log"
        self.proxy = subprocess.Popen(
            [haproxy, "-db", "-f", str(config)],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        self.url = f"ws://127.0.0.1:{self.front}/socket"
        poll_until(self._ready)

    def _ready(self) -> bool:
        # HAProxy answers, and the daemon answers it over h2.
        try:
            with urlopen(f"http://127.0.0.1:{self.front}/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    stopped = False

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self.proxy.terminate()
        self.proxy.wait(timeout=DEADLINE)
        assert self.daemon.stop() == 0, self.daemon.whole_log()
        log = self.daemon.whole_log()
        assert "Traceback" not in log and "Unhandled" not in log, log


@pytest.fixture
def proxied(tmp_path):
    proxied = Proxied(tmp_path)
    yield proxied
    proxied.stop()


def _echo_through(url: str, marker: str) -> None:
    with connect(url, open_timeout=DEADLINE) as ws:
        ws.send("Hello, world!")
        assert ws.recv(timeout=DEADLINE) == "Hello, world!"
        payload = os.urandom(300_000)
        ws.send(payload)
        assert ws.recv(timeout=DEADLINE) == payload
        ws.close(4000, marker)


def test_http11_clients_relayed_over_h2(proxied):
    """
    An HTTP/1.1 WebSocket client (websockets, and wsecho-client, which is
    Autobahn's and writes "Upgrade: WebSocket") is echoed through HAProxy,
    and the daemon's close line says the WebSocket came over h2 with the
    client's close code and reason.
    """
    _echo_through(proxied.url, "through-h2")
    line = proxied.daemon.wait_for("reason='through-h2'")
    assert " code=4000 " in line and " clean=True " in line, line
    assert re.search(r" http=2\b", line), line
    done = subprocess.run(
        [str(BIN / "wsecho-client"), "-i", proxied.url],
        input=b"one\n/close 4001 autobahn-through-h2\n",
        capture_output=True,
        timeout=DEADLINE * 2,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == b"text: one\n"
    line = proxied.daemon.wait_for("reason='autobahn-through-h2'")
    assert " code=4001 " in line and re.search(r" http=2\b", line), line


def test_many_echoes_through_haproxy_h2(proxied):
    """
    Three thousand small echoes in a row, then an 8 MB one, through HAProxy
    over h2: HAProxy acknowledges each DATA frame it reads with
    WINDOW_UPDATE, and the daemon keeps the connection.
    """
    with connect(proxied.url, open_timeout=DEADLINE, max_size=None) as ws:
        for i in range(3000):
            ws.send(f"echo {i}")
            assert ws.recv(timeout=DEADLINE) == f"echo {i}"
        big = os.urandom(8_000_000)
        ws.send(big)
        assert ws.recv(timeout=DEADLINE) == big
        ws.close(4000, "many-through-h2")
    line = proxied.daemon.wait_for("reason='many-through-h2'")
    assert "messages=3001/3001" in line and re.search(r" http=2\b", line), line


def test_upgrade_token_as_the_client_wrote_it(proxied):
    """
    Autobahn's "Upgrade: WebSocket", which HAProxy passes on as the
    :protocol "WebSocket", reaches the echo (RFC 6455 reads the token
    without regard to case).
    """
    config = (proxied.log.parent / "haproxy.cfg").read_text()
    assert "set-header Upgrade" not in config
    done = subprocess.run(
        [str(BIN / "wsecho-client"), proxied.url, "hi"],
        capture_output=True,
        timeout=DEADLINE * 2,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"text: hi\n", done.stdout


def _wstest() -> str:
    found = Path(os.environ.get("WSECHO_WSTEST", ROOT / ".ats" / "bin" / "wstest"))
    if not found.exists():
        pytest.skip(f"no wstest at {found}: see conformance/install-wstest.sh")
    return str(found)


@pytest.mark.skipif(
    os.environ.get("WSECHO_FULL_TESTSUITE") != "1",
    reason="every TestSuite case (minutes): tox -e autobahn-h2 sets WSECHO_FULL_TESTSUITE=1",
)
def test_testsuite_through_haproxy_h2(proxied, tmp_path):
    """
    All 517 TestSuite cases, through HAProxy to wsecho over h2, pass: 514
    OK and 3 INFORMATIONAL, as against the daemon directly.
    """
    wstest = _wstest()
    rest = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "13.*"]
    # Two wstest runs at once (CI has two cores): the compression payloads
    # (12.*) take as long as all the rest.
    jobs = {"twelve": ["12.*"], "rest": rest}
    runs = []
    started = time.monotonic()
    for name, cases in jobs.items():
        spec = tmp_path / f"{name}.json"
        spec.write_text(
            json.dumps(
                {
                    "outdir": str(tmp_path / name),
                    "servers": [{"agent": "wsecho", "url": proxied.url}],
                    "cases": cases,
                    "exclude-cases": [],
                    "exclude-agent-cases": {},
                }
            )
        )
        log = (tmp_path / f"{name}.log").open("w")
        runs.append(
            subprocess.Popen(
                [wstest, "-m", "fuzzingclient", "-s", str(spec)],
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    for run in runs:
        assert run.wait(timeout=1500) == 0
    elapsed = time.monotonic() - started
    results: dict[str, dict] = {}
    for name in jobs:
        index = json.loads((tmp_path / name / "index.json").read_text())
        results.update(index["wsecho"])
    verdicts: dict[str, int] = {}
    for result in results.values():
        verdicts[result["behavior"]] = verdicts.get(result["behavior"], 0) + 1
    failed = {
        case: (result["behavior"], result["behaviorClose"])
        for case, result in results.items()
        if result["behavior"] not in ("OK", "NON-STRICT", "INFORMATIONAL")
        or result["behaviorClose"] not in ("OK", "INFORMATIONAL")
    }
    print(f"\nTestSuite through HAProxy h2: {verdicts} in {elapsed:.0f} s")
    assert len(results) == ALL_CASES, verdicts
    assert not failed, failed
    assert verdicts == {"OK": 514, "INFORMATIONAL": 3}, verdicts
    # Every WebSocket went over h2. The whole log is there once the daemon
    # has stopped (HAProxy's health checks keep it writing until then).
    proxied.stop()
    closes = [
        line
        for line in proxied.daemon.whole_log().splitlines()
        if "EchoServerProtocol" in line and " close " in line
    ]
    assert len(closes) >= ALL_CASES - 10, len(closes)
    assert all(re.search(r" http=2\b", line) for line in closes), [
        line for line in closes if not re.search(r" http=2\b", line)
    ][:3]
