"""
WebSockets over HTTP/2 (RFC 8441) against a real C{twistd -n wsecho}, over
TLS (ALPN h2, the test CA) and in clear (prior knowledge): wsecho-client
--http2 and Node's http2 module, each echoed exactly and closed with a
code, and the daemon's close line saying the WebSocket went over h2.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from support import BIN, DEADLINE, require
from support.certs import make_certificates
from support.daemon import start_daemon
from support.markers import needs_http2

# Each test starts real processes: deselected by -m "not system".
pytestmark = [pytest.mark.system, needs_http2]

CLIENTS = Path(__file__).parent / "clients"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """
    One daemon listening in clear and with TLS (localhost's certificate,
    signed by a test CA): the clear URL, the TLS URL, the CA and the daemon.
    """
    directory = tmp_path_factory.mktemp("h2")
    paths = make_certificates(directory, names=("localhost",))
    daemon = start_daemon(
        directory,
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--listen",
        f"ssl:0:interface=127.0.0.1:privateKey={paths['key']}:certKey={paths['cert']}",
    )
    ports = [int(p) for p in _ports(daemon)]
    yield (
        f"ws://127.0.0.1:{ports[0]}/socket",
        f"wss://localhost:{ports[1]}/socket",
        str(paths["ca"]),
        daemon,
    )
    assert daemon.stop() == 0
    log = daemon.whole_log()
    assert "Traceback" not in log and "Unhandled" not in log, log


def _ports(daemon) -> list[str]:
    """
    The clear port and the TLS port, from the daemon's listening line.
    """
    line = daemon.wait_for(" listening on ")
    found = re.search(r"127\.0\.0\.1:(\d+), 127\.0\.0\.1:(\d+) \(TLS\)", line)
    assert found is not None, line
    return [found.group(1), found.group(2)]


def client(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(BIN / "wsecho-client"), "--http2", *args],
        input=stdin,
        capture_output=True,
        timeout=DEADLINE * 2,
    )
    return subprocess.CompletedProcess(
        done.args,
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def close_line(daemon, marker: str) -> str:
    """
    The daemon's close line of the connection whose reason is C{marker}.
    """
    return daemon.wait_for(f"reason='{marker}'")


@pytest.mark.parametrize("secure", [False, True], ids=["clear", "tls"])
def test_wsecho_client_http2(servers, secure):
    """
    wsecho-client --http2 has text and binary echoed, with --json, and its
    /close CODE REASON is the daemon's close line, which says http=2.
    """
    clear, tls, ca, daemon = servers
    url = tls if secure else clear
    cafile = ["--cafile", ca] if secure else []
    done = client(*cafile, "--json", url, "Hello, world!", "é" * 20000)
    assert done.returncode == 0, done.stdout + done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert events[0]["event"] == "connected"
    assert events[0]["extensions"] == ["permessage-deflate"]
    echoes = [e for e in events if e["event"] == "echo"]
    assert [e["text"] for e in echoes] == ["Hello, world!", "é" * 20000]
    assert events[-1] == {
        "event": "closed",
        "code": 1000,
        "reason": None,
        "by": "client",
        "clean": True,
    }
    payload = bytes(range(256)) * 512
    binary = client(*cafile, "-b", url, "-", stdin=payload)
    assert binary.returncode == 0, binary.stdout + binary.stderr
    assert binary.stdout.startswith(f"binary ({len(payload)} bytes): 000102")
    marker = f"h2-{'tls' if secure else 'clear'}"
    interactive = client(
        *cafile, "-i", url, stdin=f"one\n/close 4000 {marker}\n".encode()
    )
    assert interactive.returncode == 0, interactive.stdout + interactive.stderr
    assert interactive.stdout == "text: one\n"
    assert f"closed 4000 {marker} (by the client)" in interactive.stderr
    line = close_line(daemon, marker)
    assert " code=4000 " in line and " clean=True " in line, line
    assert line.rstrip().endswith("http=2") or " http=2 " in line, line


def test_wsecho_client_http2_refused_without_h2(tmp_path):
    """
    A daemon that speaks HTTP/1.1 only (--no-http2) is a clear failure of
    --http2: in clear it does not answer the HTTP/2 preface (exit 3, like a
    refused connection), over TLS it does not agree to ALPN h2 (exit 5, a
    refused handshake); a plain run still works.
    """
    paths = make_certificates(tmp_path, names=("localhost",))
    daemon = start_daemon(
        tmp_path,
        "--no-http2",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        "--listen",
        f"ssl:0:interface=127.0.0.1:privateKey={paths['key']}:certKey={paths['cert']}",
    )
    try:
        clear, secure = _ports(daemon)
        url = f"ws://127.0.0.1:{clear}/socket"
        done = client(url, "hi")
        assert done.returncode == 3, done.stdout + done.stderr
        assert "HTTP/2" in done.stderr, done.stderr
        tls = client("--cafile", str(paths["ca"]), f"wss://localhost:{secure}/socket")
        assert tls.returncode == 5, tls.stdout + tls.stderr
        assert "ALPN h2" in tls.stderr, tls.stderr
        plain = subprocess.run(
            [str(BIN / "wsecho-client"), url, "hi"],
            capture_output=True,
            text=True,
            timeout=DEADLINE * 2,
        )
        assert plain.returncode == 0 and plain.stdout == "text: hi\n"
    finally:
        assert daemon.stop() == 0


@pytest.mark.parametrize("secure", [False, True], ids=["clear", "tls"])
def test_node_http2(servers, secure):
    """
    Node's http2 module opens the extended CONNECT itself (after the
    server's enableConnectProtocol), frames the WebSocket by hand: text and
    binary, small and 1 MiB, echoed exactly; its 4000 "bye" comes back, the
    stream ends both ways without a reset, and the daemon's line says h2.
    """
    node = require("node")
    clear, tls, ca, daemon = servers
    url = (tls if secure else clear).replace("ws", "http", 1)
    done = subprocess.run(
        [node, str(CLIENTS / "h2_client.js"), url, *([ca] if secure else [])],
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
        env={k: v for k, v in os.environ.items() if k != "NODE_EXTRA_CA_CERTS"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        f"alpn {'h2' if secure else 'h2c'}",
        "status 200",
        "echoed 4",
        "closed 4000 bye",
        "end_stream",
        "stream closed rst=0",
    ], done.stdout
    line = daemon.wait_for("reason='bye'")
    assert " code=4000 " in line and "http=2" in line, line
    assert "messages=4/4" in line, line


@pytest.mark.parametrize(
    "secure",
    [
        pytest.param(False, id="clear"),
        pytest.param(True, id="tls"),
    ],
)
def test_shutdown_with_a_websocket_open_over_h2(tmp_path, secure):
    """
    A daemon stopped while a WebSocket is open over h2 sends it 1001 (going
    away), which wsecho-client --http2 -i reports, and logs no traceback.
    """
    paths = make_certificates(tmp_path, names=("localhost",))
    listen = (
        f"ssl:0:interface=127.0.0.1:privateKey={paths['key']}:certKey={paths['cert']}"
        if secure
        else "tcp:0:interface=127.0.0.1"
    )
    daemon = start_daemon(tmp_path, "--listen", listen)
    scheme = "wss://localhost" if secure else "ws://127.0.0.1"
    process = subprocess.Popen(
        [
            str(BIN / "wsecho-client"),
            "--http2",
            "--cafile",
            str(paths["ca"]),
            "-i",
            f"{scheme}:{daemon.port}/socket",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        assert process.stderr.readline().startswith("connected to ")
        assert daemon.stop() == 0
        _, err = process.communicate(timeout=DEADLINE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "closed 1001 server shutting down (by the server)" in err, err
    log = daemon.whole_log()
    assert "Traceback" not in log and "Unhandled" not in log, log
