"""
The process as a whole, attacked over loopback as an attacker would: many
connections each holding a little, TLS connections that never speak, HTTP
answers never read, smuggled bodies, escapes for the log, signals at the
wrong moment. Each test fails without the protection it names.
"""

import os
import select
import signal
import socket
import ssl
import subprocess
import threading
import time
import zlib
from urllib.request import urlopen

import pytest
from websockets.sync.client import connect

from support import DEADLINE, poll_until, require
from support.daemon import rss
from support.wire import UPGRADE, RawClient, assert_echoes, frame, raw_http

# Each test starts real processes: deselected by -m "not system".
pytestmark = pytest.mark.system

MiB = 1024 * 1024
CLOSE_NORMAL = (1000).to_bytes(2, "big")

# The scale of the memory attacks: small enough for CI by default; the
# issue's figures with WSECHO_ATTACK_CONNECTIONS=300 (on the default
# budget of 256 MiB) and WSECHO_ATTACK_SECONDS=60.
CONNECTIONS = int(os.environ.get("WSECHO_ATTACK_CONNECTIONS", "40"))
ATTACK_SECONDS = float(os.environ.get("WSECHO_ATTACK_SECONDS", "5"))
BUDGET = 256 * MiB if "WSECHO_ATTACK_CONNECTIONS" in os.environ else 64 * MiB


def _metric(port: int, name: str) -> float:
    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"no {name} at /metrics")


