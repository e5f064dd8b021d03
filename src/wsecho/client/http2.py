"""
wsecho-client --http2: the WebSocket over HTTP/2 (RFC 8441), one stream of
one h2 connection (ALPN h2 on wss://, prior knowledge on ws://).

The same Autobahn client protocol runs on the stream. L{StreamTransport}
is its transport and translates the opening handshake, so that Autobahn
needs no change and no private name: the HTTP/1.1 upgrade request it
writes becomes the extended CONNECT (its headers kept, the ones HTTP/2
forbids or replaces dropped), and the C{200} that answers it becomes the
C{101} Autobahn checks (its C{Sec-WebSocket-Accept} computed from the key
Autobahn chose); another status becomes that status with its body, which
Autobahn refuses as it would over HTTP/1.1. After that, the stream's DATA
is the WebSocket's bytes both ways; closing the transport ends the stream
(END_STREAM), aborting it resets it (RST_STREAM CANCEL).

L{H2Client} owns the h2 state machine (C{self.conn}), as Twisted's
C{H2Connection} does on the server's side: it waits for the server's
SETTINGS, requires C{SETTINGS_ENABLE_CONNECT_PROTOCOL = 1}, acknowledges
the DATA it hands on (the protocol consumes it at once) and sends within
the peer's flow-control window.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
from twisted.internet import defer, error
from twisted.internet.interfaces import IAddress, IConsumer, ITransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from wsecho.client.output import EXIT_CONNECT, EXIT_HANDSHAKE, ClientError, Config

_WS_MAGIC = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# Request headers of the HTTP/1.1 upgrade that HTTP/2 forbids (connection
# specific, RFC 9113 8.2.2) or carries otherwise (Host is :authority; the
# key and Upgrade belong to HTTP/1.1's handshake, RFC 8441 5).
_DROPPED = frozenset(
    {
        "host",
        "connection",
        "upgrade",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "sec-websocket-key",
    }
)
NO_CONNECT_PROTOCOL = (
    "the server does not offer WebSocket over HTTP/2 "
    "(no SETTINGS_ENABLE_CONNECT_PROTOCOL=1 in its SETTINGS, RFC 8441); "
    "leave out --http2"
)


def _code(code: Any) -> str:
    """
    An HTTP/2 error code by its name (RFC 9113 7), or its number.
    """
    try:
        return h2.errors.ErrorCodes(code).name
    except ValueError:
        return str(code)


def accept_key(key: bytes) -> str:
    """
    The C{Sec-WebSocket-Accept} that answers C{key} (RFC 6455 4.2.2).
    """
    return base64.b64encode(hashlib.sha1(key + _WS_MAGIC).digest()).decode("ascii")


def connect_request(
    head: bytes, scheme: str, authority: str
) -> tuple[list[tuple[str, str]], bytes]:
    """
    An HTTP/1.1 upgrade request's head as the headers of RFC 8441's
    extended CONNECT, and the request's C{Sec-WebSocket-Key}.
    """
    lines = head.decode("utf-8").split("\r\n")
    _method, target, _version = lines[0].split(" ", 2)
    headers = [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", scheme),
        (":path", target),
        (":authority", authority),
    ]
    key = b""
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "sec-websocket-key":
            key = value.encode("ascii")
        if name not in _DROPPED:
            headers.append((name, value))
    return headers, key


def response_head(status: int, headers: list[tuple[str, str]], key: bytes) -> bytes:
    """
    The answer to an extended CONNECT as the HTTP/1.1 response Autobahn
    expects: a C{200} as C{101} with the accept key, another status as it
    is (the caller adds the body).
    """
    if status == 200:
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept_key(key)}",
        ]
    else:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [f"HTTP/1.1 {status} {phrase} (over HTTP/2)"]
    for name, value in headers:
        if not name.startswith(":") and name not in ("content-length",):
            lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


@implementer(ITransport, IConsumer)
class StreamTransport:
    """
    One h2 stream as the transport of an Autobahn client protocol, which
    writes an HTTP/1.1 upgrade request first (sent as the extended CONNECT)
    and reads the answer as HTTP/1.1 (L{response_head}).
    """

    def __init__(self, client: H2Client, scheme: str, authority: str) -> None:
        self.client = client
        self.scheme = scheme
        self.authority = authority
        self.stream_id: int | None = None
        self.key = b""
        self.head = b""
        # A status other than 200, and its body, until END_STREAM.
        self.refused: bytes | None = None
        self.disconnecting = False
        self.ended = False
        self.producer: Any = None

    # ITransport

    def write(self, data: bytes) -> None:
        if self.stream_id is None:
            self._request(data)
        else:
            self.client.send(self.stream_id, data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        if self.disconnecting:
            return
        self.disconnecting = True
        if self.stream_id is None:
            self.client.stream_closed(self, connectionDone)
        else:
            self.client.end(self.stream_id)

    def abortConnection(self) -> None:
        self.disconnecting = True
        if self.stream_id is None:
            self.client.stream_closed(self, Failure(error.ConnectionAborted()))
        else:
            self.client.reset(self.stream_id)

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        # Autobahn registers none on a client; the session sends one
        # message at a time, and the h2 connection holds what the peer's
        # window does not take yet.
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def getPeer(self) -> IAddress:
        return self.client.transport.getPeer()  # type: ignore[union-attr]

    def getHost(self) -> IAddress:
        return self.client.transport.getHost()  # type: ignore[union-attr]

    # The handshake's translation

    def _request(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        headers, self.key = connect_request(
            self.head[:end], self.scheme, self.authority
        )
        rest, self.head = self.head[end + 4 :], b""
        self.stream_id = self.client.open_stream(self, headers)
        if rest:
            self.client.send(self.stream_id, rest)

    def response(self, status: int, headers: list[tuple[str, str]]) -> bytes | None:
        """
        The bytes that give the protocol the answer, or None (a refusal's
        body comes first).
        """
        head = response_head(status, headers, self.key)
        if status == 200:
            return head
        self.refused = head
        return None

    def data(self, data: bytes) -> bytes | None:
        if self.refused is not None:
            self.refused += data
            return None
        return data


class H2Client(Protocol):
    """
    One HTTP/2 connection carrying one WebSocket: the h2 state machine
    (C{self.conn}), the stream's transport, and the WebSocket protocol on
    it once the server's SETTINGS allow extended CONNECT.
    """

    def __init__(self, config: Config, factory: Any, secure: bool, authority: str):
        self.config = config
        self.ws_factory = factory
        self.secure = secure
        self.authority = authority
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.ready: defer.Deferred[Any] = defer.Deferred()
        self.stream: StreamTransport | None = None
        self.websocket: Any = None
        # Bytes waiting for the peer's flow-control window.
        self.waiting = b""
        self.ending = False
        self.settings_seen = False
        self.closing = False

    def connectionMade(self) -> None:
        self.conn.initiate_connection()
        self._flush()

    def dataReceived(self, data: bytes) -> None:
        if not self.settings_seen and self.secure:
            negotiated = getattr(self.transport, "negotiatedProtocol", None)
            if negotiated != b"h2":
                self._fail(
                    ClientError(
                        EXIT_HANDSHAKE,
                        "the server did not agree to HTTP/2 (ALPN h2) on TLS; "
                        "leave out --http2",
                    )
                )
                return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self._flush()
            self._fail(
                ClientError(EXIT_HANDSHAKE, f"the server broke HTTP/2: {e}"),
            )
            return
        for event in events:
            self._event(event)
            if self.transport is None:
                return
        self._flush()

    def _event(self, event: Any) -> None:
        if isinstance(event, h2.events.RemoteSettingsChanged):
            if not self.settings_seen:
                self.settings_seen = True
                self._settings()
        elif isinstance(event, h2.events.ResponseReceived):
            self._response(event)
        elif isinstance(event, h2.events.DataReceived):
            self._data(event)
        elif isinstance(event, h2.events.WindowUpdated):
            self._send_waiting()
        elif isinstance(event, h2.events.StreamEnded):
            self._ended()
        elif isinstance(event, h2.events.StreamReset):
            self._stream_gone(
                Failure(
                    error.ConnectionLost(
                        f"the server reset the stream ({_code(event.error_code)})"
                    )
                )
            )
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._stream_gone(
                Failure(
                    error.ConnectionLost(
                        f"the server ended HTTP/2 (GOAWAY {_code(event.error_code)})"
                    )
                )
            )

    def _settings(self) -> None:
        if self.conn.remote_settings.enable_connect_protocol != 1:
            self._fail(ClientError(EXIT_HANDSHAKE, NO_CONNECT_PROTOCOL))
            return
        scheme = "https" if self.secure else "http"
        self.stream = StreamTransport(self, scheme, self.authority)
        self.websocket = self.ws_factory.buildProtocol(self.transport.getPeer())  # type: ignore[union-attr]
        self.websocket.makeConnection(self.stream)
        self.ready.callback(self.websocket)

    def _response(self, event: h2.events.ResponseReceived) -> None:
        assert self.stream is not None
        headers = [(str(n), str(v)) for n, v in event.headers]
        status = int(dict(headers).get(":status", "0"))
        answer = self.stream.response(status, headers)
        if answer is not None:
            self.websocket.dataReceived(answer)

    def _data(self, event: h2.events.DataReceived) -> None:
        assert self.stream is not None
        # The protocol consumes what it is given at once: acknowledge it,
        # so that the server's window opens again.
        self.conn.acknowledge_received_data(
            event.flow_controlled_length, event.stream_id
        )
        data = self.stream.data(event.data)
        if data:
            self.websocket.dataReceived(data)

    def _ended(self) -> None:
        assert self.stream is not None
        if self.stream.refused is not None:
            refused, self.stream.refused = self.stream.refused, None
            self.websocket.dataReceived(refused)
        if self.stream.stream_id is not None and not self.stream.ended:
            # The server ended its side (after the closing handshake): end
            # ours, which closes the stream.
            self.end(self.stream.stream_id)
        self._stream_gone(Failure(error.ConnectionDone()))

    # What the stream's transport asks for

    def open_stream(
        self, stream: StreamTransport, headers: list[tuple[str, str]]
    ) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, headers)
        self._flush()
        return stream_id

    def send(self, stream_id: int, data: bytes) -> None:
        if self.stream is None or self.stream.ended:
            return
        self.waiting += data
        self._send_waiting()

    def _send_waiting(self) -> None:
        stream = self.stream
        if stream is None or stream.stream_id is None:
            return
        while self.waiting:
            window = self.conn.local_flow_control_window(stream.stream_id)
            size = min(window, self.conn.max_outbound_frame_size, len(self.waiting))
            if size <= 0:
                break
            chunk, self.waiting = self.waiting[:size], self.waiting[size:]
            self.conn.send_data(stream.stream_id, chunk)
        if not self.waiting and self.ending and not stream.ended:
            stream.ended = True
            self.conn.end_stream(stream.stream_id)
        self._flush()

    def end(self, stream_id: int) -> None:
        self.ending = True
        self._send_waiting()

    def reset(self, stream_id: int) -> None:
        assert self.stream is not None
        if not self.stream.ended:
            self.stream.ended = True
            self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            self._flush()
        self._stream_gone(Failure(error.ConnectionAborted()))

    def stream_closed(self, stream: StreamTransport, reason: Failure) -> None:
        self._stream_gone(reason)

    # The end

    def _stream_gone(self, reason: Failure) -> None:
        """
        The WebSocket's stream is over: tell its protocol, then close the
        connection (one WebSocket per connection).
        """
        websocket, self.websocket = self.websocket, None
        if self.transport is not None and not self.closing:
            self.closing = True
            try:
                self.conn.close_connection()
            except h2.exceptions.ProtocolError:
                pass
            self._flush()
            self.transport.loseConnection()
        if websocket is not None:
            websocket.connectionLost(reason)

    def _fail(self, problem: ClientError) -> None:
        if not self.ready.called:
            self.ready.errback(problem)
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.transport = None
        if not self.ready.called:
            if reason.check(error.ConnectionDone):
                reason = Failure(
                    ClientError(
                        EXIT_CONNECT,
                        "the server closed the connection before its HTTP/2 "
                        "SETTINGS (does it speak HTTP/2?)",
                    )
                )
            self.ready.errback(reason)
        websocket, self.websocket = self.websocket, None
        if websocket is not None:
            websocket.connectionLost(reason)

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)


def open_http2(
    endpoint: Any, config: Config, factory: Any, secure: bool, authority: str
) -> defer.Deferred[Any]:
    """
    Open an HTTP/2 connection through C{endpoint} (TLS offering ALPN h2 for
    wss://) and the WebSocket on it for C{factory}'s protocol; the Deferred
    fires with that protocol, or fails (a L{ClientError} when the server
    cannot carry it).
    """
    client = H2Client(config, factory, secure, authority)
    connected = endpoint.connect(Factory.forProtocol(lambda: client))

    def failed(reason: Failure) -> None:
        if not client.ready.called:
            client.ready.errback(reason)

    connected.addErrback(failed)
    return client.ready
