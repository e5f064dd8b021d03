"""
Attacks on a real C{twistd -n wsecho} process over loopback (issue 20,
second round): DNS rebinding and the handshakes around the origin check,
workers left behind by a parent killed outright, a log flood at the
descriptor limit, and what a close frame without a code is reported as.
"""

import contextlib
import os
import re
import signal
import socket
import time
from urllib.request import urlopen

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from support import BIN, DEADLINE, poll_until
from support.daemon import Daemon, start_daemon
from support.wire import RawClient, frame, raw_http, upgrade
from test_workers import running, start_workers

# Each test starts real processes: deselected by -m "not system".
pytestmark = pytest.mark.system

EVIL = "evil.example"


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response else 0


def get(path: str, host: str, *extra: str) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Connection: close", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_rebinding_requests_are_refused_on_loopback(run) -> None:
    """
    On the loopback default, a page whose own name resolves to 127.0.0.1
    is refused: its Host (with a same-origin Origin) gets 421 on every path
    but the health checks, as does an absolute-form target that disagrees
    with Host; the loopback names are served, same-origin included.
    """
    daemon = run(warm=False)
    port = daemon.port
    evil = f"{EVIL}:{port}"
    refused = [
        upgrade(evil, Origin=f"http://{evil}"),
        get("/metrics", evil),
        get("/", evil),
        # The target's authority would have replaced Host for the check.
        upgrade(f"127.0.0.1:{port}", path=f"http://{evil}/socket"),
        upgrade(evil, path=f"http://127.0.0.1:{port}/socket"),
    ]
    for request in refused:
        response = raw_http(port, request)
        assert status(response) == 421, (request, response)
        assert b"--allowed-host" in response, response
    for path in ("/healthz", "/readyz"):
        assert status(raw_http(port, get(path, evil))) == 200, path
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        origin = f"http://{host}"
        with RawClient(port, f"Origin: {origin}", host=host) as client:
            assert client.status == 101, client.response
    daemon.wait_for(f"Host '{evil}' is not served here")


def test_two_origins_and_old_versions_are_refused(run) -> None:
    """
    Two Origin headers (the last one the daemon's own) get 400; a version
    other than 13 (8, with its Sec-WebSocket-Origin) gets 426 naming 13.
    """
    daemon = run(warm=False)
    port = daemon.port
    here = f"127.0.0.1:{port}"
    with RawClient(
        port, f"Origin: http://{EVIL}", f"Origin: http://{here}", host=here
    ) as client:
        assert client.status == 400, client.response
    for version in ("8", "7", "14"):
        with RawClient(port, f"Sec-WebSocket-Origin: http://{EVIL}") as client:
            pass  # the usual version 13: upgraded
        assert client.status == 101
        response = raw_http(
            port,
            upgrade(
                here,
                f"Sec-WebSocket-Origin: http://{EVIL}",
                "Connection: close",
                Sec_WebSocket_Version=version,
            ),
        )
        assert status(response) == 426, response
        assert re.search(rb"\r\nSec-WebSocket-Version: 13\r\n", response, re.I)


def test_allowed_hosts_from_the_command_line_and_the_environment(tmp_path) -> None:
    """
    --allowed-host and WSECHO_ALLOWED_HOST (space-separated) add names to
    the loopback ones; others are still refused.
    """
    env = dict(os.environ, WSECHO_ALLOWED_HOST="one.test two.test")
    daemon = start_daemon(tmp_path, env=env)
    try:
        port = daemon.port
        for host in ("one.test", "two.test", "localhost"):
            name = f"{host}:{port}"
            with RawClient(port, f"Origin: http://{name}", host=name) as client:
                assert client.status == 101, (host, client.response)
        assert status(raw_http(port, get("/", f"{EVIL}:{port}"))) == 421
    finally:
        assert daemon.stop() == 0
    daemon = start_daemon(tmp_path, "--allowed-host", "three.test", env=env)
    try:
        port = daemon.port
        assert status(raw_http(port, get("/", f"three.test:{port}"))) == 200
        # The command line wins over the variable.
        assert status(raw_http(port, get("/", f"one.test:{port}"))) == 421
    finally:
        assert daemon.stop() == 0