def _held_message(kind: str) -> bytes:
    """
    What one attacking connection sends: 15 MiB (after inflation) of an
    unfinished message, then nothing.
    """
    size = 15 * MiB
    if kind == "frame":  # the start of a whole 16 MiB frame: the fast path
        return frame(2, length=16 * MiB)[:14] + bytes(size)
    if kind == "fragment":  # a first fragment: Autobahn's path
        return frame(2, bytes(size), fin=False)
    deflate = zlib.compressobj(wbits=-15)
    data = deflate.compress(bytes(size)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    return frame(2, data, fin=False, rsv=4)


@pytest.mark.parametrize("kind", ["frame", "fragment", "deflated"])
def test_unfinished_messages_stay_within_the_budget(run, kind) -> None:
    """
    Many connections each hold 15 MiB of an unfinished message (plain, in
    one frame or a fragment, or deflated, 15 KB on the wire): peak RSS stays
    within the memory budget plus 128 MiB, those that would pass it are
    closed with 1013, another client is echoed meanwhile, and once they
    close the memory is given back.
    """
    daemon = run("--memory-budget", str(BUDGET))
    baseline = rss(daemon.pid)
    extension = "Sec-WebSocket-Extensions: permessage-deflate"
    data = _held_message(kind)
    clients = []
    codes: list[int | None] = []

    def attack() -> None:
        client = RawClient(daemon.port, extension)
        clients.append(client)
        try:
            client.send(data)
        except OSError:
            pass  # dropped
        codes.append(client.close_code())

    threads = [threading.Thread(target=attack) for _ in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    try:
        assert_echoes(daemon.port)
        # Every attacker holds its bytes or has been closed.
        poll_until(
            lambda: (
                _metric(daemon.port, "wsecho_memory_budget_evictions_total")
                + _metric(daemon.port, "wsecho_memory_budget_used_bytes") // (15 * MiB)
                >= CONNECTIONS
            )
        )
        assert _metric(daemon.port, "wsecho_memory_budget_used_bytes") <= BUDGET
        assert_echoes(daemon.port, os.urandom(1000))
        peak = rss(daemon.pid, "VmHWM") - baseline
    finally:
        for client in clients:
            client.close()
        for thread in threads:
            thread.join(DEADLINE)
    print(f"{CONNECTIONS} x 15 MiB {kind}: peak RSS +{peak / MiB:.0f} MiB")
    assert peak < BUDGET + 128 * MiB, f"peak RSS +{peak / MiB:.0f} MiB"
    assert 1013 in codes, codes
    poll_until(lambda: rss(daemon.pid) - baseline < 64 * MiB, deadline=10)
    print(f"  after they closed: RSS +{(rss(daemon.pid) - baseline) / MiB:.0f} MiB")
    # Only the /metrics request's own connection is left (wsecho.ws.costs.TCP).
    assert _metric(daemon.port, "wsecho_memory_budget_used_bytes") <= 2048
    assert_echoes(daemon.port)


def test_unread_echoes_count_against_the_budget(run) -> None:
    """
    Clients that each send an 8 MiB message and never read its echo: what
    waits in the write buffers counts against the budget, the clients past
    it are dropped, and peak RSS stays within the budget plus 64 MiB.
    """
    daemon = run("--memory-budget", str(BUDGET))
    baseline = rss(daemon.pid)
    count = max(30, BUDGET // (8 * MiB) * 2)
    clients = [RawClient(daemon.port) for _ in range(count)]
    try:
        message = frame(2, os.urandom(8 * MiB))
        for client in clients:
            client.send(message)
        poll_until(
            lambda: _metric(daemon.port, "wsecho_memory_budget_evictions_total") > 0
        )
        assert _metric(daemon.port, "wsecho_memory_budget_used_bytes") <= BUDGET
        assert_echoes(daemon.port)
        peak = rss(daemon.pid, "VmHWM") - baseline
    finally:
        for client in clients:
            client.close()
    print(f"{count} unread 8 MiB echoes: peak RSS +{peak / MiB:.0f} MiB")
    assert peak < BUDGET + 64 * MiB, f"peak RSS +{peak / MiB:.0f} MiB"


def test_pipelined_requests_never_read(run) -> None:
    """
    One connection pipelines GET /healthz without reading the answers: the
    server stops reading from it (RSS grows by under 16 MiB) and another
    client is echoed meanwhile.
    """
    daemon = run()
    baseline = rss(daemon.pid)
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 100
    with socket.create_connection(("127.0.0.1", daemon.port)) as sock:
        sock.setblocking(False)
        end = time.monotonic() + ATTACK_SECONDS
        sent = 0
        while time.monotonic() < end:
            if select.select([], [sock], [], 0.1)[1]:
                try:
                    sent += sock.send(request)
                except (BlockingIOError, ConnectionError):
                    break
        assert_echoes(daemon.port)
        grown = rss(daemon.pid, "VmHWM") - baseline
    print(
        f"pipelined {sent / MiB:.1f} MiB of requests: peak RSS +{grown / MiB:.1f} MiB"
    )
    assert grown < 16 * MiB, f"peak RSS +{grown / MiB:.1f} MiB"


@pytest.fixture
def certificates(served_certificates):
    paths = dict(served_certificates)
    paths["context"] = ssl.create_default_context(cafile=str(paths["ca"]))
    return paths


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_silent_tls_connections_are_closed_at_the_deadline(run, certificates):
    """
    500 TCP connections to a wss listener that never send a ClientHello, or
    stop inside it, are all closed at the opening deadline; a wss client is
    served meanwhile.
    """
    daemon = run(
        "--open-handshake-timeout", "1", listen=certificates["listen"], warm=False
    )
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
    socks = []
    try:
        for i in range(500):
            sock = socket.create_connection(("127.0.0.1", daemon.port))
            if i % 2:
                sock.sendall(hello)
            sock.setblocking(False)
            socks.append(sock)
        url = f"wss://localhost:{daemon.port}/socket"
        with connect(url, ssl=certificates["context"], open_timeout=DEADLINE) as ws:
            ws.send("still here")
            assert ws.recv(timeout=DEADLINE) == "still here"
        open_ones = list(socks)
        end = time.monotonic() + DEADLINE
        while open_ones and time.monotonic() < end:
            readable = select.select(open_ones, [], [], 0.5)[0]
            open_ones = [s for s in open_ones if s not in readable or not _closed(s)]
        assert not open_ones, f"{len(open_ones)} of 500 still open"
    finally:
        for sock in socks:
            sock.close()
    daemon.wait_for("sent no request in 1.0 s: aborted")


def _tls_upgrade(port: int, context: ssl.SSLContext) -> ssl.SSLSocket:
    sock = context.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=DEADLINE),
        server_hostname="localhost",
    )
    sock.sendall(UPGRADE.replace(b"127.0.0.1", b"localhost") + b"\r\n")
    response = b""
    while not response.endswith(b"\r\n\r\n"):
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


def test_clean_wss_close_frees_the_slot_at_once(run, certificates) -> None:
    """
    A wss client that completes the closing handshake but never sends TLS
    close_notify nor FIN frees its connection slot at once (the next client
    is not answered 503), is logged as the clean close it was, and is
    aborted after --close-handshake-timeout.
    """
    daemon = run(
        "--max-connections",
        "1",
        "--close-handshake-timeout",
        "1",
        listen=certificates["listen"],
        warm=False,
    )
    sock = _tls_upgrade(daemon.port, certificates["context"])
    try:
        sock.sendall(frame(8, CLOSE_NORMAL))
        head = sock.recv(4)
        assert head[0] == 0x88 and head[2:4] == CLOSE_NORMAL, head
        url = f"wss://localhost:{daemon.port}/socket"
        with connect(url, ssl=certificates["context"], open_timeout=DEADLINE) as ws:
            ws.send("next")
            assert ws.recv(timeout=DEADLINE) == "next"
        # Read under TLS (past our close_notify) until the server closes
        # TCP: Python's ssl would take the close_notify for the end.
        where = sock.getsockname()[1]
        with socket.socket(fileno=os.dup(sock.fileno())) as raw:
            raw.settimeout(DEADLINE)
            try:
                while raw.recv(4096):
                    pass
            except ConnectionResetError:
                pass  # aborted
    finally:
        sock.close()
    daemon.wait_for("after the WebSocket closed: aborted")
    line = daemon.wait_for(f"close tcp4:127.0.0.1:{where} ")
    assert "code=1000" in line and "clean=True" in line, line


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(b"Content-Length: 8\r\n", id="content-length"),
        pytest.param(b"Transfer-Encoding: chunked\r\n", id="chunked"),
    ],
)
def test_upgrade_with_a_body_is_refused(run, extra) -> None:
    """
    An upgrade request with a body (a masked frame, smuggled in) is answered
    400, and nothing is echoed.
    """
    daemon = run()
    body = frame(1, b"hi")
    if b"chunked" in extra:
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    response = raw_http(daemon.port, UPGRADE + extra + b"\r\n" + body)
    assert response.startswith(b"HTTP/1.1 400 "), response
    assert b"hi" not in response.partition(b"\r\n\r\n")[2].replace(b"body", b"")


