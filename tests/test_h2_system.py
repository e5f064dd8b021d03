"""
HTTP/2 against a real C{twistd -n wsecho} over loopback, in clear (prior
knowledge) and over TLS (ALPN): pages, WebSockets by extended CONNECT
(RFC 8441), and the attacks HTTP/2 allows, each answered as RFC 9113 says
while another client is served.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time

import h2.errors
import h2.settings
import pytest
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from support import DEADLINE
from support.certs import make_certificates
from support.daemon import rss, start_daemon
from support.h2wire import (
    H2Client,
    connect_headers,
    frame,
    raw_frames_client,
    read_until_goaway,
)
from support.markers import needs_http2
from support.wire import assert_echoes, raw_http

pytestmark = [pytest.mark.system, needs_http2]

MiB = 1024 * 1024
CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
CONNECT = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL
# What the daemon may hold under any attack: its memory budget and 128 MiB.
BUDGET = 64 * MiB


def _assert_h2_echoes(port: int) -> None:
    # Another client, over HTTP/2, is served.
    client = H2Client("127.0.0.1", port)
    try:
        stream = client.websocket()
        assert client.status(stream) == "200"
        client.send(stream, frame(1, b"still here"))
        assert client.messages(stream, 1) == [(1, b"still here")]
    finally:
        client.close()
    assert_echoes(port)


def _peak_under_budget(pid: int) -> int:
    peak = rss(pid, "VmHWM")
    # Shown with -s: the figure the README gives.
    print(f"peak RSS {peak / MiB:.1f} MiB")
    assert peak < BUDGET + 128 * MiB, peak
    return peak


def _echo_over(client: H2Client) -> None:
    assert client.settings_received()
    assert client.remote_settings[CONNECT] == 1
    page = client.get("/")
    client.receive(lambda: page in client.ended)
    assert client.status(page) == "200"
    one = client.websocket()
    two = client.websocket()
    assert client.status(one) == client.status(two) == "200"
    payload = os.urandom(70_000)
    client.send(one, frame(1, "héllo".encode()))
    client.send(two, frame(2, payload))
    assert client.messages(one, 1) == [(1, "héllo".encode())]
    assert client.messages(two, 1) == [(2, payload)]
    client.send(one, frame(8, (4000).to_bytes(2, "big") + b"bye"))
    assert client.messages(one, 1) == [(8, (4000).to_bytes(2, "big") + b"bye")]
    client.conn.end_stream(one)
    client.flush()
    assert client.receive(lambda: one in client.ended)


def test_http2_in_clear(run) -> None:
    """
    With prior knowledge on a plain port: GET / is 200, the SETTINGS enable
    extended CONNECT, two WebSockets on one connection echo, and a close
    4000 "bye" comes back before the stream ends; the close line says http=2.
    """
    daemon = run()
    client = H2Client("127.0.0.1", daemon.port)
    try:
        _echo_over(client)
    finally:
        client.close()
    line = daemon.wait_for("code=4000")
    assert "http=2" in line, line


def test_http2_over_tls(tmp_path) -> None:
    """
    Over TLS, ALPN chooses h2 and the same echo works; http/1.1 is still
    chosen by a client that offers only it.
    """
    paths = make_certificates(tmp_path)
    listen = (
        f"ssl:0:interface=127.0.0.1:privateKey={paths['key']}:certKey={paths['cert']}"
    )
    daemon = start_daemon(tmp_path, "--listen", listen)
    try:
        client = H2Client("127.0.0.1", daemon.port, tls=True)
        try:
            assert client.alpn == "h2"
            _echo_over(client)
        finally:
            client.close()
        import ssl

        context = ssl.create_default_context(cafile=str(paths["ca"]))
        context.set_alpn_protocols(["http/1.1"])
        plain = socket.create_connection(("127.0.0.1", daemon.port), DEADLINE)
        with context.wrap_socket(plain, server_hostname="127.0.0.1") as sock:
            assert sock.selected_alpn_protocol() == "http/1.1"
    finally:
        assert daemon.stop() == 0, daemon.whole_log()
    assert "Traceback" not in daemon.whole_log()


def test_no_http2(run) -> None:
    """
    With --no-http2, the HTTP/2 preface is not taken for HTTP/2.
    """
    daemon = run("--no-http2")
    client = raw_frames_client("127.0.0.1", daemon.port)
    try:
        client.settimeout(DEADLINE)
        answer = client.recv(4096)
        assert not answer.startswith(b"\x00"), answer  # no SETTINGS frame
    finally:
        client.close()


def test_rapid_reset_is_stopped(run) -> None:
    """
    CVE-2023-44487: a client that opens streams and resets them at once, as
    fast as it can, gets a GOAWAY ENHANCE_YOUR_CALM within its first few
    thousand resets; another client is served.
    """
    daemon = run("--memory-budget", str(BUDGET))
    sock = raw_frames_client("127.0.0.1", daemon.port)
    encoder = Encoder()
    stream_id = 1
    ended = False
    deadline = time.monotonic() + 20
    try:
        while stream_id < 2 * 20_000 and time.monotonic() < deadline:
            batch = b""
            for _ in range(100):
                headers = HeadersFrame(stream_id)
                headers.data = encoder.encode(
                    connect_headers(f"127.0.0.1:{daemon.port}")
                )
                headers.flags.add("END_HEADERS")
                reset = RstStreamFrame(stream_id)
                reset.error_code = 8
                batch += headers.serialize() + reset.serialize()
                stream_id += 2
            try:
                sock.sendall(batch)
            except OSError:
                ended = True
                break
        code, _ = read_until_goaway(sock, 5)
    finally:
        sock.close()
    assert code == CALM, (code, ended, stream_id)
    # Twisted's bucket: a burst of 1000 resets, then 33 a second.
    assert read_until_goaway.last_stream_id < 2 * 3000, stream_id
    _assert_h2_echoes(daemon.port)
    _peak_under_budget(daemon.pid)


def test_continuation_flood_is_stopped(run) -> None:
    """
    A HEADERS frame followed by CONTINUATION frames without end: the
    connection is closed with a GOAWAY long before its headers' size
    matters, and the daemon's memory stays bounded.
    """
    daemon = run("--memory-budget", str(BUDGET))
    sock = raw_frames_client("127.0.0.1", daemon.port)
    try:
        headers = HeadersFrame(1)
        headers.data = Encoder().encode(connect_headers())
        sock.sendall(headers.serialize())
        chunk = ContinuationFrame(1)
        chunk.data = b"\x00" * 16000
        sent = 0
        try:
            for _ in range(10_000):
                sock.sendall(chunk.serialize())
                sent += 1
        except OSError:
            pass
        code, closed = read_until_goaway(sock, 5)
    finally:
        sock.close()
    assert code is not None or closed
    assert sent < 10_000 or code is not None
    _assert_h2_echoes(daemon.port)
    _peak_under_budget(daemon.pid)


@pytest.mark.parametrize(
    "kind", ["ping", "settings", "priority", "window_update", "empty_data"]
)
def test_control_frame_floods_are_stopped(run, kind: str) -> None:
    """
    A flood of PING, SETTINGS, PRIORITY, WINDOW_UPDATE or empty DATA frames
    is answered with GOAWAY ENHANCE_YOUR_CALM (the client reads what it is
    sent, so Twisted's limit on unread control frames is not what stops it).
    """
    from hyperframe.frame import DataFrame

    daemon = run("--memory-budget", str(BUDGET))
    sock = raw_frames_client("127.0.0.1", daemon.port)
    encoder = Encoder()
    if kind == "empty_data":
        headers = HeadersFrame(1)
        headers.data = encoder.encode(connect_headers(f"127.0.0.1:{daemon.port}"))
        headers.flags.add("END_HEADERS")
        sock.sendall(headers.serialize())
    frames = {
        "ping": lambda i: PingFrame(0, opaque_data=i.to_bytes(8, "big")),
        "settings": lambda i: SettingsFrame(0, settings={4: 65535}),
        "priority": lambda i: PriorityFrame(3 + 2 * (i % 1000), depends_on=0),
        "window_update": lambda i: WindowUpdateFrame(0, window_increment=1),
        "empty_data": lambda i: DataFrame(1, b""),
    }
    make = frames[kind]
    got: list = []
    reader = threading.Thread(
        target=lambda: got.append(read_until_goaway(sock, 20)), daemon=True
    )
    reader.start()
    sent = 0
    deadline = time.monotonic() + 15
    try:
        while not got and time.monotonic() < deadline and sent < 200_000:
            batch = b"".join(make(sent + i).serialize() for i in range(100))
            try:
                sock.sendall(batch)
            except OSError:
                break
            sent += 100
        reader.join(20)
    finally:
        sock.close()
    assert got and got[0][0] == CALM, (got, sent)
    _assert_h2_echoes(daemon.port)
    _peak_under_budget(daemon.pid)


@pytest.mark.parametrize("references", [15_000, 10])
def test_hpack_bomb_is_refused(run, references: int) -> None:
    """
    A header block that decodes to more than SETTINGS_MAX_HEADER_LIST_SIZE
    (one 4 KiB header in the HPACK table, referenced thousands of times: an
    HPACK bomb; or ten times, 40 KB, under h2's own default limit, sent
    before the client acknowledged the server's 16 KiB) is refused with a
    GOAWAY; the daemon does not decode it all.
    """
    daemon = run("--memory-budget", str(BUDGET))
    sock = raw_frames_client("127.0.0.1", daemon.port)
    try:
        encoder = Encoder()
        block = encoder.encode(
            [*connect_headers(f"127.0.0.1:{daemon.port}"), ("x-bomb", "a" * 4000)]
        )
        # Index 62 is the header just added to the dynamic table.
        block += b"\xbe" * references
        headers = HeadersFrame(1)
        headers.data = block
        headers.flags.add("END_HEADERS")
        sock.sendall(headers.serialize())
        code, closed = read_until_goaway(sock, 5)
    finally:
        sock.close()
    assert code is not None, (code, closed)
    _assert_h2_echoes(daemon.port)
    _peak_under_budget(daemon.pid)


def test_too_many_streams_are_refused(run) -> None:
    """
    More streams than SETTINGS_MAX_CONCURRENT_STREAMS (100) are refused:
    the 101st gets a RST_STREAM or the connection a GOAWAY.
    """
    daemon = run("--memory-budget", str(BUDGET))
    sock = raw_frames_client("127.0.0.1", daemon.port)
    encoder = Encoder()
    try:
        batch = b""
        for number in range(101):
            headers = HeadersFrame(1 + 2 * number)
            headers.data = encoder.encode(connect_headers(f"127.0.0.1:{daemon.port}"))
            headers.flags.add("END_HEADERS")
            batch += headers.serialize()
        sock.sendall(batch)
        code, closed = read_until_goaway(sock, 5)
    finally:
        sock.close()
    assert code is not None, (code, closed)
    _assert_h2_echoes(daemon.port)


def test_streams_at_zero_window_cost_no_cpu_and_are_bounded(run) -> None:
    """
    A client that opens 100 WebSockets with a 1 KiB window and sends 30 KB on each
    (its echoes fill the window, then wait for ever): the daemon does not spin (its CPU time
    over two seconds is small), its memory is bounded, and the streams are
    closed after --slow-client-timeout.
    """
    daemon = run("--slow-client-timeout", "3", "--memory-budget", str(BUDGET))
    client = H2Client(
        "127.0.0.1",
        daemon.port,
        settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1024},
    )
    # Its connection window is no limit: its streams' windows are.
    client.conn.increment_flow_control_window(2**30)
    client.reading = set()
    try:
        streams = [client.websocket() for _ in range(100)]
        assert all(client.status(s) == "200" for s in streams)
        for stream in streams:
            client.send(stream, frame(2, os.urandom(30_000)))

        def cpu() -> float:
            fields = open(f"/proc/{daemon.pid}/stat").read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        before = cpu()
        client.receive(lambda: False, 2)
        assert cpu() - before < 0.5
        _assert_h2_echoes(daemon.port)
        # The slow-client timeout closes them (their close frames cannot go
        # out; the streams are reset after the close timeout).
        client.receive(lambda: len(client.reset) + len(client.ended) >= 100, 15)
        assert len(client.reset) + len(client.ended) >= 100
    finally:
        client.close()
    _peak_under_budget(daemon.pid)


def test_unread_streams_stay_within_the_budget(run) -> None:
    """
    Twelve connections of 100 WebSockets each, every one sending a 60 KB
    message whose echo it never reads (a zero window): what waits counts on
    the memory budget, which closes connections to stay within it; the
    daemon's peak RSS stays under the budget and 128 MiB, and another
    client is served.
    """
    daemon = run("--memory-budget", str(BUDGET))
    clients = []
    try:
        for _ in range(12):
            client = H2Client(
                "127.0.0.1",
                daemon.port,
                settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0},
            )
            client.conn.increment_flow_control_window(2**30)
            client.reading = set()
            clients.append(client)
            streams = [client.websocket() for _ in range(100)]
            message = frame(2, os.urandom(60_000))
            for stream in streams:
                if client.status(stream) == "200":
                    client.send(stream, message)
        metrics = raw_http(
            daemon.port,
            f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\n"
            "Connection: close\r\n\r\n".encode(),
        ).decode()
        used = re.search(r"^wsecho_memory_budget_used_bytes (\S+)", metrics, re.M)
        evicted = re.search(
            r"^wsecho_memory_budget_evictions_total (\S+)", metrics, re.M
        )
        print(
            f"budget used {used and used.group(1)}, evictions {evicted and evicted.group(1)}"
        )
        # What waits is counted, and the budget holds (72 MB were sent).
        assert used is not None and 0 < float(used.group(1)) <= BUDGET
        assert evicted is not None and float(evicted.group(1)) > 0
        _assert_h2_echoes(daemon.port)
    finally:
        for client in clients:
            client.close()
    _peak_under_budget(daemon.pid)


def test_an_idle_connection_is_closed(run) -> None:
    """
    An HTTP/2 connection that opens no stream, only PINGs, is closed with
    a GOAWAY after --open-handshake-timeout.
    """
    daemon = run("--open-handshake-timeout", "1")
    client = H2Client("127.0.0.1", daemon.port)
    started = time.monotonic()
    try:
        while client.goaway is None and time.monotonic() - started < 6:
            client.conn.ping(b"12345678")
            client.flush()
            client.receive(lambda: client.goaway is not None, 0.3)
    finally:
        client.close()
    assert client.goaway is not None
    assert time.monotonic() - started < 5


def test_shutdown_closes_websockets_then_sends_goaway(run) -> None:
    """
    On SIGTERM, a WebSocket over HTTP/2 gets its 1001 on its stream, and
    once its closing handshake is done the connection gets a GOAWAY
    NO_ERROR; the daemon exits 0.
    """
    daemon = run()
    client = H2Client("127.0.0.1", daemon.port)
    try:
        stream = client.websocket()
        assert client.status(stream) == "200"
        daemon.terminate()
        [(opcode, payload)] = client.messages(stream, 1, DEADLINE)
        assert opcode == 8 and payload[:2] == (1001).to_bytes(2, "big")
        assert client.goaway is None
        client.send(stream, frame(8, (1001).to_bytes(2, "big")))
        client.receive(lambda: client.goaway is not None, DEADLINE)
        assert client.goaway is not None, (client.events[-6:], daemon.whole_log())
        assert client.goaway.error_code == h2.errors.ErrorCodes.NO_ERROR
    finally:
        client.close()
    assert daemon.process.wait(timeout=DEADLINE) == 0
