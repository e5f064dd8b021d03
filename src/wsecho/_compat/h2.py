"""
HTTP/2 from Twisted's private C{twisted.web._http2} (its ticket 8194: the
API is "early draft") and the C{h2} state machine under it, each use with
why, and nowhere else.

L{H2Connection} is Twisted's, with wsecho's settings (extended CONNECT,
RFC 8441; bounded streams, headers and windows), a hook that takes the
extended CONNECT streams, and the limits a peer's control frames meet.
L{wsecho._compat.h2stream.StreamTransport} is one such stream made a
transport for a WebSocket protocol.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import priority
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import _http2

from wsecho._compat import h2data
from wsecho._compat.h2stream import StreamTransport
from wsecho._compat.twisted import can_send_now, send_now


def _missing() -> list[str]:
    # What of Twisted's HTTP/2 connection H2Connection overrides or reads.
    connection = _http2.H2Connection
    names = (
        "_requestReceived",
        "_requestDataReceived",
        "_requestEnded",
        "_requestAborted",
        "_handleWindowUpdate",
        "_handlePriorityUpdate",
        "_sendPrioritisedData",
        "_terminate",
        "_tryToWriteControlData",
        "_requestDone",
    )
    ok = (
        all(callable(getattr(connection, name, None)) for name in names)
        and hasattr(_http2, "_END_STREAM_SENTINEL")
        and "_outboundStreamQueues" in connection.__init__.__code__.co_names
        and "_streamCleanupCallbacks" in connection.__init__.__code__.co_names
        and "_sendingDeferred" in connection.__init__.__code__.co_names
        and "_conn" in _http2.H2Stream.__init__.__code__.co_names
    )
    return [] if ok else ["twisted h2"]


# Off (HTTP/1.1 only, one warning) where Twisted's HTTP/2 is not what this
# module knows; the WebSocket streams' fast path for DATA frames
# (wsecho._compat.h2data) is off where h2's state is not what it knows.
MISSING = _missing()
HTTP2 = not MISSING
MISSING += h2data.MISSING

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

# A peer's WINDOW_UPDATEs (non-zero) answer the DATA frames it was sent:
# each frame sent lets it send ACKS_PER_FRAME of them outside the control
# budget (HAProxy sends one for the stream and one for the connection per
# DATA frame it reads), and one more per ACK_BYTES of it (a large frame is
# acknowledged in parts as the peer's buffer drains: HAProxy ended a 16 MB
# echo with ENHANCE_YOUR_CALM on 2 per frame), up to ACKS_OWED_MAX owed at
# once. Any others are control frames like a PING.
ACKS_PER_FRAME = 2
ACK_BYTES = 1024
ACKS_OWED_MAX = 16 * CONTROL_BURST


def _is_control(event: Any) -> bool:
    # A control frame, or an empty DATA frame (CVE-2019-9518).
    if isinstance(event, h2.events.DataReceived):
        return not event.flow_controlled_length and not event.stream_ended
    return isinstance(event, _CONTROL_EVENTS)


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
        self._acks_owed = 0
        self._control_at = reactor.seconds()
        # Called with a stream's id once it is done (both ends closed, or
        # reset): wsecho.http.h2 rearms its idle deadline.
        self.stream_done: Callable[[int], object] = lambda stream_id: None
        # The fast path of the WebSocket streams' DATA frames, unless h2 has
        # changed (or a test compares it with h2's own path).
        self._frames: h2data.Frames | None = None
        if self.fast_data and not h2data.MISSING:
            self._frames = h2data.Frames(self, len(PREFACE))

    # Whether DATA frames of WebSocket streams take wsecho._compat.h2data.
    fast_data = True

    def connectionMade(self) -> None:
        super().connectionMade()
        self._sends_now = can_send_now(self.transport)
        increment = self._connection_window - 65535
        if increment > 0:
            self.conn.increment_flow_control_window(increment)
            self._tryToWriteControlData()

    # Whether what h2 has to send is written to the socket at once
    # (wsecho._compat.twisted.send_now: TCP, not TLS), as HTTP/1.1's echoes
    # are, rather than on the reactor's next turn.
    _sends_now = False

    def _tryToWriteControlData(self) -> bool:
        # Twisted's, whose first case (nothing buffered before, the network
        # not full) writes through send_now.
        if (
            self._sends_now
            and self._consumerBlocked is None
            and not self._bufferedControlFrames
        ):
            data = self.conn.data_to_send()
            if data:
                send_now(self.transport, data)
            return True
        result: bool = super()._tryToWriteControlData()
        return result

    @property
    def stream_count(self) -> int:
        return len(self.streams)

    def dataReceived(self, data: bytes) -> None:
        # What the frames make h2 write (echoes, WINDOW_UPDATEs, answers) is
        # written once, at the end, not once per frame or event.
        if self.transport is None:
            return
        self._gathering = True
        try:
            if self._frames is None:
                self.to_h2(data)
            else:
                self._frames.receive(data)
        finally:
            self._gathering = False
        if self.transport is not None:
            self._tryToWriteControlData()

    def to_h2(self, data: bytes) -> bool:
        """
        Hand C{data} to h2, and what it makes of it to Twisted's handlers:
        whether the connection goes on.
        """
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._terminate(Failure())
            return False
        self._events(events)
        return self.transport is not None

    def too_large(self, length: int) -> None:
        """
        Refuse a frame announced over SETTINGS_MAX_FRAME_SIZE, as h2 does
        (RFC 9113 4.2), but at its header.
        """
        self.conn.close_connection(error_code=ErrorCodes.FRAME_SIZE_ERROR)
        self._terminate(Failure(ConnectionLost(f"a frame of {length} bytes")))

    def _events(self, events: list[Any]) -> None:
        # Twisted's dataReceived, for events on streams it has let go of
        # too (its own raises KeyError), and with control frames limited.
        control = 0
        acks = 0
        for event in events:
            if isinstance(event, h2.events.WindowUpdated) and event.delta:
                acks += 1
            elif _is_control(event):
                control += 1
        if acks:
            free = min(acks, self._acks_owed)
            self._acks_owed -= free
            control += acks - free
        if control and not self._spend(control):
            self.refuse(ErrorCodes.ENHANCE_YOUR_CALM, "too many control frames")
            return
        self._dispatch(events)

    def _dispatch(self, events: list[Any]) -> None:
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

    def _spend(self, count: int) -> bool:
        now = self._reactor.seconds()
        elapsed = max(0.0, now - self._control_at)
        self._control_at = now
        self.control_tokens = min(
            float(CONTROL_BURST), self.control_tokens + elapsed * CONTROL_RATE
        )
        self.control_tokens -= count
        return self.control_tokens >= 0

    # Seconds a connection we closed may take to be gone (its client may
    # not read our GOAWAY): then it is aborted. wsecho.http.h2 sets it.
    close_timeout: float | None = 5.0
    _abort_late: Any = None

    def _terminate(self, reason: Failure) -> None:
        super()._terminate(reason)
        if self.close_timeout and self._abort_late is None:
            self._abort_late = self._reactor.callLater(self.close_timeout, self._abort)

    def _abort(self) -> None:
        self._abort_late = None
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def connectionLost(
        self, reason: Failure = connectionDone, _cancelTimeouts: bool = True
    ) -> None:
        # Twisted's, over a copy of the streams: a stream's protocol may let
        # go of another as it hears of the loss (Twisted's loop then raises
        # "dictionary changed size during iteration").
        self._stillProducing = False
        if _cancelTimeouts:
            self.setTimeout(None)
        for stream in list(self.streams.values()):
            stream.connectionLost(reason)
        for stream_id in list(self.streams):
            if stream_id in self.streams:
                self._requestDone(stream_id)
        if _cancelTimeouts and self._abortingCall is not None:
            self._abortingCall.cancel()
            self._abortingCall = None
        if _cancelTimeouts and self._abort_late is not None:
            # The TCP connection is gone.
            if self._abort_late.active():
                self._abort_late.cancel()
            self._abort_late = None

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

    def _sendPrioritisedData(self, *args: Any) -> None:
        # Twisted's sending loop leaves a stream whose window the client
        # keeps closed in its turn, with its data queued: it then turns
        # every reactor iteration, sending nothing, for as long as the
        # client likes (100 % of a core per such connection). Such streams
        # are blocked first; a WINDOW_UPDATE unblocks them.
        window = self.conn.local_flow_control_window
        for stream_id, queue in self._outboundStreamQueues.items():
            if (
                queue
                and queue[0] is not _http2._END_STREAM_SENTINEL
                and window(stream_id) <= 0
            ):
                self.priority.block(stream_id)
        before = self.conn.outbound_flow_control_window
        super()._sendPrioritisedData(*args)
        sent = before - self.conn.outbound_flow_control_window
        if sent > 0:
            self.frames_sent(1, sent)  # Twisted's loop sends a frame a turn

    def frames_sent(self, count: int, size: int) -> None:
        # DATA frames sent: the peer may acknowledge them (ACKS_PER_FRAME,
        # ACK_BYTES).
        owed = self._acks_owed + ACKS_PER_FRAME * count + size // ACK_BYTES
        self._acks_owed = min(ACKS_OWED_MAX, owed)

    def _handleWindowUpdate(self, event: Any) -> None:
        super()._handleWindowUpdate(event)
        # Streams blocked above may go again: wake the loop, which Twisted
        # does only when a stream writes.
        waiting = self._sendingDeferred
        if waiting is not None and any(self._outboundStreamQueues.values()):
            self._sendingDeferred = None
            waiting.callback(event.stream_id)

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

    def abort_stream(self, stream_id: int) -> None:
        """
        Reset a stream (RST_STREAM CANCEL: it is not wanted any more, RFC
        9113 8.7) and let go of it. Twisted's C{abortRequest} raises when h2
        has closed the stream meanwhile (the client's RST_STREAM read in the
        same batch).
        """
        try:
            self.conn.reset_stream(stream_id, error_code=ErrorCodes.CANCEL)
        except h2.exceptions.ProtocolError:
            pass
        if self._tryToWriteControlData() and stream_id in self.streams:
            self._requestDone(stream_id)

    def queued(self, stream_id: int) -> int:
        # Bytes of a stream waiting to be sent.
        queue = self._outboundStreamQueues.get(stream_id, ())
        return sum(len(chunk) for chunk in queue if isinstance(chunk, bytes))

    def open_window(self, stream_id: int, size: int) -> None:
        # h2 answers with WINDOW_UPDATEs only once half a window is read
        # (its WindowManager): most calls write nothing.
        if size and stream_id in self.streams and self.transport is not None:
            if self._frames is None:
                self.conn.acknowledge_received_data(size, stream_id)
            else:
                h2data.acknowledge(self.conn, stream_id, size)
            if not self._gathering:
                self._tryToWriteControlData()

    # Within _events: what h2 has to send is written at its end.
    _gathering = False

    def send(self, stream_id: int, data: bytes) -> None:
        """
        Send C{data} on a WebSocket stream: at once, in DATA frames made by
        h2, as far as the windows allow and nothing of the stream waits;
        the rest in Twisted's queue, sent by its loop as windows open.

        Twisted's own path (writeDataToStream) queues every write and sends
        it a reactor turn later, a frame at a time, each with its own
        C{transport.write}, through the priority tree and a Deferred: most
        of the cost of a small echo over h2. WebSocket streams carry no
        priorities worth the tree (RFC 9113 deprecates them).
        """
        queue = self._outboundStreamQueues.get(stream_id)
        if queue is None:
            return
        if (
            not queue
            and self._consumerBlocked is None
            and not self._bufferedControlFrames
        ):
            done = None
            if self._frames is not None:
                done = h2data.send(self.conn, stream_id, data)
            if done is None:
                done = self._send_by_h2(stream_id, data)
                if done is None:
                    return
            else:
                # Its frames are all full but the last.
                frame = self.conn.max_outbound_frame_size
                self.frames_sent(-(-done[0] // frame), done[0])
            sent, window = done
            if sent:
                data = data[sent:]
                if not self._gathering:
                    self._tryToWriteControlData()
            if not data:
                if window <= 0:
                    self.streams[stream_id].flowControlBlocked()
                return
        self.writeDataToStream(stream_id, data)

    def _send_by_h2(self, stream_id: int, data: bytes) -> tuple[int, int] | None:
        # What of data goes in DATA frames now, as far as the windows allow,
        # through h2's send_data: the bytes sent and the window left, or
        # None if the stream is closed meanwhile.
        conn = self.conn
        frame = conn.max_outbound_frame_size
        at = 0
        try:
            window = conn.local_flow_control_window(stream_id)
            while at < len(data) and window > 0:
                size = min(window, frame, len(data) - at)
                chunk = data[at : at + size] if size < len(data) else data
                conn.send_data(stream_id, chunk)
                self.frames_sent(1, size)
                at += size
                window -= size
        except h2.exceptions.StreamClosedError:
            # Reset by the client in this very read: its RST_STREAM's
            # event, next, loses the WebSocket.
            return None
        return at, window

    def send_headers(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end: bool = False
    ) -> None:
        try:
            self.conn.send_headers(stream_id, headers, end_stream=end)
        except h2.exceptions.ProtocolError:
            # Closed meanwhile: h2 read the whole of the client's last read
            # (a RST_STREAM after its HEADERS, say) before wsecho answers.
            return
        self._tryToWriteControlData()


def _peer(transport: Any) -> str:
    peer = transport.getPeer()
    return f"{getattr(peer, 'host', peer)}:{getattr(peer, 'port', '')}"


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
