"""
WebSockets over HTTP/2 (RFC 8441) in memory: h2 as the client against
wsecho's site on an in-memory transport.
"""

from __future__ import annotations

import h2.errors
import h2.events
import h2.settings
import pytest
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from support.h2wire import MemoryH2, frame, parse_frames
from support.markers import needs_http2
from wsecho.http.site import make_site
from wsecho.settings import EchoSettings

pytestmark = needs_http2

CONNECT = h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL


def _client(**settings: object) -> MemoryH2:
    # Lost at the test's end (tests/conftest.py).
    return MemoryH2(make_site(EchoSettings(**settings)))  # type: ignore[arg-type]


def _close(code: int, reason: bytes = b"") -> bytes:
    return frame(8, code.to_bytes(2, "big") + reason)


def test_settings_enable_extended_connect() -> None:
    """
    The server's SETTINGS say SETTINGS_ENABLE_CONNECT_PROTOCOL = 1.
    """
    client = _client()
    assert client.settings_received()
    assert client.remote_settings[CONNECT] == 1


def test_extended_connect_opens_a_websocket() -> None:
    """
    An extended CONNECT to /socket is answered :status 200, and the echo's
    connection is counted as open.
    """
    client = _client()
    stream = client.websocket()
    assert client.status(stream) == "200"
    assert stream not in client.ended
    site = client.server.site
    assert len(site.context.registry.connections) == 1


def test_text_and_binary_come_back_with_their_type() -> None:
    """
    A text message comes back as text, a binary one as binary.
    """
    client = _client()
    stream = client.websocket()
    client.send(stream, frame(1, "héllo".encode()) + frame(2, b"\x00\xff"))
    assert client.messages(stream, 2) == [(1, "héllo".encode()), (2, b"\x00\xff")]


def test_a_large_binary_message_comes_back_exact() -> None:
    """
    A 70 KB binary message (over the stream's window, so sent as the server
    reads) comes back byte for byte.
    """
    client = _client()
    stream = client.websocket()
    payload = bytes(range(256)) * 280
    client.send(stream, frame(2, payload))
    assert client.messages(stream, 1) == [(2, payload)]


def test_fragmented_messages_are_echoed_whole() -> None:
    """
    A message in fragments comes back with its content.
    """
    client = _client()
    stream = client.websocket()
    client.send(stream, frame(1, b"ab", fin=False) + frame(0, b"cd"))
    assert client.messages(stream, 1) == [(1, b"abcd")]


def test_two_websockets_on_one_connection() -> None:
    """
    Two WebSockets on one HTTP/2 connection each get their own echoes.
    """
    client = _client()
    one = client.websocket()
    two = client.websocket()
    client.send(one, frame(1, b"one"))
    client.send(two, frame(1, b"two"))
    assert client.messages(one, 1) == [(1, b"one")]
    assert client.messages(two, 1) == [(1, b"two")]
    assert len(client.server.site.context.registry.connections) == 2


def test_the_close_code_and_reason_come_back_and_the_stream_ends() -> None:
    """
    A close with 4000 "bye" is answered with 4000 "bye", then END_STREAM.
    """
    client = _client()
    stream = client.websocket()
    client.send(stream, _close(4000, b"bye"))
    assert client.messages(stream, 1) == [(8, (4000).to_bytes(2, "big") + b"bye")]
    # The server ends its side at once, as it half-closes TCP.
    assert stream in client.ended
    client.conn.end_stream(stream)
    client.flush()
    assert client.server.site.context.registry.connections == set()


def test_another_version_is_refused() -> None:
    """
    sec-websocket-version other than 13 is refused with 400 and
    sec-websocket-version: 13 (no 426 in HTTP/2).
    """
    client = _client()
    stream = client.websocket(version="8")
    assert client.status(stream) == "400"
    assert ("sec-websocket-version", "13") in client.headers[stream]
    assert stream in client.ended


def test_another_origin_is_refused() -> None:
    """
    An Origin that is not allowed is refused with 403.
    """
    client = _client()
    stream = client.websocket(extra=[("origin", "https://evil.example")])
    assert client.status(stream) == "403"


