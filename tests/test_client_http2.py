"""
wsecho-client --http2 in memory: the h2 library plays the server (RFC 8441),
websockets' sans-I/O protocol its WebSocket, and the client's H2Client is
pumped against them byte for byte, with no socket and no real time.
"""

from __future__ import annotations

import io
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from twisted.internet import task
from twisted.internet.testing import StringTransport
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import Protocol, Side, State

from wsecho.client.cli import parse_args
from wsecho.client.http2 import H2Client, accept_key, connect_request
from wsecho.client.output import (
    EXIT_CLOSED,
    EXIT_HANDSHAKE,
    ClientError,
    Config,
    Message,
    Output,
)
from wsecho.client.protocol import client_factory
from wsecho.client.session import Session


class H2Server:
    """
    An RFC 8441 server in memory: h2's state machine, and on the CONNECT
    stream an echoing websockets protocol (or a refusal, or a reset).
    """

    def __init__(
        self,
        connect_protocol: bool = True,
        status: int = 200,
        window: int = 65535,
        echo: bool = True,
        deflate: bool = True,
    ) -> None:
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: int(connect_protocol),
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
            },
        )
        self.conn.initiate_connection()
        self.status = status
        self.echo = echo
        self.request: dict[str, str] = {}
        self.stream = 0
        self.ws = Protocol(Side.SERVER, state=State.OPEN)
        if deflate:
            self.ws.extensions = [PerMessageDeflate(True, True, 15, 15)]
        self.received: list[Frame] = []
        self.ended = False
        self.acknowledged = 0
        self.outgoing = b""

    def receive(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.stream = event.stream_id
                self.request = dict(event.headers)
                headers = [(":status", str(self.status)), ("server", "h2-test")]
                if self.status != 200:
                    self.conn.send_headers(self.stream, headers)
                    self.conn.send_data(self.stream, b"no echo here\n", end_stream=True)
                else:
                    if self.ws.extensions:
                        assert "permessage-deflate" in self.request.get(
                            "sec-websocket-extensions", ""
                        )
                        headers.append(
                            (
                                "sec-websocket-extensions",
                                "permessage-deflate; server_no_context_takeover; "
                                "client_no_context_takeover",
                            )
                        )
                    self.conn.send_headers(self.stream, headers)
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(
                    event.flow_controlled_length, event.stream_id
                )
                self.acknowledged += event.flow_controlled_length
                self.ws.receive_data(event.data)
                self._frames()
            elif isinstance(event, h2.events.WindowUpdated):
                self.flush()
            elif isinstance(event, h2.events.StreamEnded):
                self.ended = True
                self.ws.receive_eof()
                self._frames()

    def conn_stream_closed(self) -> bool:
        stream = self.conn.streams.get(self.stream)
        return stream is None or stream.closed

    def _frames(self) -> None:
        for frame in self.ws.events_received():
            self.received.append(frame)
            if frame.opcode is Opcode.TEXT and self.echo:
                self.ws.send_text(frame.data)
            elif frame.opcode is Opcode.BINARY and self.echo:
                self.ws.send_binary(frame.data)
        self.send_stream(b"".join(self.ws.data_to_send()))

    def send_stream(self, data: bytes) -> None:
        self.outgoing += data
        self.flush()

    def flush(self) -> None:
        # Within the client's window, as a server must: the rest when the
        # client acknowledges what it consumed (WINDOW_UPDATE).
        while self.outgoing:
            size = min(
                self.conn.local_flow_control_window(self.stream),
                self.conn.max_outbound_frame_size,
                len(self.outgoing),
            )
            if size <= 0:
                return
            self.conn.send_data(self.stream, self.outgoing[:size])
            self.outgoing = self.outgoing[size:]
        if self.ws.close_expected() and not self.conn_stream_closed():
            # The close is done: END_STREAM, as RFC 8441 5.1 says.
            self.conn.end_stream(self.stream)


def run_memory(
    config: Config, server: H2Server, before: Any = None
) -> tuple[Session, io.StringIO, io.StringIO]:
    """
    Run a session over H2Client against C{server}, pumping bytes both ways
    until the session is done (a bounded number of rounds).
    """
    out, err = io.StringIO(), io.StringIO()
    session = Session(config, task.Clock(), Output(config, out, err))
    if before is not None:
        before(session)
    factory = client_factory(config, session)
    client = H2Client(config, factory, secure=False, authority="localhost:8181")
    transport = StringTransport()

    def connect():
        client.makeConnection(transport)
        return client.ready

    session.connect = connect
    session.start()
    for _ in range(1000):
        data = transport.value()
        transport.clear()
        if data:
            server.receive(data)
        back = server.conn.data_to_send()
        if back and client.transport is not None:
            client.dataReceived(back)
        if (
            not data
            and not back
            and transport.disconnecting
            and client.transport is not None
        ):
            client.connectionLost()
        if session.done.called and client.transport is None:
            break
    assert session.done.called
    return session, out, err


def outcome(session: Session) -> Any:
    results: list[Any] = []
    session.done.addBoth(results.append)
    return results[0].value if hasattr(results[0], "value") else results[0]


def test_connect_request_translation():
    """
    Autobahn's upgrade request becomes an extended CONNECT: :protocol
    websocket, the path and authority, its own headers kept and the ones
    HTTP/2 forbids or replaces (Host, Upgrade, Connection, the key) dropped.
    """
    head = (
        b"GET /socket?x=1 HTTP/1.1\r\nHost: localhost:8181\r\nUpgrade: WebSocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Origin: http://o.test\r\nSec-WebSocket-Version: 13"
    )
    headers, key = connect_request(head, "https", "localhost:8181")
    assert headers[:5] == [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "https"),
        (":path", "/socket?x=1"),
        (":authority", "localhost:8181"),
    ]
    assert headers[5:] == [("origin", "http://o.test"), ("sec-websocket-version", "13")]
    assert key == b"dGhlIHNhbXBsZSBub25jZQ=="
    assert accept_key(key) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_echoes_over_http2():
    """
    Text and binary are echoed over the CONNECT stream; the request carries
    what RFC 8441 asks and the client's options (origin, subprotocol,
    permessage-deflate); the run exits 0 and the stream ends both ways.
    """
    config = parse_args(
        [
            "--http2",
            "--origin",
            "http://o.test",
            "-s",
            "chat",
            "ws://localhost:8181/socket",
            "one",
            "two",
        ],
        io.BytesIO(),
    )
    server = H2Server()
    session, out, _client = run_memory(config, server)
    assert outcome(session) == 0
    assert out.getvalue() == "text: one\ntext: two\n"
    request = server.request
    assert request[":method"] == "CONNECT"
    assert request[":protocol"] == "websocket"
    assert (request[":scheme"], request[":path"]) == ("http", "/socket")
    assert request[":authority"] == "localhost:8181"
    assert request["sec-websocket-version"] == "13"
    assert request["origin"] == "http://o.test"
    assert request["sec-websocket-protocol"] == "chat"
    assert "permessage-deflate" in request["sec-websocket-extensions"]
    assert not {"host", "upgrade", "connection", "sec-websocket-key"} & set(request)
    assert server.ended and server.conn_stream_closed()
    assert server.received[-1].opcode is Opcode.CLOSE