def _unix_get(path: str, request: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(DEADLINE)
        s.connect(path)
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_host_check_is_off_elsewhere_unless_hosts_are_named(tmp_path) -> None:
    """
    On a UNIX socket (as on any address that is not loopback) every Host is
    served, unless --allowed-host names the hosts: then only those (and the
    loopback names) are.
    """
    path = str(tmp_path / "wsecho.sock")
    daemon = start_daemon(tmp_path, "--listen", f"unix:{path}")
    try:
        assert status(_unix_get(path, get("/", EVIL))) == 200
    finally:
        assert daemon.stop() == 0
    daemon = start_daemon(
        tmp_path, "--listen", f"unix:{path}", "--allowed-host", "echo.test"
    )
    try:
        assert status(_unix_get(path, get("/", EVIL))) == 421
        assert status(_unix_get(path, get("/", "echo.test"))) == 200
    finally:
        assert daemon.stop() == 0


def _closed_count(port: int, code: str) -> float:
    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f'wsecho_connections_closed_total{{code="{code}"}}'):
                return float(line.split()[1])
    return 0.0


def test_close_without_a_code_is_1005(run) -> None:
    """
    A client's close frame with an empty payload is logged and counted as
    1005 (no status received, RFC 6455 7.1.5), not as 1006.
    """
    daemon = run(warm=False)
    with RawClient(daemon.port) as client:
        assert client.status == 101
        client.send(frame(8, b""))
        assert client.close_code() is not None
    line = daemon.wait_for(" code=")
    assert " code=1005 " in line and "closed_by=client" in line, line
    assert "clean=True" in line, line
    poll_until(lambda: _closed_count(daemon.port, "1005") == 1.0)
    assert _closed_count(daemon.port, "none") == 0.0


def test_workers_exit_when_the_parent_is_killed(tmp_path) -> None:
    """
    With --workers 2, SIGKILL to the parent (as the OOM killer sends): 2 s
    later no worker is left, their clients were closed with 1001, and a new
    daemon binds the port.
    """
    daemon, pids = start_workers(tmp_path, 2)
    port = daemon.port
    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(
                connect(f"ws://127.0.0.1:{port}/socket", open_timeout=DEADLINE)
            )
            for _ in range(4)
        ]
        for client in clients:
            client.send("hi")
            assert client.recv(timeout=DEADLINE) == "hi"
        killed = time.monotonic()
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait(DEADLINE)
        try:
            while any(running(pid) for pid in pids.values()):
                assert time.monotonic() - killed < 2.0, "a worker outlived it"
                time.sleep(0.02)
        finally:
            for pid in pids.values():
                if running(pid):  # a failed test leaves nothing behind
                    os.kill(pid, signal.SIGKILL)
        for client in clients:
            with pytest.raises(ConnectionClosed) as closed:
                client.recv(timeout=DEADLINE)
            # Closed in order (going away), not left hanging or reset.
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    again = start_daemon(tmp_path, "--port", str(port))
    try:
        assert again.port == port
        with connect(f"ws://127.0.0.1:{port}/socket", open_timeout=DEADLINE) as ws:
            ws.send("again")
            assert ws.recv(timeout=DEADLINE) == "again"
    finally:
        assert again.stop() == 0


def _flood(port: int, seconds: float) -> int:
    """
    Connect and hang up as fast as one thread can for C{seconds}; how many
    connections were made.
    """
    made = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                made += 1
        except OSError:
            pass  # the accept queue is full for a moment
    return made


def test_log_flood_at_the_descriptor_limit_is_limited(tmp_path) -> None:
    """
    With a low descriptor limit, held connections and a stream of new ones
    make Twisted's accept() recover from EMFILE for each: the log gets a few
    of those lines and a count of the ones left out, not one per connection.
    """
    command = [
        "prlimit",
        "--nofile=64:64",
        str(BIN / "twistd"),
        "-n",
        "--pidfile=",
        "wsecho",
        "--port",
        "0",
    ]
    daemon = Daemon(tmp_path, command=command)
    line = daemon.wait_for(" starting on ")
    port = int(re.search(r" starting on (\d+)", line).group(1))
    held = []
    try:
        # More connections than descriptors: the daemon is at its limit.
        for _ in range(80):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        daemon.wait_for("EMFILE")
        made = _flood(port, 3.0)
        assert made > 300, made
        summary = daemon.wait_for("suppressed ", deadline=DEADLINE)
        assert "EMFILE" in summary, summary
    finally:
        for s in held:
            s.close()
        assert daemon.stop() == 0
    log = daemon.whole_log()
    lines = [line for line in log.splitlines() if "EMFILE" in line]
    suppressed = sum(
        int(n) for n in re.findall(r"suppressed (\d+) repeats in [\d.]+ s of: ", log)
    )
    # Three lines a connection without the limit; ten a kind an interval.
    assert len(lines) < 100, len(lines)
    assert suppressed > made, (suppressed, made)