def test_a_name_not_served_is_misdirected() -> None:
    """
    On loopback, an :authority wsecho does not serve is answered 421.
    """
    client = _client()
    stream = client.websocket(authority="rebind.example")
    assert client.status(stream) == "421"


def test_draining_refuses_with_503() -> None:
    """
    While draining, a WebSocket is refused with 503 and retry-after.
    """
    client = _client()
    client.server.site.context.registry.draining = True
    stream = client.websocket()
    assert client.status(stream) == "503"
    assert ("retry-after", "5") in client.headers[stream]


def test_shutdown_ends_connections_with_goaway_once_their_streams_are_done() -> None:
    """
    When the daemon shuts down, a connection carrying a WebSocket gets its
    close (1001) on the stream first, then GOAWAY NO_ERROR once the closing
    handshake is done; one carrying nothing gets its GOAWAY at once.
    """
    busy, idle = _client(), _client()
    stream = busy.websocket()
    assert idle.settings_received()
    for client in (busy, idle):
        site = client.server.site
        site.context.registry.drain(5, client.clock)
        site.going_away()
        client.pump()
    assert idle.goaway is not None and idle.goaway.error_code == 0
    assert idle.transport.disconnecting
    assert busy.goaway is None
    [(opcode, payload)] = busy.messages(stream, 1)
    assert opcode == 8 and payload[:2] == (1001).to_bytes(2, "big")
    busy.send(stream, _close(1001))
    assert stream in busy.ended
    assert busy.goaway is not None and busy.goaway.error_code == 0
    assert busy.transport.disconnecting


def test_the_connection_limit_counts_http2_websockets() -> None:
    """
    --max-connections counts each WebSocket on an HTTP/2 connection.
    """
    client = _client(max_connections=1)
    assert client.status(client.websocket()) == "200"
    assert client.status(client.websocket()) == "503"


def test_a_reset_stream_is_a_lost_connection() -> None:
    """
    RST_STREAM from the client is the WebSocket's connection lost: 1006.
    """
    client = _client()
    stream = client.websocket()
    site = client.server.site
    [protocol] = site.context.registry.connections
    client.conn.reset_stream(stream)
    client.flush()
    assert site.context.registry.connections == set()
    assert protocol.transport is None


def test_pages_over_http2() -> None:
    """
    GET / over HTTP/2 is the index page.
    """
    client = _client()
    stream = client.get("/")
    client.pump()
    assert client.status(stream) == "200"
    assert b"<html" in client.data[stream].lower()


@pytest.mark.parametrize(
    "path", ["/healthz", "/readyz", "/metrics", "/console.js", "/favicon.svg"]
)
def test_every_page_over_http2(path: str) -> None:
    """
    The health checks, the metrics and the console's files are served over
    HTTP/2 as over HTTP/1.1; a path that is not there is 404.
    """
    client = _client()
    page = client.get(path)
    missing = client.get("/nothing-here")
    client.pump()
    assert client.status(page) == "200"
    assert client.data[page]
    assert client.status(missing) == "404"


def test_pages_check_the_authority() -> None:
    """
    On loopback, a page asked for with an :authority wsecho does not serve
    is answered 421, as a Host header would be; /healthz is answered.
    """
    client = _client()
    page = client.get("/", authority="rebind.example")
    health = client.get("/healthz", authority="rebind.example")
    client.pump()
    assert client.status(page) == "421"
    assert client.status(health) == "200"


def test_flow_control_stops_reading_one_stream_only() -> None:
    """
    A WebSocket whose client reads no echoes stops being read (its window is
    not opened again) while another on the same connection goes on.
    """
    client = _client()
    # The client's connection window is no limit; its stream window is.
    client.conn.increment_flow_control_window(2**30)
    client.reading = set()
    slow = client.websocket()
    fast = client.websocket()
    client.reading = {fast}
    chunk = frame(2, b"x" * 16000)
    sent = 0
    for _ in range(40):
        if client.conn.local_flow_control_window(slow) < len(chunk):
            break
        client.conn.send_data(slow, chunk)
        client.flush()
        sent += len(chunk)
    # The server stopped opening the window: the client cannot send more.
    assert client.conn.local_flow_control_window(slow) < len(chunk)
    assert sent < 40 * len(chunk)
    client.send(fast, frame(1, b"still here"))
    assert client.messages(fast, 1) == [(1, b"still here")]
    # What waits counts for the memory budget.
    budget = client.server.site.context.budget
    assert budget.used > 0
    frames, _ = parse_frames(client.data.get(slow, b""))
    assert frames  # some echoes came, up to the client's window