def test_large_messages_respect_flow_control():
    """
    A message larger than the server's window is sent as the window opens,
    and an echo larger than the client's window comes back because the
    client acknowledges what it consumed.
    """
    payload = bytes(range(256)) * 1200  # 300 KiB, over 65,535 both ways
    config = Config(
        url="ws://localhost:8181/socket",
        messages=[],
        http2=True,
        compression=False,
    )
    config.messages.append(Message(payload, True))
    server = H2Server(window=16384, deflate=False)
    session, _out, _ = run_memory(config, server)
    assert outcome(session) == 0
    assert server.received[0].data == payload
    assert server.acknowledged >= len(payload)


def test_close_code_and_reason():
    """
    --interactive's /close CODE REASON reaches the server over the stream.
    """
    config = parse_args(["--http2", "-i", "ws://localhost:8181/socket"], io.BytesIO())
    server = H2Server()
    session, _, err = run_memory(
        config, server, lambda session: session.end_of_input(4000, "bye")
    )
    assert outcome(session) == 0
    close = Close.parse(server.received[-1].data)
    assert (close.code, close.reason) == (4000, "bye")
    assert "closed 4000 bye" in err.getvalue()


def test_no_extended_connect():
    """
    A server whose SETTINGS lack ENABLE_CONNECT_PROTOCOL=1 fails the run
    with the handshake's exit status and a sentence that says so.
    """
    config = parse_args(["--http2", "ws://localhost:8181/socket"], io.BytesIO())
    session, _, _ = run_memory(config, H2Server(connect_protocol=False))
    error = outcome(session)
    assert isinstance(error, ClientError)
    assert error.code == EXIT_HANDSHAKE
    assert "SETTINGS_ENABLE_CONNECT_PROTOCOL" in str(error)


def test_refused_status():
    """
    A status other than 200 is a refused handshake, with the status and
    the first line of the body, as over HTTP/1.1.
    """
    config = parse_args(["--http2", "ws://localhost:8181/socket"], io.BytesIO())
    session, _, _ = run_memory(config, H2Server(status=404))
    error = outcome(session)
    assert isinstance(error, ClientError)
    assert error.code == EXIT_HANDSHAKE
    assert "404 Not Found" in str(error) and "no echo here" in str(error)


def test_stream_reset():
    """
    A server that resets the stream before the echo ends the run as a
    connection closed early (exit 7).
    """
    config = parse_args(["--http2", "ws://localhost:8181/socket"], io.BytesIO())
    server = H2Server(echo=False)
    original = server._frames

    def reset_instead():
        original()
        if server.received and server.received[-1].opcode is Opcode.TEXT:
            server.conn.reset_stream(server.stream, 8)

    server._frames = reset_instead
    session, _, _ = run_memory(config, server)
    error = outcome(session)
    assert isinstance(error, ClientError)
    assert error.code == EXIT_CLOSED


@pytest.mark.parametrize("proxy", ["http://proxy.test:3128"])
def test_no_proxy(proxy, capsys):
    """
    --http2 with --proxy is a usage error that names both.
    """
    with pytest.raises(SystemExit) as exit:
        parse_args(["--http2", "--proxy", proxy], io.BytesIO())
    assert exit.value.code == 2
    assert "--http2" in capsys.readouterr().err
