"""
HTTP/2 from Twisted's private C{twisted.web._http2} (its ticket 8194: the
API is "early draft") and the C{h2} state machine under it, each use with
why, and nowhere else.

L{H2Connection} is Twisted's, with wsecho's settings (extended CONNECT,
RFC 8441; bounded streams, headers and windows), a hook that takes the
extended CONNECT streams, and the limits a peer's control frames meet.
L{StreamTransport} is one such stream made a transport (L{ITransport},
L{IConsumer}) for a WebSocket protocol: it runs on the connection as
Twisted's C{H2Stream} runs a request, its producer paused by HTTP/2 flow
control as a TCP transport's is by its write buffer.
"""

from __future__ import annotations

import base64
import os
from collections import deque
from collections.abc import Callable
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import priority
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IConsumer, IPushProducer, ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import _http2
from zope.interface import implementer

# The connection preface of HTTP/2 with prior knowledge (RFC 9113 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

ErrorCodes = h2.errors.ErrorCodes

# Control frames a peer may send in a burst, and then a second, before the
# connection is closed with ENHANCE_YOUR_CALM: each costs a parse and most
# an answer (PING, SETTINGS), and none carries a request (h2 answers them
# all; Twisted limits only what waits unread).
CONTROL_BURST = 1000
CONTROL_RATE = 100

_CONTROL_EVENTS = (
    h2.events.PingReceived,
    h2.events.RemoteSettingsChanged,
    h2.events.PriorityUpdated,
    h2.events.WindowUpdated,
    h2.events.SettingsAcknowledged,
    h2.events.UnknownFrameReceived,
)


def settings(
    max_streams: int, max_header_list: int, window: int
) -> dict[h2.settings.SettingCodes, int]:
    # What the server advertises; SETTINGS_ENABLE_CONNECT_PROTOCOL = 1
    # lets clients open WebSockets (RFC 8441 3), which h2 then validates.
    codes = h2.settings.SettingCodes
    return {
        codes.ENABLE_CONNECT_PROTOCOL: 1,
        codes.MAX_CONCURRENT_STREAMS: max_streams,
        codes.MAX_HEADER_LIST_SIZE: max_header_list,
        codes.INITIAL_WINDOW_SIZE: window,
    }


