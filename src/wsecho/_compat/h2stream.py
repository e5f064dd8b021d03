"""
One extended CONNECT stream of Twisted's HTTP/2 connection
(L{wsecho._compat.h2.H2Connection}) made a transport (L{ITransport},
L{IConsumer}) for a WebSocket protocol (RFC 8441): it runs on the connection
as Twisted's C{H2Stream} runs a request, its producer paused by HTTP/2 flow
control as a TCP transport's is by its write buffer. The calls it gets from
the connection (C{receiveDataChunk}, C{windowUpdated} ...) are those of
Twisted's private C{H2Stream}; what it calls on the connection, its public
methods. And the translation of the handshake: the HTTP/1.1 request an
extended CONNECT stands for, and the HTTP/2 answer Autobahn's stands for.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IConsumer, IPushProducer, ITransport
from twisted.python.failure import Failure
from zope.interface import implementer

# Bytes a stream reads before it hands them back to the client's window:
# h2 writes a WINDOW_UPDATE only once half a window has been handed back (or
# more than 1 KiB of a closed window), so most calls would write nothing,
# and none that would is held back (a closed window of 64 KiB has 32 KiB
# read and handed back before it closes).
ACK_BATCH = 1024


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

    def __init__(self, connection: Any, stream_id: int) -> None:
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
        # Within the protocol's dataReceived: a loss it causes (its
        # loseConnection ends a stream the client had ended) is told once
        # it returns, as TCP's is a reactor turn later, never from within
        # (Autobahn's parser, failing a frame, reads on over a buffer its
        # connectionLost empties: "Mask must be exactly 4 bytes").
        self._delivering = False
        self._loss: tuple[Any, Failure] | None = None

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
        if self._reading and not self._inbound and not self._lost:
            # The protocol reads: the bytes are handed back to the client's
            # window ACK_BATCH at a time.
            self._deliver(data)
            owed = self._unacknowledged + flow_controlled
            if owed < ACK_BATCH:
                self._unacknowledged = owed
            else:
                self._unacknowledged = 0
                self.connection.open_window(self.streamID, owed)
            return
        if self._lost or (self.disconnecting and self.protocol is None):
            # Refused, or the WebSocket is gone: what the client sends is
            # dropped (the connection's window bounds it).
            self.connection.open_window(self.streamID, flow_controlled)
            return
        if not self._reading or self._inbound:
            self._inbound.append((data, flow_controlled))
            self._inbound_size += len(data)
            return
        self._deliver(data)
        self.connection.open_window(self.streamID, flow_controlled)

    # Read, not yet handed back to the client's window (see ACK_BATCH).
    _unacknowledged = 0

    def _deliver(self, data: bytes) -> None:
        self._delivering = True
        try:
            self.protocol.dataReceived(data)
        finally:
            self._delivering = False
            loss, self._loss = self._loss, None
            if loss is not None:
                loss[0].connectionLost(loss[1])

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
            if self._delivering:
                self._loss = (protocol, reason)
            else:
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
        self.connection.send(self.streamID, data)

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
        self.connection.abort_stream(self.streamID)
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
            self._deliver(data)
        if not self._lost:
            consumed += self._unacknowledged
            self._unacknowledged = 0
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
