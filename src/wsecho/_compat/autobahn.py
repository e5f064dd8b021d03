"""
Autobahn's state and hooks that are not its public API, each with why, read
and written here and nowhere else in wsecho.

Autobahn's public API is its interfaces (C{IWebSocketChannel} and the frame
and streaming ones in L{autobahn.websocket.interfaces}), the protocol
options, and a connection's negotiated values (C{peer}, C{http_headers},
C{websocket_protocol_in_use}, C{websocket_extensions_in_use}). Everything
else the echo needs (its parser's state, its close bookkeeping, its
traffic counters, its timers) is reached through the functions here and
L{ServerProtocol}, the base of the echo's protocol.

L{MISSING} names the shortcuts whose names the installed Autobahn does not
have (or no longer uses); each then takes the public path: Autobahn's own
frame parser and option copying, and a twisted.web request for every
upgrade.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autobahn.twisted.websocket import (
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket import protocol as autobahn_protocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.xormasker import (  # type: ignore[attr-defined]
    create_xor_masker,
)
from twisted.logger import Logger

from wsecho._compat.twisted import close_write
from wsecho.text import printable

try:
    from autobahn.exception import PayloadCorruptError as PayloadCorruptError
except ImportError:  # Autobahn before 26.11 lets zlib.error through instead

    class PayloadCorruptError(Exception):  # type: ignore[no-redef]
        pass


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
    needs = {
        # The parser's state (the fast path: read, between_messages, ...).
        "frames": all(
            hasattr(WebSocketProtocol, n)
            for n in ("_dataReceived", "_cancelAutoPingTimeoutCall", "_fail_connection")
        )
        and _uses(WebSocketProtocol.processData, "current_frame", "inside_message")
        and _uses(WebSocketProtocol._connectionMade, "_perMessageCompress"),
        # The per-connection option copy (ServerProtocol._connectionMade).
        "options": hasattr(WebSocketServerProtocol, "CONFIG_ATTRS")
        and hasattr(WebSocketProtocol, "_connectionMade"),
        # The 1009 hook and the close-code table.
        "limits": hasattr(WebSocketProtocol, "_max_message_size_exceeded")
        and isinstance(
            getattr(WebSocketProtocol, "CLOSE_STATUS_CODES_ALLOWED", None), list
        ),
        # The HTTP head parser (parse_head), documented as internal, strict
        # (from 26.11.1: a bare LF refused, as twisted.web does).
        "handshake": _refuses(
            getattr(autobahn_protocol, "parseHttpHeader", None),
            b"GET / HTTP/1.1\r\nA: b\nC: d\r\n\r\n",
        ),
    }
    return sorted(f"autobahn {name}" for name, ok in needs.items() if not ok)


MISSING = _missing()
FAST_FRAMES = "autobahn frames" not in MISSING

# The C masker (wsecho.wire.frames unmasks large payloads with it).
masker = create_xor_masker

# Autobahn's parse of a request's head (as its handshake parses it; strict:
# ValueError for what it refuses) for the upgrade at once: the request
# line, the headers by lower-case name, and how often each came.
parse_head = (
    None if "autobahn handshake" in MISSING else autobahn_protocol.parseHttpHeader
)


# --- close codes ---------------------------------------------------------------


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


def close_frame_error(code: int | None, reason: bytes | None) -> tuple[int, str] | None:
    """
    What is wrong with a received close frame (RFC 6455 7.4.1 and 5.5.1):
    the close code to fail the connection with and why, or L{None}. Codes
    under 3000 are checked against the table Autobahn checks.
    """
    allowed = getattr(WebSocketProtocol, "CLOSE_STATUS_CODES_ALLOWED", ())
    if code is not None and (
        code < 1000 or code >= 5000 or (code < 3000 and code not in allowed)
    ):
        return 1002, f"invalid close code {code}"
    if reason and not reason.isascii():
        try:
            reason.decode("utf-8")
        except UnicodeDecodeError:
            return 1007, "invalid close reason (non-UTF8 payload)"
    return None


# --- the protocol ----------------------------------------------------------------


class ServerFactory(WebSocketServerFactory):
    """
    Autobahn's server factory, keeping the options its connections copy
    (see L{ServerProtocol}) until C{setProtocolOptions} or
    C{resetProtocolOptions} changes them.
    """

    # The options the protocol class does not set itself, by class.
    _copied: tuple[type, dict[str, Any]] | None = None

    def setProtocolOptions(self, *args: Any, **kwargs: Any) -> None:
        super().setProtocolOptions(*args, **kwargs)
        self._copied = None

    def resetProtocolOptions(self) -> None:
        super().resetProtocolOptions()
        self._copied = None


class ServerProtocol(WebSocketServerProtocol):
    """
    Autobahn's server protocol with its private hooks given wsecho's
    meaning: the base of L{wsecho.ws.protocol.EchoServerProtocol}, which
    overrides public hooks only.

    Its subclass may set L{write_now}: what Autobahn writes itself (the
    handshake's answer, control frames, the messages the fast path leaves)
    then goes out through it, unless Autobahn is queueing or logging.
    """

    write_now: Callable[[bytes], None] | None = None

    def websocket_closed(self, abort: bool) -> None:
        """
        Called once, when the WebSocket is closed (or failed) and Autobahn
        closes the TCP connection (C{abort}: at once), which may stay open a
        while (a TLS peer's close_notify). Autobahn's pings are stopped by
        then.
        """

    def _connectionMade(self) -> None:
        # Autobahn copies the factory's options onto each new protocol, then
        # pretty-prints them all for a debug message that is built whether
        # debug logging is on or not: a quarter of a handshake's time. They
        # are copied here instead, from the factory's copy of them (which a
        # later setProtocolOptions renews: see ServerFactory), leaving
        # Autobahn nothing to copy or print.
        if "autobahn options" in MISSING:
            super()._connectionMade()
            return
        factory = self.factory
        cls = type(self)
        copied = getattr(factory, "_copied", None)
        if copied is None or copied[0] is not cls:
            names = [n for n in cls.CONFIG_ATTRS if not hasattr(cls, n)]
            copied = (cls, {n: getattr(factory, n) for n in names})
            if isinstance(factory, ServerFactory):
                factory._copied = copied
        this: Any = self
        this.__dict__.update(copied[1])
        this.CONFIG_ATTRS = ()
        try:
            super()._connectionMade()
        finally:
            del this.CONFIG_ATTRS

    def _max_message_size_exceeded(
        self, msg_size: int, max_msg_size: int, reason: str
    ) -> None:
        # Autobahn is given one byte more than the echo's message limit
        # (see wsecho.ws.factory.make_factory): the reason names the echo's,
        # unless the limit hit was the frame's.
        this: Any = self
        limit = max_msg_size
        if limit != this.maxFramePayloadSize:
            limit = this.maxMessagePayloadSize - 1
        super()._max_message_size_exceeded(
            msg_size, limit, f"message over {limit} bytes"
        )

    def sendData(
        self, data: bytes, sync: bool = False, chopsize: int | None = None
    ) -> None:
        write = self.write_now
        this: Any = self
        if write is None or sync or chopsize or this.send_queue or this.logOctets:
            super().sendData(data, sync, chopsize)
            return
        write(data)
        stats = self.trafficStats
        if self.state == self.STATE_OPEN:
            stats.outgoingOctetsWireLevel += len(data)
        elif self.state == self.STATE_CONNECTING:
            stats.preopenOutgoingOctetsWireLevel += len(data)

    def failHandshake(
        self, reason: str, code: int = 400, responseHeaders: Any = None
    ) -> None:
        # Autobahn's reason may quote the client's headers; it goes into its
        # log lines and the answer's status line: without control characters.
        super().failHandshake(printable(reason), code, responseHeaders)

    def onCloseFrame(self, code: int | None, reasonRaw: bytes | None) -> bool | None:
        """
        A close frame that opens a closing handshake with a bad code or
        reason fails the connection, and the TCP connection is closed in
        order once our close frame is written. Autobahn would take the bad
        frame for the answer to its own close frame and abort: the client,
        writing its answer, would meet a reset instead.

        A close frame after ours (its answer, or a malformed one that failed
        the connection a moment ago) closes the TCP connection in order too:
        Autobahn, as a server, aborts it then, which resets it and, over
        TLS, drops our close frame still in the TLS transport's buffer (the
        1002 for a close frame with RSV bits, a 1-byte or a 126-byte
        payload never left).
        """
        if self.state == self.STATE_OPEN:
            error = close_frame_error(code, reasonRaw)
            if error is not None:
                self._fail_connection(*error)
                self.dropConnection(abort=False)
                return True
        self._closing_in_order = self.state == self.STATE_CLOSING
        try:
            # Autobahn's annotations say int and bytes; it passes None for a
            # close frame without a code.
            return super().onCloseFrame(code, reasonRaw)  # type: ignore[arg-type]
        finally:
            self._closing_in_order = False

    def onCloseHandshakeTimeout(self) -> None:
        # The peer did not answer our close frame in time (it may be in the
        # middle of a frame it cannot finish): Autobahn aborts, which would
        # destroy our close frame should the peer not have read it yet. The
        # connection is closed in order instead, the wait for the peer's FIN
        # bounded as for any other close (websocket_closed).
        self._closing_in_order = True
        try:
            super().onCloseHandshakeTimeout()
        finally:
            self._closing_in_order = False

    # Set while Autobahn ends a closing handshake of ours (its answer, or
    # its timeout): Autobahn would abort the TCP connection.
    _closing_in_order = False

    def dropConnection(self, abort: bool = False) -> None:
        # The WebSocket is closed: its pings stop now, not when the peer
        # closes TCP, and the subclass hears of it once.
        closing = self.state != self.STATE_CLOSED
        super().dropConnection(abort and not self._closing_in_order)
        if closing:
            for name in ("autoPingPendingCall", "autoPingTimeoutCall"):
                call = getattr(self, name)
                if call is not None:
                    call.cancel()
                    setattr(self, name, None)
            self.websocket_closed(abort and not self._closing_in_order)

    def _closeConnection(self, abort: bool = False) -> None:
        # Autobahn's loseConnection closes the socket as soon as our close
        # frame is written: see close_write for why it half-closes instead,
        # waiting for the peer's FIN (websocket_closed bounds the wait).
        if abort:
            super()._closeConnection(abort)
        elif self._without_waiting:
            transport: Any = self.transport
            transport.loseConnection()
        else:
            close_write(self.transport)

    # Set by drop(wait=False): closed once our close frame is out, the
    # peer's FIN not waited for.
    _without_waiting = False

    # What a peer may send after the WebSocket closed, read and dropped
    # while its FIN is awaited, before its connection is aborted: one that
    # keeps sending would hold it (and cost reads) until the timeout.
    AFTER_CLOSE_LIMIT = 1024 * 1024
    _after_close = 0
    _log = Logger()

    def after_close(self, size: int) -> None:
        """
        The peer sent C{size} bytes after the WebSocket closed: dropped.
        """
        self._after_close += size
        transport: Any = self.transport
        if self._after_close > self.AFTER_CLOSE_LIMIT and transport is not None:
            self._log.info(
                "{peer}: over {limit} bytes sent after the WebSocket closed: aborted",
                peer=self.peer,
                limit=self.AFTER_CLOSE_LIMIT,
            )
            transport.abortConnection()


# --- state and actions, for the echo's parts ------------------------------------

# How much of a read Autobahn's parser is given at a time (see read).
AUTOBAHN_SLICE = 16 * 1024
# The slices of a connection that must wait its turn once it has used its
# share (see read): 4 KiB of 1-byte continuation frames cost Autobahn some
# 5 ms; inside a compressed message, 1 KiB inflates to 1 MiB at most.
TURN_SLICE = 4 * 1024
COMPRESSED_SLICE = 1024


def read(
    protocol: Any,
    data: bytes,
    turn_over: Callable[[], bool] | None = None,
    by_frame: bool = False,
) -> bytes:
    """
    Hand C{data} to Autobahn's parser, bypassing the protocol's own
    C{dataReceived} (the fast path's) that would hand it back; return what
    was not handed over (C{b""}: all of it).

    In slices: Autobahn's parser copies what follows a frame out of its
    buffer after each frame, which makes a read of many small frames (a
    message in 64-byte fragments) cost the square of its size; with
    256 KiB reads, 4 MiB in 64-byte fragments took 1.3 s against 1.0 s for
    Autobahn's own echo with Twisted's 64 KiB reads.

    With C{turn_over} (the connection's turn is used up), the slices are
    smaller, and the rest is returned once C{turn_over()} says so: it waits
    for the connection's next turn. With C{by_frame} too, no slice goes past
    the end of a frame: a message's end is the last thing of its slice, so
    that its echo may wait for a later turn (see L{frame_slice}) with
    nothing after it handled first.
    """
    closed = protocol.STATE_CLOSED
    if protocol.state == closed:
        # Autobahn would keep it for ever; the peer's FIN is awaited.
        protocol.after_close(len(data))
        return b""
    if turn_over is None:
        if len(data) <= AUTOBAHN_SLICE:
            protocol._dataReceived(data)
            return b""
        step = AUTOBAHN_SLICE
    at = 0
    size = len(data)
    while at < size:
        if protocol.state == closed:
            protocol.after_close(size - at)
            return b""
        if turn_over is not None:
            if at and turn_over():
                return data[at:]
            step = frame_slice(protocol, data, at, by_frame)
        protocol._dataReceived(data[at : at + step])
        at += step
    return b""


def frame_slice(protocol: Any, data: bytes, at: int, by_frame: bool) -> int:
    """
    How much of C{data} from C{at} to hand Autobahn's parser at once: a
    turn's slice (smaller inside a compressed message, where 1 KiB inflates
    to 1 MiB at most), and with C{by_frame} no further than the end of the
    frame under way, or of the frame whose header starts at C{at}.
    """
    most = (
        COMPRESSED_SLICE
        if getattr(protocol, "_isMessageCompressed", False)
        else TURN_SLICE
    )
    if not by_frame:
        return most
    frame = protocol.current_frame
    if frame is not None:
        left = int(frame.length - protocol.current_frame_masker.pointer())
        return max(1, min(most, left))
    if protocol.data:
        return 1  # the rest of a header cut across reads, up to its end
    size = len(data) - at
    if size < 2:
        return size
    length = data[at + 1] & 0x7F
    head = 2 + (4 if data[at + 1] & 0x80 else 0)
    if length == 126:
        head += 2
        length = int.from_bytes(data[at + 2 : at + 4], "big") if size >= 4 else 0
    elif length == 127:
        head += 8
        length = int.from_bytes(data[at + 2 : at + 10], "big") if size >= 10 else 0
    return max(1, min(head + length, head + most))


def state_open(protocol: Any) -> bool:
    return bool(protocol.state == protocol.STATE_OPEN)


def state_connecting(protocol: Any) -> bool:
    return bool(protocol.state == protocol.STATE_CONNECTING)


def state_closed(protocol: Any) -> bool:
    # Closed for good: Autobahn keeps what it is handed then, for ever.
    return bool(protocol.state == protocol.STATE_CLOSED)


def between_messages(protocol: Any) -> bool:
    # Open, and Autobahn's parser holds nothing: the fast path may take
    # what comes.
    return protocol.state == protocol.STATE_OPEN and not (
        protocol.data or protocol.current_frame is not None or protocol.inside_message
    )


def failed(protocol: Any) -> bool:
    # The connection was failed by us: Autobahn ignores the rest of the
    # message (and so does the echo).
    return bool(protocol.failedByMe)


def decompressor_of(deflate: Any) -> Any:
    # The zlib decompressor of a PerMessageDeflate (after its
    # start_decompress_message): its public decompress_message_data fails a
    # message that a bounded call does not finish, and the fast path
    # inflates a large message in bounded steps.
    return deflate._decompressor


def deflate_of(protocol: Any) -> Any:
    # The connection's PerMessageDeflate (its methods are public), or None.
    return protocol._perMessageCompress


def fail(protocol: Any, code: int, reason: str) -> None:
    # Fail the connection with code, as Autobahn's parser does for an error.
    protocol._fail_connection(code, reason)


def close(protocol: Any, code: int, reason: bytes, ignore_rest: bool = False) -> None:
    """
    Start the closing handshake with C{code}, which may be one that
    C{sendClose} refuses (it reserves 1001, 1009, 1012, 1013... for
    endpoints); with C{ignore_rest}, the rest of the message under way is
    ignored, as for a failure.
    """
    if ignore_rest:
        protocol.failedByMe = True
    protocol.sendCloseFrame(code=code, reasonUtf8=reason, isReply=False)


def drop(
    protocol: Any, abort: bool = False, why: str | None = None, wait: bool = True
) -> None:
    # Close TCP (at once with abort; without wait, once what was written is
    # out, not waiting for the peer's FIN); why: the log's reason for an
    # unclean close that we decided.
    protocol._without_waiting = not wait
    if why is not None:
        protocol.wasClean = False
        protocol.wasNotCleanReason = why
    protocol.dropConnection(abort=abort)


def count_fast(protocol: Any, read: int, written: int, messages: int) -> None:
    # What the fast path read and echoed, in Autobahn's traffic counters
    # (the close line and the metrics read them); and, as Autobahn's parser
    # would, a ping timeout that restarts on any traffic is cancelled.
    if protocol.autoPingTimeoutCall and protocol.autoPingRestartOnAnyTraffic:
        protocol._cancelAutoPingTimeoutCall()
    stats = protocol.trafficStats
    stats.incomingOctetsWireLevel += read
    if messages:
        stats.incomingWebSocketMessages += messages
        stats.outgoingWebSocketMessages += messages
    stats.outgoingOctetsWireLevel += written


def count_sent(protocol: Any, written: int) -> None:
    # A message Autobahn read, echoed later by the fast path's compressor
    # (Autobahn counted it received).
    stats = protocol.trafficStats
    stats.outgoingWebSocketMessages += 1
    stats.outgoingOctetsWireLevel += written


def count_deflate(
    protocol: Any,
    compressed_in: int,
    plain_in: int,
    compressed_out: int,
    plain_out: int,
) -> None:
    # What Autobahn counts of a compressed connection (the compression
    # ratio of wsecho_deflate_bytes_total).
    stats = protocol.trafficStats
    stats.incomingOctetsWebSocketLevel += compressed_in
    stats.incomingOctetsAppLevel += plain_in
    stats.outgoingOctetsWebSocketLevel += compressed_out
    stats.outgoingOctetsAppLevel += plain_out


def fold_chunks(protocol: Any, payload: list[Any], most: int) -> None:
    """
    Add a frame's chunks to the message Autobahn keeps (a list of chunks,
    some 40 bytes each on top of their payload even when empty); past
    C{most} chunks, fold them into one buffer, so that memory follows the
    payload.
    """
    if protocol.failedByMe:
        return
    chunks: list[Any] = protocol.message_data
    chunks.extend(payload)
    if len(chunks) > most:
        head = chunks[0]
        if not isinstance(head, bytearray):
            head = bytearray(head)
        for chunk in chunks[1:]:
            head += chunk
        chunks[:] = [head]


def drop_message(protocol: Any) -> None:
    # Let go of the message and frame Autobahn holds.
    protocol.message_data = []
    protocol.frame_data = []


def forget(protocol: Any) -> None:
    """
    Drop what Autobahn holds of a closed connection: its closing-handshake
    timer (left running when the peer drops the connection first, it would
    hold the protocol for --close-handshake-timeout seconds more), its
    parser's buffers and zlib objects, and the Deferreds that hold the
    protocol in a cycle until a full garbage collection.
    """
    call = protocol.closeHandshakeTimeoutCall
    if call is not None:  # None once it has fired
        call.cancel()
        protocol.closeHandshakeTimeoutCall = None
    protocol.data = b""
    protocol.message_data = []
    protocol.frame_data = []
    protocol._perMessageCompress = None
    protocol.is_closed = protocol.is_open = None