class H2Connection(_http2.H2Connection):
    """
    Twisted's HTTP/2 connection, with C{connect} given each CONNECT request
    (a L{StreamTransport} for its stream, and its headers), which it refuses
    (L{StreamTransport.refuse}) or gives a protocol
    (L{StreamTransport.attach}). Every other request is Twisted's, for the
    site (C{requestFactory}, C{site}).
    """

    _log = Logger()

    def __init__(
        self,
        reactor: Any,
        connect: Callable[[StreamTransport, list[tuple[bytes, bytes]]], None],
        max_streams: int = 100,
        max_header_list: int = 16 * 1024,
        window: int = 65535,
    ) -> None:
        super().__init__(reactor)
        self._connect = connect
        self.conn.local_settings = h2.settings.Settings(
            client=False,
            initial_values=settings(max_streams, max_header_list, window),
        )
        # h2 bounds a header list by its decoder's limit from the start, not
        # only once the peer acknowledges our SETTINGS (an HPACK bomb would
        # not wait for that).
        self.conn.decoder.max_header_list_size = max_header_list
        # Room on the connection for every stream's window: a stream whose
        # client does not read keeps its received bytes unacknowledged, and
        # must not stop the others.
        self._connection_window = max_streams * window
        self.control_tokens = float(CONTROL_BURST)
        self._control_at = reactor.seconds()
        # Called with a stream's id once it is done (both ends closed, or
        # reset): wsecho.http.h2 rearms its idle deadline.
        self.stream_done: Callable[[int], object] = lambda stream_id: None

    def connectionMade(self) -> None:
        super().connectionMade()
        increment = self._connection_window - 65535
        if increment > 0:
            self.conn.increment_flow_control_window(increment)
            self._tryToWriteControlData()

    @property
    def stream_count(self) -> int:
        return len(self.streams)

    def dataReceived(self, data: bytes) -> None:
        if self.transport is None:
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._terminate(Failure())
            return
        self._events(events)

    def _events(self, events: list[Any]) -> None:
        # Twisted's dataReceived, for events on streams it has let go of
        # too (its own raises KeyError), and with control frames limited.
        control = sum(isinstance(e, _CONTROL_EVENTS) for e in events)
        if control and not self._spend(control):
            self.refuse(ErrorCodes.ENHANCE_YOUR_CALM, "too many control frames")
            return
        for event in events:
            if self.transport is None:
                return
            stream_id = getattr(event, "stream_id", 0)
            if isinstance(event, h2.events.RequestReceived):
                self._requestReceived(event)
            elif isinstance(event, h2.events.DataReceived):
                if stream_id in self.streams:
                    self._requestDataReceived(event)
                elif event.flow_controlled_length:
                    # A stream we answered and let go of: its bytes are
                    # dropped, and handed back to the connection's window.
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, stream_id
                    )
            elif isinstance(event, h2.events.StreamEnded):
                if stream_id in self.streams:
                    self._requestEnded(event)
            elif isinstance(event, h2.events.StreamReset):
                if stream_id in self.streams:
                    self._requestAborted(event)
            elif isinstance(event, h2.events.WindowUpdated):
                self._handleWindowUpdate(event)
            elif isinstance(event, h2.events.PriorityUpdated):
                self._handlePriorityUpdate(event)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.transport.loseConnection()
                self.connectionLost(
                    Failure(ConnectionLost("Remote peer sent GOAWAY")),
                    _cancelTimeouts=False,
                )
                return
        if self.transport is not None:
            self._tryToWriteControlData()

    def _spend(self, count: int) -> bool:
        now = self._reactor.seconds()
        elapsed = max(0.0, now - self._control_at)
        self._control_at = now
        self.control_tokens = min(
            float(CONTROL_BURST), self.control_tokens + elapsed * CONTROL_RATE
        )
        self.control_tokens -= count
        return self.control_tokens >= 0

    def refuse(self, code: int, why: str) -> None:
        """
        Close the connection with a GOAWAY of C{code} (RFC 9113 5.4.1).
        """
        if self.transport is None:
            return
        self._log.info(
            "{peer}: HTTP/2 connection closed ({code}): {why}",
            peer=_peer(self.transport),
            code=ErrorCodes(code).name,
            why=why,
        )
        self.conn.close_connection(error_code=code)
        self._terminate(Failure(ConnectionLost(why)))

    def _requestReceived(self, event: Any) -> None:
        headers = event.headers
        if (b":method", b"CONNECT") in headers:
            stream = StreamTransport(self, event.stream_id)
            self._track(event.stream_id, stream)
            self._connect(stream, headers)
            return
        super()._requestReceived(event)
        self._streamCleanupCallbacks[event.stream_id].addCallback(self.stream_done)

    def _track(self, stream_id: int, stream: StreamTransport) -> None:
        # As Twisted's _requestReceived does for its own streams.
        self.streams[stream_id] = stream
        self._streamCleanupCallbacks[stream_id] = Deferred()
        self._outboundStreamQueues[stream_id] = deque()
        try:
            self.priority.insert_stream(stream_id)
        except priority.DuplicateStreamError:
            pass  # a PRIORITY frame came first (Twisted's case too)
        else:
            self.priority.block(stream_id)
        self._streamCleanupCallbacks[stream_id].addCallback(stream.done)
        self._streamCleanupCallbacks[stream_id].addCallback(self.stream_done)

    @property
    def websockets(self) -> int:
        return sum(isinstance(s, StreamTransport) for s in self.streams.values())

    def pauseProducing(self) -> None:
        # The TCP connection's write buffer is full: the WebSockets stop
        # reading too, as they would on TCP of their own.
        super().pauseProducing()
        for stream in list(self.streams.values()):
            if isinstance(stream, StreamTransport):
                stream.network_paused(True)

    def resumeProducing(self) -> None:
        super().resumeProducing()
        for stream in list(self.streams.values()):
            if isinstance(stream, StreamTransport):
                stream.network_paused(False)

    def queued(self, stream_id: int) -> int:
        # Bytes of a stream waiting to be sent.
        queue = self._outboundStreamQueues.get(stream_id, ())
        return sum(len(chunk) for chunk in queue if isinstance(chunk, bytes))

    def open_window(self, stream_id: int, size: int) -> None:
        if size and stream_id in self.streams and self.transport is not None:
            self.openStreamWindow(stream_id, size)

    def send_headers(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end: bool = False
    ) -> None:
        try:
            self.conn.send_headers(stream_id, headers, end_stream=end)
        except h2.exceptions.StreamClosedError:
            return
        self._tryToWriteControlData()


def _peer(transport: Any) -> str:
    peer = transport.getPeer()
    return f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"


