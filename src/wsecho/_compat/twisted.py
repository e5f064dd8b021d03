"""
Twisted's private names that wsecho uses, each with why (speed, memory
accounting, a connection handed over from twisted.web), and nowhere else.

L{MISSING} names the shortcuts whose private names the installed Twisted
does not have (or no longer uses); each then takes the public path:
Twisted's C{write} and no write-buffer figure, twisted.web's own
pipelining, Twisted's own reactor loop, TLS files read only at start-up.
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.internet import endpoints
from twisted.internet.abstract import FileDescriptor
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.tcp import Connection
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.web.http import HTTPChannel

from wsecho._compat.h2stream import StreamTransport


def _uses(function: Any, *names: str) -> bool:
    code = getattr(function, "__code__", None)
    return code is not None and all(n in code.co_names for n in names)


def _missing() -> list[str]:
    needs = {
        # Twisted's TCP write buffer (send_now, write_buffered).
        "tcp": _uses(FileDescriptor.__init__, "_tempDataLen")
        and _uses(FileDescriptor.doWrite, "_tempDataLen", "dataBuffer", "offset")
        and isinstance(getattr(FileDescriptor, "bufferSize", None), int),
        # twisted.web's channel (answers_unread, pause_reading, read_ahead).
        "http": hasattr(HTTPChannel, "_waitingForTransport")
        and _uses(HTTPChannel.connectionMade, "_networkProducer")
        and _uses(HTTPChannel.rawDataReceived, "_dataBuffer"),
        # The epoll reactor's loop (poll_without_log_context).
        "poll": _uses(
            EPollReactor.doPoll, "callWithLogger", "_doReadOrWrite", "_selectables"
        )
        and _uses(EPollReactor.__init__, "_poller", "_selectables"),
        # The TLS endpoint's context factory (ReloadableTLS).
        "tls": _uses(endpoints.SSL4ServerEndpoint.__init__, "_sslContextFactory"),
    }
    return sorted(f"twisted {name}" for name, ok in needs.items() if not ok)


MISSING = _missing()
TCP_BUFFERS = "twisted tcp" not in MISSING
TLS_RELOAD = "twisted tls" not in MISSING


_BUFFER_NAMES = ("_tempDataLen", "dataBuffer", "offset", "socket")


def can_send_now(transport: Any) -> bool:
    """
    Whether L{send_now} may write to C{transport} itself: a TCP connection
    with the buffer attributes it reads (TLS and other transports only
    buffer).
    """
    return (
        TCP_BUFFERS
        and isinstance(transport, Connection)
        and all(hasattr(transport, name) for name in _BUFFER_NAMES)
    )


def send_now(transport: Any, data: bytes) -> None:
    """
    Write C{data} to a TCP connection at once when nothing is waiting before
    it, and leave the rest to the transport.

    Twisted's C{write} only buffers: the data goes out when the reactor next
    finds the socket writable, which costs a turn of the reactor loop and two
    C{epoll_ctl} calls per echo: a third of a small echo's time (58,000 to
    86,000 echoes a second on one core). asyncio's transports send at once
    in the same way. This reads Twisted's private buffer attributes, checked
    by L{can_send_now}.
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
    if isinstance(transport, StreamTransport):
        # An HTTP/2 stream: its echoes waiting on the connection.
        return transport.buffered()
    if isinstance(transport, TLSMemoryBIOProtocol):
        transport = transport.transport
    if not can_send_now(transport):
        return 0
    return int(transport._tempDataLen + len(transport.dataBuffer) - transport.offset)


def close_write(transport: Any) -> None:
    """
    Close our side of C{transport} in order, and read on until the peer
    closes its side: the TCP connection then closes with a FIN each way.

    C{loseConnection} closes the socket as soon as its write buffer is out:
    what the peer sends after that (its close frame, on its way while ours
    was) meets a closed socket, and what sits unread in the receive buffer
    at C{close()} turns the FIN into a reset, which may destroy our close
    frame before the peer reads it (nginx logs it as "Connection reset by
    peer", HAProxy as C{SD}). So a TCP connection is half-closed
    (C{shutdown(SHUT_WR)} once the buffer is out) and closed when the
    peer's FIN is read (the protocol is not an C{IHalfCloseableProtocol}:
    Twisted then calls its C{connectionLost}). Over TLS, C{loseConnection}
    sends close_notify once the buffer is out and closes the TCP connection
    when the peer's close_notify comes. Reading resumes, should the
    protocol's producer have paused it, or the FIN would never be read.
    The caller bounds the wait, in time and in what it reads.
    """
    if isinstance(transport, TLSMemoryBIOProtocol):
        # Checked first: a TLS transport passes unknown names (its
        # loseWriteConnection too) on to the TCP connection under it.
        transport.loseConnection()
    elif isinstance(transport, FileDescriptor):
        # A TCP connection (an IHalfCloseableDescriptor).
        transport.loseWriteConnection()
    else:
        transport.loseConnection()
        return
    resume_reading(transport)