def test_upgrade_to_h2c_is_not_answered() -> None:
    """
    An HTTP/1.1 request with Upgrade: h2c is answered in HTTP/1.1, as if
    the header were not there.
    """
    from support.site import connect_in_memory

    site = make_site(EchoSettings())
    _, transport = connect_in_memory(site)
    transport.protocol.dataReceived(
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8181\r\nConnection: Upgrade, "
        b"HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
    )
    assert transport.value().startswith(b"HTTP/1.1 200 ")
    transport.protocol.connectionLost(Failure(ConnectionDone()))


def test_no_http2_leaves_the_preface_to_http11() -> None:
    """
    With HTTP/2 off, the connection preface is an HTTP/1.1 request like any
    other (refused), not an HTTP/2 connection.
    """
    from support.site import connect_in_memory

    site = make_site(EchoSettings(http2=False))
    _, transport = connect_in_memory(site)
    transport.protocol.dataReceived(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert not transport.value().startswith(b"\x00")
    transport.protocol.connectionLost(Failure(ConnectionDone()))


def test_subprotocol_and_deflate_are_negotiated() -> None:
    """
    The subprotocol and permessage-deflate are negotiated as over HTTP/1.1:
    the answer's sec-websocket-protocol and sec-websocket-extensions, and a
    compressed echo.
    """
    client = _client(subprotocols=("chat",))
    stream = client.websocket(
        extra=[
            ("sec-websocket-protocol", "other, chat"),
            ("sec-websocket-extensions", "permessage-deflate; client_max_window_bits"),
        ]
    )
    headers = dict(client.headers[stream])
    assert headers[":status"] == "200"
    assert headers["sec-websocket-protocol"] == "chat"
    assert headers["sec-websocket-extensions"].startswith("permessage-deflate")
    assert "sec-websocket-accept" not in headers
    client.send(stream, frame(1, b"plain, uncompressed"))
    assert client.messages(stream, 1)[0][0] == 1


def test_metrics_count_websockets_by_http_version() -> None:
    """
    wsecho_connections_opened counts a WebSocket over HTTP/2 as http="2".
    """
    client = _client()
    client.websocket()
    metrics = client.server.site.context.metrics
    assert metrics.opened.labels("2")._value.get() == 1
    assert metrics.opened.labels("1.1")._value.get() == 0


def test_the_handshake_is_translated() -> None:
    """
    An extended CONNECT stands for an HTTP/1.1 upgrade request with a made-up
    key and the :authority as Host; Autobahn's 101 keeps only what HTTP/2
    answers with.
    """
    from wsecho._compat.h2stream import handshake_answer, upgrade_request

    request = upgrade_request(
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":path", b"/socket?x=1"),
            (b":authority", b"127.0.0.1:8181"),
            (b"sec-websocket-version", b"13"),
            (b"origin", b"http://127.0.0.1:8181"),
            (b"sec-websocket-protocol", b"a"),
            (b"sec-websocket-protocol", b"b"),
        ]
    )
    head = request.split(b"\r\n")
    assert head[0] == b"GET /socket?x=1 HTTP/1.1"
    assert b"host: 127.0.0.1:8181" in head
    assert b"sec-websocket-protocol: a, b" in head
    assert any(line.startswith(b"sec-websocket-key: ") for line in head)
    assert request.endswith(b"\r\n\r\n")
    status, headers = handshake_answer(
        b"HTTP/1.1 101 Switching Protocols\r\nServer: wsecho\r\nUpgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Protocol: a\r\n"
        b"Sec-WebSocket-Accept: xyz=\r\n\r\n"
    )
    assert status == 101
    assert headers == [(b"server", b"wsecho"), (b"sec-websocket-protocol", b"a")]
    status, headers = handshake_answer(
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\r\n"
    )
    assert (status, headers) == (400, [(b"content-type", b"text/plain")])