@implementer(ITransport, IConsumer, IPushProducer)
class StreamTransport:
    """
    One extended CONNECT stream as a transport for C{protocol} (RFC 8441):
    its DATA frames are the bytes, C{loseConnection} ends the stream
    (END_STREAM), C{abortConnection} resets it (RST_STREAM CANCEL).

    The protocol's first write must be its HTTP/1.1 handshake answer (to
    the request L{upgrade_request} made): a C{101} becomes C{:status 200}
    with its C{Sec-WebSocket-Protocol} and C{Sec-WebSocket-Extensions}, any
    other status is answered as it is, with its body.

    Flow control: bytes received are handed back to the client's window
    only as the protocol reads them; while its producer is paused (its
    echoes wait: the client's window for them is closed, or the TCP
    connection's buffer is full) nothing is read, and what comes waits
    here, within the window the client was given.
    """

    disconnecting = False
    connected = True

    def __init__(self, connection: H2Connection, stream_id: int) -> None:
        # The connection (wsecho's H2Channel: serves() checks :authority).
        self.connection: Any = connection
        self.streamID = stream_id
        self.protocol: Any = None
        self.producer: Any = None
        self._answered = False
        self._head = b""
        self._inbound: list[tuple[bytes, int]] = []
        self._inbound_size = 0
        self._ended = False
        # Why paused: our window on the client is closed, the network is
        # full, the protocol asked (its own pauseProducing).
        self._blocked = False
        self._network = False
        # Nothing is read before a protocol is attached.
        self._reading = False
        self._lost = False

    def attach(self, protocol: Any, request: bytes) -> None:
        """
        Run C{protocol} on this stream, with C{request} (made by
        L{upgrade_request}) as its first bytes, and then what the client
        sent meanwhile.
        """
        if self._lost:
            return
        self.protocol = protocol
        protocol.makeConnection(self)
        protocol.dataReceived(request)
        if self.protocol is not None:
            self.resumeProducing()

    def refuse(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes = b""
    ) -> None:
        """
        Answer with C{status}, C{headers} and C{body}, and end the stream.
        """
        if self._lost or self._answered:
            return
        self._answered = True
        if body:
            headers = [*headers, (b"content-length", b"%d" % len(body))]
        self.connection.send_headers(
            self.streamID, [(b":status", b"%d" % status), *headers]
        )
        if body:
            self.connection.writeDataToStream(self.streamID, body)
        self.loseConnection()

    # --- for H2Connection ------------------------------------------------

    def receiveDataChunk(self, data: bytes, flow_controlled: int) -> None:
        if self.disconnecting and self.protocol is None:
            # Refused: what the client sends is dropped.
            self.connection.open_window(self.streamID, flow_controlled)
            return
        if not self._reading or self._inbound:
            self._inbound.append((data, flow_controlled))
            self._inbound_size += len(data)
            return
        self.protocol.dataReceived(data)
        self.connection.open_window(self.streamID, flow_controlled)

    def requestComplete(self) -> None:
        # The client ended its side (END_STREAM): as a TCP FIN.
        self._ended = True
        if not self._inbound and self.protocol is not None:
            self._end()

    def _end(self) -> None:
        # The client ended its side and everything it sent has been read:
        # the protocol hears it as TCP's end (Autobahn: 1006 unless the
        # closing handshake is done), and the stream ends both ways.
        if self.disconnecting:
            return
        self.loseConnection()

    def connectionLost(self, reason: Failure) -> None:
        # The stream was reset, or the connection is gone.
        self._lost_with(reason)

    def done(self, stream_id: int) -> int:
        # Twisted let go of the stream: both ends closed, or reset.
        self._lost_with(Failure(ConnectionDone("stream closed")))
        return stream_id

    def _lost_with(self, reason: Failure) -> None:
        if self._lost:
            return
        self._lost = True
        self.connected = False
        self._inbound = []
        self._inbound_size = 0
        protocol, self.protocol = self.protocol, None
        if self.producer is not None:
            self.producer.stopProducing()
        self.producer = None
        if protocol is not None:
            protocol.connectionLost(reason)

    def windowUpdated(self) -> None:
        if self._blocked and self.connection.remainingOutboundWindow(self.streamID) > 0:
            self._blocked = False
            self._producer_resume()

    def flowControlBlocked(self) -> None:
        if not self._blocked:
            self._blocked = True
            if self.producer is not None:
                self.producer.pauseProducing()

    def network_paused(self, paused: bool) -> None:
        if paused == self._network:
            return
        self._network = paused
        if paused:
            if self.producer is not None:
                self.producer.pauseProducing()
        else:
            self._producer_resume()

    def _producer_resume(self) -> None:
        if self._blocked or self._network or self.producer is None:
            return
        self.producer.resumeProducing()

    def buffered(self) -> int:
        """
        What waits for this stream: its echoes not sent, and what the client
        sent that the protocol has not read.
        """
        if self._lost:
            return 0
        queued: int = self.connection.queued(self.streamID)
        return queued + self._inbound_size

    # --- ITransport ------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._lost or not data:
            return
        if not self._answered:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                return
            head, rest = self._head[: end + 4], self._head[end + 4 :]
            self._head = b""
            self._answered = True
            self._answer(head, rest)
            return
        self.connection.writeDataToStream(self.streamID, data)

    def _answer(self, head: bytes, body: bytes) -> None:
        status, headers = handshake_answer(head)
        if status == 101:
            self.connection.send_headers(
                self.streamID, [(b":status", b"200"), *headers]
            )
            if body:
                self.write(body)
            return
        if body:
            headers.append((b"content-length", b"%d" % len(body)))
        self.connection.send_headers(
            self.streamID, [(b":status", b"%d" % status), *headers]
        )
        if body:
            self.connection.writeDataToStream(self.streamID, body)

    def writeSequence(self, data: Any) -> None:
        for chunk in data:
            self.write(chunk)

    def loseConnection(self) -> None:
        if self.disconnecting or self._lost:
            return
        self.disconnecting = True
        if not self._answered:
            self._answered = True
            self.connection.send_headers(self.streamID, [(b":status", b"400")])
        self.connection.endRequest(self.streamID)

    def abortConnection(self) -> None:
        if self._lost:
            return
        self.disconnecting = True
        self.connection.abortRequest(self.streamID)
        self._lost_with(Failure(ConnectionLost("stream reset by the server")))

    def getPeer(self) -> Any:
        return self.connection.getPeer()

    def getHost(self) -> Any:
        return self.connection.getHost()

    # --- IConsumer -------------------------------------------------------

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer
        if self._blocked or self._network:
            producer.pauseProducing()

    def unregisterProducer(self) -> None:
        self.producer = None

    # --- IPushProducer (the protocol pauses its reading) -----------------

    def pauseProducing(self) -> None:
        self._reading = False

    def resumeProducing(self) -> None:
        self._reading = True
        consumed = 0
        while self._reading and self._inbound and not self._lost:
            data, flow_controlled = self._inbound.pop(0)
            self._inbound_size -= len(data)
            consumed += flow_controlled
            self.protocol.dataReceived(data)
        if not self._lost:
            self.connection.open_window(self.streamID, consumed)
            if self._ended and not self._inbound:
                self._end()

    def stopProducing(self) -> None:
        self.abortConnection()


