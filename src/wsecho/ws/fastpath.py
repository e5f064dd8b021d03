"""
The fast path of the echo: the whole single-frame messages of a read are
echoed by L{wsecho.wire.frames.scan} and written at once, without Autobahn's frame
objects (compressed ones too, with permessage-deflate); anything else
(fragments, a frame over the limit, a protocol error) goes to Autobahn's
parser, which answers it as it would.
"""

from __future__ import annotations

from functools import partial
from time import perf_counter
from typing import TYPE_CHECKING, Any

from wsecho._compat import (
    FAST_FRAMES,
    autobahn_reads,
    between_messages,
    can_send_now,
    deflate_of,
    fail,
    send_now,
    traffic_seen,
)
from wsecho.wire.deflate import DeflateCodec
from wsecho.wire.frames import scan

if TYPE_CHECKING:
    from wsecho.ws.flow import Backpressure

    _Base = Backpressure
else:
    _Base = object


class FastPath(_Base):
    """
    The echo's reading and writing, between messages.
    """

    # Off where Autobahn's parser state is not what _compat knows.
    fast_path = FAST_FRAMES
    _tally: Any = None
    _fast_limit = 0
    # Autobahn's, set from the factory.
    logOctets: bool
    # The start of a frame the fast path waits to have whole.
    _pending: list[bytes] | None = None
    _pending_size = 0
    # How many bytes _pending must have before it is looked at again.
    _need = 0
    # Bytes still to come of a frame dropped for the memory budget.
    _skip = 0
    # transport.write, or a write that sends at once (_compat.send_now).
    _write_echo: Any = None
    # permessage-deflate, when the connection negotiated it.
    _codec: DeflateCodec | None = None

    def start_fast_path(self, tally: Any) -> None:
        """
        Write at once where the transport allows it, count into C{tally}
        (L{None}: not counted), and take frames up to the size limits.
        """
        transport: Any = self.transport
        if can_send_now(transport):
            self._write_echo = partial(send_now, transport)
        else:
            self._write_echo = transport.write
        self._tally = tally
        # The largest frame the fast path takes; Autobahn answers larger ones.
        factory = self.factory
        self._fast_limit = min(
            factory.max_message_size, factory.max_frame_size or factory.max_message_size
        )

    def onOpen(self) -> None:
        super().onOpen()
        deflate = deflate_of(self)
        if deflate is not None:
            self._codec = DeflateCodec(deflate, self.factory.max_message_size)

    def stop_fast_path(self) -> None:
        """
        Let go of the frame waited for (the rest of it, still to come, is
        skipped) and of the transport.
        """
        if self._pending is not None:
            self._skip = max(0, self._need - self._pending_size)
            self._pending = None
        self._codec = None

    def sendData(
        self, data: bytes, sync: bool = False, chopsize: int | None = None
    ) -> None:
        # What Autobahn writes itself (the handshake's answer, control
        # frames, messages the fast path leaves) goes out at once too.
        if (
            sync
            or chopsize
            or self.send_queue
            or self.logOctets
            or not self._write_echo
        ):
            super().sendData(data, sync, chopsize)
            return
        self._write_echo(data)
        if self._paused:
            self.hold_write()
        stats = self.trafficStats
        if self.state == self.STATE_OPEN:
            stats.outgoingOctetsWireLevel += len(data)
        elif self.state == self.STATE_CONNECTING:
            stats.preopenOutgoingOctetsWireLevel += len(data)

    def dataReceived(self, data: bytes) -> None:
        """
        Echo the whole single-frame messages at the start of C{data} here
        (L{wsecho.wire.frames.scan}), and hand the rest to Autobahn.

        Most messages are a single frame, and Autobahn's frame machinery (a
        header object, a masker object, a UTF-8 validator object, eight
        callbacks and their debug logging) costs a 32-byte echo two thirds
        of its time. The fast path runs on an open connection, between
        messages (with permessage-deflate too), unless the class turns it off
        (C{fast_path}: --verbose, or an Autobahn that L{wsecho._compat}
        does not know).

        A frame of ours cut across reads is kept until it is whole (bounded
        by the size limit and the memory budget) and looked at again only
        once it is: a 16 MiB frame dripped in 1 KiB reads costs one pass,
        not sixteen thousand.
        """
        if not self.fast_path:
            autobahn_reads(self, data)
            return
        if self._skip:
            # The rest of a frame whose connection we closed for the budget.
            if len(data) <= self._skip:
                self._skip -= len(data)
                return
            data, self._skip = data[self._skip :], 0
        pending = self._pending
        if pending is not None:
            pending.append(data)
            self._pending_size += len(data)
            if not self.hold(len(data)):
                return
            if self._pending_size < self._need:
                return
            self._pending = None
            self.release(self._pending_size)
            # Joined once, when whole: a bytearray grown read by read would
            # be reallocated and over-allocated on the way.
            data = b"".join(pending)
        if self.state != self.STATE_OPEN or not between_messages(self):
            if self.state != self.STATE_CLOSED:
                # Closed, Autobahn would keep what comes for ever.
                autobahn_reads(self, data)
            return
        began = perf_counter()
        codec = self._codec
        replies, at, need, count = scan(data, self._fast_limit, self._tally, codec)
        if replies:
            reply = b"".join(replies)
            self._write_echo(reply)
            if self._paused:
                self.hold_write()
            stats = self.trafficStats
            stats.incomingWebSocketMessages += count
            stats.outgoingOctetsWireLevel += len(reply)
            stats.outgoingWebSocketMessages += count
            if self._tally is not None and count:
                self._tally.latency(perf_counter() - began, count)
        if at:
            self.trafficStats.incomingOctetsWireLevel += at
            traffic_seen(self)
        if codec is not None:
            self._count_deflate(codec)
            if codec.failure is not None:
                code, reason = codec.failure
                codec.failure = None
                fail(self, code, reason)
                return
        if at < len(data):
            rest = data[at:] if at else data
            if need:
                self._need = need
                self._pending = [rest]
                self._pending_size = len(rest)
                self.hold(len(rest))
            else:
                autobahn_reads(self, rest)

    def _count_deflate(self, codec: DeflateCodec) -> None:
        # What Autobahn counts of a compressed connection (for the
        # compression ratio of wsecho_deflate_bytes_total).
        stats = self.trafficStats
        stats.incomingOctetsWebSocketLevel += codec.compressed_in
        stats.incomingOctetsAppLevel += codec.plain_in
        stats.outgoingOctetsWebSocketLevel += codec.compressed_out
        stats.outgoingOctetsAppLevel += codec.plain_out
        codec.compressed_in = codec.plain_in = 0
        codec.compressed_out = codec.plain_out = 0
