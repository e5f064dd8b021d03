"""
The private names of Twisted (and the one table of Autobahn) that wsecho
uses, for speed or for memory accounting, in one place, each with why.
Where a Twisted release changes them, L{can_send_now} turns false and
everything falls back to the public path (C{write}, and no write-buffer
figure).
"""

from __future__ import annotations

from typing import Any

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.tcp import Connection
from twisted.protocols.tls import TLSMemoryBIOProtocol


def allow_close_code(code: int) -> None:
    """
    Let peers close with C{code}. Autobahn checks a received close code
    against the class attribute C{WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED}
    by name, so a subclass cannot extend it: the list itself is extended,
    for every Autobahn protocol in the process.
    """
    allowed = WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED
    if code not in allowed:
        allowed.append(code)


_BUFFER_NAMES = ("_tempDataLen", "dataBuffer", "offset", "socket")


def can_send_now(transport: Any) -> bool:
    """
    Whether L{send_now} may write to C{transport} itself: a TCP connection
    with the buffer attributes it reads (TLS and other transports only
    buffer).
    """
    return isinstance(transport, Connection) and all(
        hasattr(transport, name) for name in _BUFFER_NAMES
    )


def send_now(transport: Any, data: bytes) -> None:
    """
    Write C{data} to a TCP connection at once when nothing is waiting before
    it, and leave the rest to the transport.

    Twisted's C{write} only buffers: the data goes out when the reactor next
    finds the socket writable, which costs a turn of the reactor loop and two
    C{epoll_ctl} calls per echo: a third of a small echo's time (58,000 to
    86,000 echoes a second on one core). asyncio's transports send at once
    in the same way. This reads Twisted's private
    buffer attributes, checked by L{can_send_now}.
    """
    if (
        transport._tempDataLen
        or len(transport.dataBuffer) > transport.offset
        or transport.disconnecting
        or not transport.connected
    ):
        transport.write(data)
        return
    try:
        sent = transport.socket.send(data)
    except OSError:
        # EAGAIN or a broken connection: Twisted's write path sorts out
        # which, as it would have.
        sent = 0
    if sent < len(data):
        transport.write(data[sent:])


def write_buffered(transport: Any) -> int:
    """
    How many bytes wait in C{transport}'s write buffer (for TLS, in the TCP
    connection under it), for the memory budget; 0 where it cannot tell.
    Twisted has no public figure for it: C{FileDescriptor} keeps
    C{dataBuffer} (sent up to C{offset}) and C{_tempData}.
    """
    if isinstance(transport, TLSMemoryBIOProtocol):
        transport = transport.transport
    if not can_send_now(transport):
        return 0
    return int(transport._tempDataLen + len(transport.dataBuffer) - transport.offset)


def answers_unread(channel: Any) -> bool:
    """
    Whether twisted.web's C{HTTPChannel} has answers its client has not
    read (its transport paused it): C{_waitingForTransport}.
    """
    return bool(getattr(channel, "_waitingForTransport", False))


def pause_reading(channel: Any) -> None:
    """
    Stop reading requests on C{channel}; its transport resumes it (and the
    channel its reading) once the answers have drained. C{HTTPChannel}
    pauses its C{_networkProducer} (the transport) only between requests,
    which pipelined requests never leave it.
    """
    producer = getattr(channel, "_networkProducer", None) or channel.transport
    producer.pauseProducing()