@pytest.mark.parametrize(
    ("offer", "answer"),
    [
        ("permessage-deflate; client_max_window_bits=7", None),
        ("permessage-deflate; client_max_window_bits=16", None),
        ("permessage-deflate; server_max_window_bits=08", None),
        ("permessage-deflate; server_no_context_takeover=1", None),
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            None,
        ),
        ("permessage-deflate; x_unknown", None),
        # Valid, but zlib cannot deflate with a 256-byte window: declined.
        ("permessage-deflate; server_max_window_bits=8", None),
        ("permessage-deflate; client_max_window_bits=8", "permessage-deflate"),
        (
            "permessage-deflate; client_max_window_bits=7, permessage-deflate",
            "permessage-deflate",
        ),
        ("permessage-deflate; server_max_window_bits=10", "server_max_window_bits=10"),
    ],
)
def test_deflate_offers_are_declined_not_refused(run, offer, answer) -> None:
    """
    An offer RFC 7692 does not allow, or that wsecho cannot honour, is
    declined: 101 without it (or with the next offer), and the echo works.
    """
    daemon = run(warm=False)
    with RawClient(daemon.port, f"Sec-WebSocket-Extensions: {offer}") as client:
        assert client.status == 101, client.response
        headers = client.response.decode("latin-1").lower()
        if answer is None:
            assert "sec-websocket-extensions" not in headers, headers
        else:
            assert answer in headers, headers
        client.send(frame(1, b"plain"))
        opcode, payload = client.read_frame()
        if answer is not None:  # compressed
            payload = zlib.decompressobj(-15).decompress(payload + b"\0\0\xff\xff")
        assert (opcode, payload) == (1, b"plain")


def test_frame_dripped_in_small_writes(run) -> None:
    """
    A 4 MiB binary frame sent in 1 KiB writes is echoed whole.
    """
    daemon = run()
    payload = os.urandom(4 * MiB)
    data = frame(2, payload)
    with RawClient(daemon.port) as client:
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for at in range(0, len(data), 1024):
            client.send(data[at : at + 1024])
        assert client.read_frame() == (2, payload)


def test_control_characters_are_escaped_in_the_log(run) -> None:
    """
    ESC and BEL from a client (in Host and Origin, a bad key, a forwarded
    address) reach neither the text log nor the 400 (or 421) answer raw.
    """
    daemon = run("--trust-proxy", "1")
    evil = "h\x1bc\x07x"  # ESC c resets a terminal
    with RawClient(
        daemon.port,
        f"Origin: http://{evil}",
        f"X-Forwarded-For: 192.0.2.1{evil}",
        host=evil,
    ) as client:
        # Autobahn 26.11 refuses control characters in header values (400);
        # older ones let them through to the echo, and to its log line. On
        # loopback, such a Host is no name served (421).
        upgraded = client.status == 101
        assert upgraded or client.status in (400, 421), client.response
        assert b"\x1b" not in client.response, client.response
        if upgraded:
            client.send(frame(8, CLOSE_NORMAL))
            client.close_code()
    if upgraded:
        daemon.wait_for("close ")
    bad_key = (
        UPGRADE.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"\x1b]0;owned\x07") + b"\r\n"
    )
    response = raw_http(daemon.port, bad_key)
    assert response.startswith(b"HTTP/1.1 400"), response
    assert b"\x1b" not in response and b"\x07" not in response, response
    daemon.wait_for("handshake failed")
    assert_echoes(daemon.port)
    assert daemon.stop() == 0
    log = daemon.whole_log()
    assert "\x1b" not in log and "\x07" not in log, log
    if upgraded:
        assert "\\x1b" in log