def test_the_protocol_token_is_read_without_regard_to_case() -> None:
    """
    :protocol "WebSocket" (a proxy passing an HTTP/1.1 client's Upgrade on
    as written) opens a WebSocket, as "websocket" does.
    """
    client = _client()
    stream = client.websocket(protocol="WebSocket")
    assert client.status(stream) == "200"
    client.send(stream, frame(1, b"hi"))
    assert client.messages(stream, 1) == [(1, b"hi")]


class _AckingEachFrame(MemoryH2):
    """
    A client that answers every DATA frame it reads with two WINDOW_UPDATEs,
    the stream's and the connection's, as HAProxy does.
    """

    parts = 1

    def handle(self, events: list[object]) -> None:
        super().handle(events)  # type: ignore[arg-type]
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                size = event.flow_controlled_length
                if size:
                    # In parts, as a proxy's buffer drains.
                    part = size // self.parts
                    for n in range(self.parts):
                        last = n == self.parts - 1
                        step = size - part * n if last else part
                        if step:
                            self.conn.increment_flow_control_window(
                                step, event.stream_id
                            )
                            self.conn.increment_flow_control_window(step)


@pytest.mark.parametrize("parts", [1, 4])
def test_window_updates_answering_each_data_frame_keep_the_connection(
    parts: int,
) -> None:
    """
    Three thousand small echoes, then a 4 MB message, to a client that
    acknowledges each DATA frame with two WINDOW_UPDATEs (or two per quarter
    of it): the connection is kept (those WINDOW_UPDATEs are not a
    control-frame flood).
    """
    client = _AckingEachFrame(make_site(EchoSettings()))
    client.reading = set()  # no WINDOW_UPDATE but those of handle()
    stream = client.websocket()
    for i in range(3000):
        client.send(stream, frame(1, b"echo %d" % i))
        assert client.messages(stream, 1) == [(1, b"echo %d" % i)]
    big = bytes(range(256)) * (4 * 4096)
    client.parts = parts  # its 16 KiB frames
    client.send(stream, frame(2, big))
    assert client.messages(stream, 1) == [(2, big)]
    assert client.goaway is None
    assert not client.closed
    # Its heap trim, on the global reactor, is not left for later tests.
    client.server.site.context.stop()


def test_useless_window_updates_are_still_a_flood() -> None:
    """
    WINDOW_UPDATEs that answer no DATA frame sent (nothing in flight) count
    as control frames: a thousand and more end the connection with
    ENHANCE_YOUR_CALM.
    """
    client = _client()
    client.websocket()
    for _ in range(1100):
        client.conn.increment_flow_control_window(1)
    client.flush()
    assert client.goaway is not None
    assert client.goaway.error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


@pytest.mark.parametrize("together", [True, False], ids=["one-read", "two-reads"])
def test_a_fragmented_ping_fails_the_websocket_and_what_follows_is_dropped(
    together: bool,
) -> None:
    """
    A ping in two fragments (TestSuite 5.1) is answered with a close 1002,
    and the continuation frame after it, in the same DATA frame or the
    next, is dropped: it does not reach Autobahn's parser after the
    WebSocket's connection is lost (it raised "Mask must be exactly 4
    bytes").
    """
    client = _client()
    stream = client.websocket()
    first, second = frame(9, b"fragment1", fin=False), frame(0, b"fragment2")
    if together:
        client.send(stream, first + second)
    else:
        client.send(stream, first)
        client.send(stream, second)
    assert client.messages(stream, 1) == [(8, b"\x03\xeafragmented control frame")]
    assert client.server.site.context.registry.connections == set()


def test_shutdown_aborts_connections_still_open_after_the_timeout() -> None:
    """
    The daemon waits for its HTTP/2 connections to close for the shutdown
    timeout at most: then it aborts those left, and goes on.
    """
    from twisted.internet.task import Clock

    class Stuck:
        def __init__(self) -> None:
            self.aborted = False
            self.transport = self

        def abortConnection(self) -> None:
            self.aborted = True

    site = make_site(EchoSettings())
    clock = Clock()
    stuck = Stuck()
    site.h2_connections.add(stuck)
    closed = site.h2_closed(5, clock)
    fired: list[object] = []
    closed.addCallback(fired.append)
    clock.advance(4.9)
    assert not fired and not stuck.aborted
    clock.advance(0.1)
    assert fired == [None] and stuck.aborted
