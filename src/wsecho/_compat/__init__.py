"""
Every private name of Twisted and Autobahn that wsecho uses, in one place,
each with why (speed, or memory accounting). Nothing else in wsecho reaches
into either library.

L{changed} is run once at start-up (L{wsecho.daemon.service.EchoService}): where
a release has renamed or dropped one of these names, it says which, one
warning is logged, and wsecho takes the public path instead: Twisted's
C{write} and no write-buffer figure, Autobahn's own frame parser, no
option-copying shortcut, twisted.web's own pipelining, TLS files read only
at start-up, and a twisted.web request for every upgrade.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket import protocol as autobahn_protocol
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet import endpoints
from twisted.internet.abstract import FileDescriptor
from twisted.internet.epollreactor import EPollReactor
from twisted.internet.tcp import Connection
from twisted.protocols.policies import ProtocolWrapper
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.web.http import HTTPChannel


def _uses(function: Any, *names: str) -> bool:
    code = getattr(function, "__code__", None)
    return code is not None and all(n in code.co_names for n in names)


def _refuses(parse: Any, head: bytes) -> bool:
    try:
        parse(head)
    except ValueError:
        return True
    except Exception:  # gone, or no longer a parser
        return False
    return False


def _missing() -> list[str]:
    """
    The shortcuts whose private names the installed libraries do not have
    (or no longer use); empty where all are there.
    """
    needs = {
        # Twisted's TCP write buffer (send_now, write_buffered).
        "tcp": _uses(FileDescriptor.__init__, "_tempDataLen")
        and _uses(FileDescriptor.doWrite, "_tempDataLen", "dataBuffer", "offset"),
        # twisted.web's channel (answers_unread, pause_reading).
        "http": hasattr(HTTPChannel, "_waitingForTransport")
        and _uses(HTTPChannel.connectionMade, "_networkProducer")
        and _uses(HTTPChannel.rawDataReceived, "_dataBuffer"),
        # Autobahn's frame parser state (the fast path).
        "frames": all(
            hasattr(WebSocketProtocol, n)
            for n in ("_dataReceived", "_cancelAutoPingTimeoutCall")
        )
        and _uses(WebSocketProtocol.processData, "current_frame", "inside_message")
        and _uses(WebSocketProtocol._connectionMade, "_perMessageCompress"),
        # Autobahn's per-connection option copy (QuickOptions).
        "options": hasattr(WebSocketServerProtocol, "CONFIG_ATTRS")
        and hasattr(WebSocketProtocol, "_connectionMade"),
        # Autobahn's 1009 hook (MessageTooBig) and close-code table.
        "limits": hasattr(WebSocketProtocol, "_max_message_size_exceeded")
        and isinstance(
            getattr(WebSocketProtocol, "CLOSE_STATUS_CODES_ALLOWED", None), list
        ),
        # The epoll reactor's loop (poll_without_log_context).
        "poll": _uses(
            EPollReactor.doPoll, "callWithLogger", "_doReadOrWrite", "_selectables"
        )
        and _uses(EPollReactor.__init__, "_poller", "_selectables"),
        # Autobahn's HTTP head parser (parse_head), documented as internal,
        # strict (from 26.11.1: a bare LF refused, as twisted.web does).
        "handshake": _refuses(
            getattr(autobahn_protocol, "parseHttpHeader", None),
            b"GET / HTTP/1.1\r\nA: b\nC: d\r\n\r\n",
        ),
        # The TLS endpoint's context factory (ReloadableTLS).
        "tls": _uses(endpoints.SSL4ServerEndpoint.__init__, "_sslContextFactory"),
    }
    return sorted(name for name, ok in needs.items() if not ok)


MISSING = _missing()
FAST_FRAMES = "frames" not in MISSING
TCP_BUFFERS = "tcp" not in MISSING
TLS_RELOAD = "tls" not in MISSING


def changed() -> list[str]:
    """
    The shortcuts turned off because Twisted or Autobahn changed the names
    they rely on (for the start-up warning).
    """
    return list(MISSING)


# --- Autobahn ----------------------------------------------------------------


def allow_close_code(code: int) -> None:
    """
    Let peers close with C{code}. Autobahn checks a received close code
    against the class attribute C{WebSocketProtocol.CLOSE_STATUS_CODES_ALLOWED}
    by name, so a subclass cannot extend it: the list itself is extended,
    for every Autobahn protocol in the process.
    """
    allowed = getattr(WebSocketProtocol, "CLOSE_STATUS_CODES_ALLOWED", None)
    if isinstance(allowed, list) and code not in allowed:
        allowed.append(code)


def close_code_allowed(code: int) -> bool:
    """
    Whether a peer may close with C{code} below 3000 (the registered
    codes), by the table Autobahn checks: RFC 6455's list and ours.
    """
    allowed = getattr(WebSocketProtocol, "CLOSE_STATUS_CODES_ALLOWED", ())
    return code in allowed


if TYPE_CHECKING:
    _Base = WebSocketServerProtocol
else:
    _Base = object


class QuickOptions(_Base):
    """
    Autobahn copies the factory's options onto each new protocol, then
    pretty-prints them all for a debug message that is built whether debug
    logging is on or not: a quarter of a handshake's time. This copies them
    itself, and leaves Autobahn nothing to copy or print.
    """

    def _connectionMade(self) -> None:
        if "options" in MISSING:
            super()._connectionMade()
            return
        # The options the class does not set itself, read from the factory
        # once (its options are set before it listens) and copied onto each
        # new protocol in one update.
        factory = self.factory
        options = factory.__dict__.get("_wsecho_options")
        if options is None or options[0] is not type(self):
            names = [n for n in self.CONFIG_ATTRS if not hasattr(type(self), n)]
            options = (type(self), {n: getattr(factory, n) for n in names})
            factory._wsecho_options = options
        self.__dict__.update(options[1])
        this: Any = self
        this.CONFIG_ATTRS = ()
        try:
            super()._connectionMade()
        finally:
            del this.CONFIG_ATTRS


class MessageTooBig(_Base):
    """
    Autobahn's hook for 1009 names the limit it was given; L{too_big} gives
    the reason instead (the echo's limit is one byte under Autobahn's: see
    L{wsecho.ws.protocol.make_factory}).
    """

    def too_big(self, limit: int) -> tuple[int, str]:
        raise NotImplementedError

    def _max_message_size_exceeded(
        self, msg_size: int, max_msg_size: int, reason: str
    ) -> None:
        limit, reason = self.too_big(max_msg_size)
        super()._max_message_size_exceeded(msg_size, limit, reason)


# How much of a read Autobahn's parser is given at a time (see
# autobahn_reads).
AUTOBAHN_SLICE = 16 * 1024


def autobahn_reads(protocol: Any, data: bytes) -> None:
    """
    Hand C{data} to Autobahn's parser, bypassing the protocol's own
    C{dataReceived} (the fast path's) that would hand it back.

    In slices: Autobahn's parser copies what follows a frame out of its
    buffer after each frame, which makes a read of many small frames (a
    message in 64-byte fragments) cost the square of its size; with
    256 KiB reads, 4 MiB in 64-byte fragments took 1.3 s against 1.0 s for
    Autobahn's own echo with Twisted's 64 KiB reads.
    """
    if len(data) <= AUTOBAHN_SLICE:
        protocol._dataReceived(data)
        return
    closed = protocol.STATE_CLOSED
    for at in range(0, len(data), AUTOBAHN_SLICE):
        if protocol.state == closed:
            return  # Autobahn would keep what comes for ever
        protocol._dataReceived(data[at : at + AUTOBAHN_SLICE])


def between_messages(protocol: Any) -> bool:
    # Autobahn's parser holds nothing: the fast path may take what comes.
    return not (
        protocol.data or protocol.current_frame is not None or protocol.inside_message
    )


def deflate_of(protocol: Any) -> Any:
    # The connection's PerMessageDeflate (its methods are public), or None.
    return protocol._perMessageCompress


def fail(protocol: Any, code: int, reason: str) -> None:
    # Fail the connection with code, as Autobahn's parser does for an error.
    protocol._fail_connection(code, reason)


def traffic_seen(protocol: Any) -> None:
    # The fast path read from the peer: a ping timeout that restarts on any
    # traffic is cancelled, as Autobahn's parser would.
    if protocol.autoPingTimeoutCall and protocol.autoPingRestartOnAnyTraffic:
        protocol._cancelAutoPingTimeoutCall()


def forget_parser(protocol: Any) -> None:
    # Drop what Autobahn's parser holds of a closed connection.
    protocol.data = b""
    protocol.message_data = []
    protocol.frame_data = []
    protocol._perMessageCompress = None


# Autobahn's parse of a request's head (as its handshake parses it; strict:
# ValueError for what it refuses) for EchoResource.upgrade_at_once: the
# request line, the headers by lower-case name, and how often each came.
parse_head = None if "handshake" in MISSING else autobahn_protocol.parseHttpHeader


# --- Twisted -----------------------------------------------------------------


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
    if isinstance(transport, TLSMemoryBIOProtocol):
        transport = transport.transport
    if not can_send_now(transport):
        return 0
    return int(transport._tempDataLen + len(transport.dataBuffer) - transport.offset)


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
    transport.resumeProducing()


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
    if "poll" in MISSING or not isinstance(reactor, EPollReactor):
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