def test_origin_that_is_no_url_is_refused(run) -> None:
    """
    An Origin that does not parse as a URL ("http://[x") is refused with
    403, not answered 500 with a traceback in the log.
    """
    daemon = run(warm=False)
    with RawClient(daemon.port, "Origin: http://[x") as client:
        assert client.status == 403, client.response


def test_sighup_while_a_worker_starts(run) -> None:
    """
    SIGHUP sent again and again while a killed worker is started again does
    not kill the new worker (it waits until its handler is in place).
    """
    daemon = run("--workers", "2")
    line = daemon.wait_for("worker 1 started")
    pid = int(line.rsplit("pid ", 1)[1])
    os.kill(pid, signal.SIGKILL)
    end = time.monotonic() + 3
    while time.monotonic() < end:
        daemon.process.send_signal(signal.SIGHUP)
        time.sleep(0.005)  # a storm, bounded: not a synchronisation
    daemon.wait_for("worker 1 started")
    assert_echoes(daemon.port)
    assert daemon.stop() == 0
    log = daemon.whole_log()
    assert "died (signal 1)" not in log, log


def test_close_code_1014_is_valid(run) -> None:
    """
    A client may close with 1014 (bad gateway, registered): it is not failed
    with 1002.
    """
    daemon = run(warm=False)
    with RawClient(daemon.port) as client:
        client.send(frame(8, (1014).to_bytes(2, "big")))
        assert client.close_code() in (1000, 1014)


def test_http_10_upgrade_is_refused(run) -> None:
    """
    RFC 6455 4.2.1 asks for HTTP/1.1: an HTTP/1.0 upgrade gets 400.
    """
    daemon = run(warm=False)
    response = raw_http(
        daemon.port, UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0") + b"\r\n"
    )
    assert response.split(b" ", 2)[1] == b"400", response


def test_absolute_form_target_is_accepted(run) -> None:
    """
    GET http://host/socket (the absolute form servers must accept) upgrades,
    and the echo works.
    """
    daemon = run(warm=False)
    target = f"http://127.0.0.1:{daemon.port}/socket".encode()
    request = UPGRADE.replace(b"/socket", target, 1) + b"\r\n"
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=DEADLINE) as s:
        s.sendall(request + frame(1, b"absolute"))
        reply = b""
        while not reply.endswith(b"absolute"):
            chunk = s.recv(4096)
            assert chunk, reply
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 101 "), reply


def test_close_codes_are_counted_by_range(run) -> None:
    """
    Clients closing with 50 different application codes make two series in
    /metrics (3xxx and 4xxx), not fifty.
    """
    daemon = run(warm=False)
    codes = [*range(3000, 3025), *range(4000, 4025)]
    for code in codes:
        with RawClient(daemon.port) as client:
            client.send(frame(8, code.to_bytes(2, "big")))
            client.close_code()
    poll_until(
        lambda: (
            _metric(daemon.port, 'wsecho_connections_closed_total{code="4xxx"}') == 25
        )
    )
    with urlopen(f"http://127.0.0.1:{daemon.port}/metrics") as response:
        series = [
            line
            for line in response.read().decode().splitlines()
            if line.startswith("wsecho_connections_closed_total{")
        ]
    assert sorted(series) == [
        'wsecho_connections_closed_total{code="3xxx"} 25.0',
        'wsecho_connections_closed_total{code="4xxx"} 25.0',
    ], series


def test_listen_backlog_is_the_systems(run) -> None:
    """
    The listener's backlog is the system's largest (somaxconn), not
    Twisted's 50.
    """
    ss = require("ss")
    daemon = run(warm=False)
    somaxconn = int(open("/proc/sys/net/core/somaxconn").read())
    out = subprocess.run(
        [ss, "-ltnH", f"sport = :{daemon.port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    # State, Recv-Q, Send-Q (the backlog of a listening socket), ...
    assert int(out[2]) == somaxconn, out