def resume_reading(transport: Any) -> None:
    """
    Read from C{transport} again, unless its connection was aborted.

    Twisted's C{abortConnection} stops reading and calls C{connectionLost}
    in the next reactor turn; a C{resumeProducing} in between registers the
    socket for reading again, and once C{connectionLost} has closed it, its
    file descriptor stays registered: reused by the next connection, it is
    read for the dead one ("'Server' object has no attribute 'socket'" in
    the main loop). A TLS transport passes the call on to its TCP one.
    """
    under = transport.transport if isinstance(transport, TLSMemoryBIOProtocol) else None
    for each in (transport, under):
        if each is not None and (
            getattr(each, "_aborting", False)  # TCP's abortConnection
            or getattr(each, "_aborted", False)  # TLS's
            or getattr(each, "disconnected", False)
        ):
            return
    transport.resumeProducing()


def answers_unread(channel: Any) -> bool:
    # Whether an HTTPChannel has answers its client has not read (its
    # transport paused it).
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


def take_over(channel: Any, protocol: Any) -> None:
    """
    Give C{channel}'s connection to C{protocol}, as Autobahn's
    C{WebSocketResource.render} does (Twisted has no public way: its ticket
    3204): the transport (or the TLS wrapper under it) delivers to
    C{protocol} from now on, and reads again (twisted.web pauses it while a
    request is served).
    """
    transport, channel.transport = channel.transport, None
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = protocol
    elif isinstance(transport.protocol, ProtocolWrapper):
        transport.protocol.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
    protocol.makeConnection(transport)
    resume_reading(transport)


def read_ahead(channel: Any) -> bytes:
    """
    What twisted.web's C{HTTPChannel} read past the request it serves
    (C{_dataBuffer}: a WebSocket client's first frames), taken from it.
    """
    buffered = getattr(channel, "_dataBuffer", None)
    if not buffered:
        return b""
    channel._dataBuffer = []
    return b"".join(buffered)


def poll_without_log_context(reactor: Any) -> bool:
    """
    Run C{reactor}'s epoll loop without wrapping each event in
    C{log.callWithLogger}, which sets the legacy log context (the
    C{system} prefix of C{twisted.python.log} lines) around every read and
    write: some 15 % of a small echo's CPU time (Twisted tickets 2534 and
    6789). wsecho logs with C{twisted.logger} and its own fields, so the
    prefix names nothing it needs. The loop is Twisted's C{doPoll} less that
    wrapper; L{False} (Twisted's own loop kept) for another reactor, or an
    epoll reactor that changed.
    """
    if "twisted poll" in MISSING or not isinstance(reactor, EPollReactor):
        return False
    poll = reactor._poller.poll
    selectables = reactor._selectables
    handle = reactor._doReadOrWrite

    def doPoll(timeout: float | None) -> None:
        try:
            events = poll(-1 if timeout is None else timeout, len(selectables))
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is not None:
                handle(selectable, fd, event)

    reactor.doIteration = doPoll  # type: ignore[method-assign]
    return True


def tls_context(endpoint: Any) -> Any:
    # A TLS server endpoint's context factory; None where it has none.
    return getattr(endpoint, "_sslContextFactory", None)


def set_tls_context(endpoint: Any, factory: Any) -> bool:
    # Make a TLS server endpoint use factory (ReloadableTLS); False if not.
    if not TLS_RELOAD or not hasattr(endpoint, "_sslContextFactory"):
        return False
    endpoint._sslContextFactory = factory
    return True


def set_high_water(transport: Any, size: int) -> None:
    """
    Let C{size} bytes wait in C{transport}'s write buffer before it pauses
    its producer (C{FileDescriptor.bufferSize}, Twisted's high-water mark,
    64 KiB by default; a TLS transport has none of its own).
    """
    if isinstance(transport, FileDescriptor):
        transport.bufferSize = size


def log_observers(publisher: Any) -> list[Any] | None:
    """
    The observers a C{twisted.logger.LogPublisher} publishes to (C{_observers}:
    Twisted has no public list), for the daemon to put its repeat limiter in
    front of those twistd began logging to; L{None} where it cannot tell.
    """
    observers = getattr(publisher, "_observers", None)
    return list(observers) if isinstance(observers, list) else None