def upgrade_request(headers: list[tuple[bytes, bytes]]) -> bytes:
    """
    The HTTP/1.1 upgrade request an extended CONNECT stands for (RFC 8441
    5: its C{:authority} is the Host, it has no C{Sec-WebSocket-Key}, so
    one is made up; its answer's C{Sec-WebSocket-Accept} is dropped), for
    Autobahn to parse.
    """
    path = b"/"
    host = b""
    lines: dict[bytes, list[bytes]] = {}
    for name, value in headers:
        if name == b":path":
            path = value
        elif name == b":authority":
            host = value
        elif not name.startswith(b":") and name not in _HOP_BY_HOP:
            lines.setdefault(name, []).append(value)
    if b"host" not in lines:
        lines[b"host"] = [host]
    key = base64.b64encode(os.urandom(16))
    head = [
        b"GET " + path + b" HTTP/1.1",
        b"upgrade: websocket",
        b"connection: Upgrade",
        b"sec-websocket-key: " + key,
    ]
    head += [name + b": " + b", ".join(values) for name, values in lines.items()]
    return b"\r\n".join(head) + b"\r\n\r\n"


_HOP_BY_HOP = {
    b"connection",
    b"upgrade",
    b"sec-websocket-key",
    b"keep-alive",
    b"transfer-encoding",
    b"proxy-connection",
}

# What of Autobahn's HTTP/1.1 answer an HTTP/2 answer keeps.
_KEPT = {b"sec-websocket-protocol", b"sec-websocket-extensions", b"server"}
_KEPT_REFUSED = {b"content-type", b"server", b"sec-websocket-version", b"retry-after"}


def handshake_answer(head: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    """
    The status of an HTTP/1.1 answer head, and the headers an HTTP/2
    answer keeps of it (lower-case): for a C{101}, the subprotocol and the
    extensions; otherwise what describes the body.
    """
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split(b" ", 2)[1])
    except (IndexError, ValueError):
        status = 500
    kept = _KEPT if status == 101 else _KEPT_REFUSED
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        name = name.strip().lower()
        if sep and name in kept:
            headers.append((name, value.strip()))
    return status, headers


def negotiated_h2(transport: Any) -> bool:
    # Whether TLS's ALPN chose HTTP/2 on this connection.
    return getattr(transport, "negotiatedProtocol", None) == b"h2"


def connection_of(channel: Any) -> Any:
    """
    The HTTP/2 connection a twisted.web request's channel (Twisted's
    C{H2Stream}) belongs to, or L{None} for any other channel.
    """
    if isinstance(channel, _http2.H2Stream):
        return channel._conn
    return None
