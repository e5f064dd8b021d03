"""
The close the server starts is orderly (issue 20, finding 7): after its
close frame the server half-closes the TCP connection and waits for the
client's FIN (and close_notify over TLS), so that the client reads the
close frame and then a clean end, never a reset; a malformed close frame
gets its 1002 over TLS too. Against real daemons, on loopback, with raw
clients, and the TestSuite's close and failure cases through nginx and
HAProxy.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from support import DEADLINE, poll_until, require
from support.certs import make_certificates
from support.daemon import free_port, start_daemon
from support.wire import frame, read_frame, upgrade

# Each test starts real processes: deselected by -m "not system".
pytestmark = pytest.mark.system

ROOT = Path(__file__).parent.parent
# Data frames a client sends around the closing handshake: 200 KB each time.
CHATTER = frame(2, b"z" * 50_000) * 4


def _open(sock: socket.socket, port: int) -> object:
    # The upgrade, on a plain or TLS socket; the reader for the frames.
    sock.sendall(upgrade(f"127.0.0.1:{port}"))
    reader = sock.makefile("rb")
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = reader.readline()
        assert line, head
        head += line
    assert head.startswith(b"HTTP/1.1 101 "), head
    return reader


def _close_code(reader) -> int | None:
    # Read up to the server's close frame (None: the end came first).
    while (received := read_frame(reader)) is not None:
        opcode, payload = received
        if opcode == 8:
            return int.from_bytes(payload[:2], "big")
    return None


def _end(reader) -> bytes | str:
    # What follows: b"" for an orderly end, or the error (a reset).
    try:
        return reader.read(1)
    except OSError as e:
        return repr(e)


@pytest.mark.parametrize(
    "bad, code, options",
    [
        pytest.param(frame(1, b"x", rsv=2), 1002, (), id="rsv-1002"),
        pytest.param(
            frame(2, b"y" * 2000), 1009, ("--max-message-size", "1000"), id="big-1009"
        ),
    ],
)
def test_server_close_ends_in_order(tmp_path, bad: bytes, code: int, options) -> None:
    """
    A close the server starts (a failure, a message too big) leaves the
    client reading the close frame and then a clean end of the TCP
    connection, not a reset, although the client sends data before and
    after the server's close frame and after its own.
    """
    daemon = start_daemon(tmp_path, *options)
    try:
        with socket.create_connection(("127.0.0.1", daemon.port), DEADLINE) as sock:
            reader = _open(sock, daemon.port)
            sock.sendall(bad + CHATTER)
            assert _close_code(reader) == code
            sock.sendall(CHATTER + frame(8, code.to_bytes(2, "big")) + CHATTER)
            assert _end(reader) == b""
    finally:
        assert daemon.stop() == 0, daemon.whole_log()


def test_sending_on_after_the_close_is_cut(tmp_path) -> None:
    """
    While the server waits for its FIN, a client that sends on after the
    closing handshake is read for 1 MiB at most, then its connection is
    aborted (and logged): it cannot keep the connection, and the reads it
    costs, for the whole wait.
    """
    daemon = start_daemon(tmp_path, "--close-handshake-timeout", "60")
    try:
        with socket.create_connection(("127.0.0.1", daemon.port), DEADLINE) as sock:
            reader = _open(sock, daemon.port)
            sock.sendall(frame(1, b"x", rsv=2))
            assert _close_code(reader) == 1002
            sock.sendall(frame(8, (1002).to_bytes(2, "big")))
            try:
                for _ in range(40):  # 8 MB: the server drops 1 MiB of it
                    sock.sendall(CHATTER)
            except OSError:
                pass  # aborted
            daemon.wait_for("bytes sent after the WebSocket closed: aborted")
    finally:
        assert daemon.stop() == 0, daemon.whole_log()


@pytest.mark.parametrize(
    "payload, rsv",
    [
        pytest.param(b"\x03\xe8", 7, id="rsv-3.7"),
        pytest.param(b"\x03", 0, id="one-byte-7.3.2"),
        pytest.param(b"\x03\xe8" + b"a" * 124, 0, id="126-bytes-7.3.6"),
    ],
)
def test_malformed_close_gets_1002_over_tls(tmp_path, payload: bytes, rsv: int) -> None:
    """
    Over wss, a malformed close frame (RSV bits set, a 1-byte payload, a
    126-byte one: TestSuite cases 3.7, 7.3.2, 7.3.6) gets the server's
    1002 close frame, then the end of the TLS stream, not a reset.
    """
    paths = make_certificates(tmp_path)
    listen = (
        f"ssl:0:interface=127.0.0.1:privateKey={paths['key']}:certKey={paths['cert']}"
    )
    daemon = start_daemon(tmp_path, "--listen", listen)
    context = ssl.create_default_context(cafile=str(paths["ca"]))
    try:
        plain = socket.create_connection(("127.0.0.1", daemon.port), DEADLINE)
        with context.wrap_socket(plain, server_hostname="127.0.0.1") as sock:
            reader = _open(sock, daemon.port)
            sock.sendall(frame(8, payload, rsv=rsv))
            assert _close_code(reader) == 1002
            assert _end(reader) == b""
    finally:
        assert daemon.stop() == 0, daemon.whole_log()


# --- the TestSuite through proxies ------------------------------------------

# The cases that end in a close the server starts or answers: failures
# (5.*: fragments, 6.*: UTF-8) and the closing handshake (7.*).
PROXIED_CASES = ["5.*", "6.*", "7.*"]


def _wstest() -> str:
    """
    The TestSuite's wstest: WSECHO_WSTEST, or where tox's autobahn env
    installs it (conformance/install-wstest.sh), which also runs these tests.
    """
    found = Path(os.environ.get("WSECHO_WSTEST", ROOT / ".ats" / "bin" / "wstest"))
    if not found.exists():
        pytest.skip(f"no wstest at {found}: see conformance/install-wstest.sh")
    return str(found)


def _run_testsuite(tmp_path: Path, url: str) -> None:
    # wstest -m fuzzingclient over the cases, through the proxy at url;
    # every case must pass (the proxy must not change a close).
    reports = tmp_path / "reports"
    spec = tmp_path / "fuzzingclient.json"
    spec.write_text(
        json.dumps(
            {
                "outdir": str(reports),
                "servers": [{"agent": "wsecho", "url": url}],
                "cases": PROXIED_CASES,
                "exclude-cases": [],
                "exclude-agent-cases": {},
            }
        )
    )
    with (tmp_path / "wstest.log").open("w") as log:
        subprocess.run(
            [_wstest(), "-m", "fuzzingclient", "-s", str(spec)],
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=True,
        )
    results = json.loads((reports / "index.json").read_text())["wsecho"]
    failed = {
        case: (result["behavior"], result["behaviorClose"])
        for case, result in results.items()
        if result["behavior"] not in ("OK", "NON-STRICT", "INFORMATIONAL")
        or result["behaviorClose"] not in ("OK", "INFORMATIONAL")
    }
    assert results and not failed, failed


def test_testsuite_through_nginx_leaves_no_reset(tmp_path) -> None:
    """
    The TestSuite's failure and close cases, run through nginx with
    deploy/nginx.conf, all pass and leave no "reset by peer" in nginx's
    error log: the server's closes are orderly.
    """
    nginx = require("nginx")
    from test_scale_out import nginx_config

    daemons = [start_daemon(tmp_path) for _ in range(2)]
    front = free_port()  # nginx does not say where it listens
    config = tmp_path / "nginx.conf"
    text = nginx_config(tmp_path, front, daemons[0].port, daemons[1].port)
    error_log = tmp_path / "nginx-error.log"
    # Every level: a reset between nginx and the client is logged at info.
    assert "error_log stderr notice;" in text
    config.write_text(text.replace("stderr notice;", f"{error_log} info;"))
    proxy = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "nginx.stderr").open("w"),
    )
    try:
        poll_until(lambda: _listening(front))
        _run_testsuite(tmp_path, f"ws://127.0.0.1:{front}/socket")
    finally:
        proxy.terminate()
        proxy.wait(timeout=DEADLINE)
        for daemon in daemons:
            assert daemon.stop() == 0, daemon.whole_log()
    logged = error_log.read_text()
    assert "reset by peer" not in logged, logged


def test_testsuite_through_haproxy_leaves_no_reset(tmp_path) -> None:
    """
    The TestSuite's failure and close cases, run through HAProxy with
    deploy/haproxy.cfg, all pass, and HAProxy logs no session ended by the
    server's reset (termination state C{SD}).
    """
    haproxy = require("haproxy")
    from test_scale_out import proxied_config

    daemons = [start_daemon(tmp_path) for _ in range(2)]
    front = free_port()  # HAProxy does not say where it listens
    config = tmp_path / "haproxy.cfg"
    config.write_text(proxied_config(front, daemons[0].port, daemons[1].port))
    log = tmp_path / "haproxy.log"
    proxy = subprocess.Popen(
        [haproxy, "-db", "-f", str(config)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        poll_until(lambda: _listening(front))
        _run_testsuite(tmp_path, f"ws://127.0.0.1:{front}/socket")
    finally:
        proxy.terminate()
        proxy.wait(timeout=DEADLINE)
        for daemon in daemons:
            assert daemon.stop() == 0, daemon.whole_log()
    sessions = [line for line in log.read_text().splitlines() if "GET /socket" in line]
    assert sessions, log.read_text()
    # The termination state, after the captured cookies: "SD--" when the
    # server reset the connection, "----" when all ended in order.
    ended = [line for line in sessions if " SD" in line]
    assert not ended, "\n".join(ended)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
    except OSError:
        return False
    return True
