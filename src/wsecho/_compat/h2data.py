"""
The DATA frames of WebSocket streams, read, written and acknowledged beside
h2 rather than through it, on h2's own state.

Why: for a small echo, h2's path (C{receive_data} with its frame objects,
two state machines and a log call a frame, C{send_data} with the same, and
C{acknowledge_received_data}) costs five times the echo itself. Here only
one case is taken, in each direction: a DATA frame without flags on a
stream that is open, within both windows, on a connection that is open.
For it, h2's state changes exactly as h2's own path changes it (each change
says where h2 makes it); anything else (the preface, every other frame, a
frame h2 must refuse) is h2's. C{tests/test_h2_data.py} feeds the same
bytes to a connection with and without this path and requires the same
bytes back and the same data read.

These are h2's private names: L{MISSING} says if a release has changed
them, and then the path is off (L{wsecho._compat.h2.H2Connection} uses h2's
public API alone).
"""

from __future__ import annotations

import struct
from typing import Any

import h2.config
import h2.connection
import h2.stream

from wsecho._compat.h2stream import StreamTransport

# --- HTTP/2's frame layout (RFC 9113 4.1), for the frames taken here ------

# The frame header: a 24-bit length, the type, the flags, a reserved bit
# and a 31-bit stream identifier.
HEADER_SIZE = 9
_HEADER = struct.Struct(">BHBBL")

DATA = 0x0
HEADERS = 0x1
PUSH_PROMISE = 0x5
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

END_HEADERS = 0x4


def header(buffer: bytes, at: int) -> tuple[int, int, int, int]:
    """
    The length, type, flags and stream of the frame whose header begins at
    C{at} of C{buffer} (which holds at least L{HEADER_SIZE} bytes from
    there). The reserved bit is ignored (RFC 9113 4.1).
    """
    high, low, kind, flags, stream = _HEADER.unpack_from(buffer, at)
    return high << 16 | low, kind, flags, stream & 0x7FFFFFFF


def data_header(size: int, stream_id: int) -> bytes:
    """
    The header of a DATA frame of C{size} bytes on C{stream_id}, no flags.
    """
    return _HEADER.pack(size >> 16, size & 0xFFFF, DATA, 0, stream_id)


def window_update(stream_id: int, increment: int) -> bytes:
    """
    A WINDOW_UPDATE frame: C{increment} more bytes may be sent on
    C{stream_id} (0: the connection).
    """
    return _HEADER.pack(0, 4, WINDOW_UPDATE, 0, stream_id) + increment.to_bytes(
        4, "big"
    )


def opens_headers(kind: int, flags: int) -> bool | None:
    """
    Whether a frame begins a header block that CONTINUATION frames go on
    (C{True}), ends one (C{False}), or neither (C{None}): within a block,
    only CONTINUATION frames may come (RFC 9113 6.10).
    """
    if kind == HEADERS or kind == PUSH_PROMISE or kind == CONTINUATION:
        return not flags & END_HEADERS
    return None


# --- h2's state ---------------------------------------------------------

_OPEN = h2.stream.StreamState.OPEN
_HALF_CLOSED_REMOTE = h2.stream.StreamState.HALF_CLOSED_REMOTE
_SERVER_OPEN = h2.connection.ConnectionState.SERVER_OPEN


def _missing() -> list[str]:
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        stream = h2.stream.H2Stream(1, conn.config, 65535, 65535)
        manager = conn._inbound_flow_control_window_manager
        ok = (
            isinstance(conn._data_to_send, bytearray)
            and isinstance(conn.outbound_flow_control_window, int)
            and isinstance(manager.current_window_size, int)
            and callable(manager.process_bytes)
            and isinstance(conn.state_machine.state, h2.connection.ConnectionState)
            and isinstance(stream.state_machine.state, h2.stream.StreamState)
            and hasattr(stream.state_machine, "headers_received")
            and stream._expected_content_length is None
            and isinstance(stream._actual_content_length, int)
            and isinstance(stream.outbound_flow_control_window, int)
            and callable(stream._inbound_window_manager.process_bytes)
        )
    except (AttributeError, TypeError):
        ok = False
    return [] if ok else ["h2 data frames"]


MISSING = _missing()


class Frames:
    """
    The frames a peer sends on one server connection (C{owner}, wsecho's
    L{wsecho._compat.h2.H2Connection}), split: runs of them for h2
    (C{owner.to_h2}), and the DATA frames of its WebSocket streams, read
    here and handed to the stream (C{receiveDataChunk}).

    h2 gets whole frames only (and the connection preface): what does not
    end in a read waits here, up to one frame of at most h2's
    C{max_inbound_frame_size}. A frame announced larger is refused at its
    header (C{owner.too_large}), not read to its end first as h2 would (up
    to 16 MiB).
    """

    def __init__(self, owner: Any, preface: int) -> None:
        self._owner = owner
        self._conn: h2.connection.H2Connection = owner.conn
        self._window = self._conn._inbound_flow_control_window_manager
        self._rest = b""
        self._preface = preface
        self._in_headers = False

    def receive(self, data: bytes) -> None:
        """
        Hand the frames of C{data} on, in order, until the connection is
        gone (C{owner.transport} is L{None}).
        """
        owner = self._owner
        if self._preface:
            first = data[: self._preface]
            self._preface -= len(first)
            data = data[len(first) :]
            if not owner.to_h2(first) or not data:
                return
        if self._rest:
            data = self._rest + data
            self._rest = b""
        size = len(data)
        limit = self._conn.max_inbound_frame_size
        streams = owner.streams
        at = start = 0
        take = self._take
        while size - at >= HEADER_SIZE:
            length, kind, flags, stream_id = header(data, at)
            if length > limit:
                owner.too_large(length)
                return
            end = at + HEADER_SIZE + length
            if end > size:
                break
            stream = streams.get(stream_id)
            if (
                kind == DATA
                and not flags
                and length
                and not self._in_headers
                and type(stream) is StreamTransport
                and take(stream_id, length)
            ):
                if start < at and not owner.to_h2(data[start:at]):
                    return
                stream.receiveDataChunk(data[at + HEADER_SIZE : end], length)
                if owner.transport is None:
                    return
                start = end
            else:
                block = opens_headers(kind, flags)
                if block is not None:
                    self._in_headers = block
            at = end
        if start < at and not owner.to_h2(data[start:at]):
            return
        if at < size:
            self._rest = data[at:]

    def _take(self, stream_id: int, length: int) -> bool:
        # h2's _receive_data_frame and H2Stream.receive_data, for a DATA
        # frame without flags (no padding: all of it is payload, and no
        # END_STREAM) on an open stream, on an open connection: both state
        # machines stay as they are (OPEN and RECV_DATA: OPEN; SERVER_OPEN
        # and RECV_DATA: SERVER_OPEN), and both windows shrink. A frame
        # over a window is h2's to refuse.
        conn = self._conn
        stream = conn.streams.get(stream_id)
        if (
            stream is None
            or stream.state_machine.state != _OPEN
            or not stream.state_machine.headers_received
            or stream._expected_content_length is not None
            or conn.state_machine.state != _SERVER_OPEN
        ):
            return False
        window = stream._inbound_window_manager
        if (
            length > window.current_window_size
            or length > self._window.current_window_size
        ):
            return False
        self._window.current_window_size -= length
        window.current_window_size -= length
        stream._actual_content_length += length
        return True


def send(
    conn: h2.connection.H2Connection, stream_id: int, data: bytes
) -> tuple[int, int] | None:
    """
    Queue C{data} in h2's output in DATA frames as far as the windows allow,
    as h2's C{send_data} would, a frame of at most C{max_outbound_frame_size}
    at a time: the bytes taken and the window left, or L{None} when the
    stream or the connection is not open (h2's own path then raises as it
    should).
    """
    stream = conn.streams.get(stream_id)
    if (
        stream is None
        or conn.state_machine.state != _SERVER_OPEN
        or stream.state_machine.state not in (_OPEN, _HALF_CLOSED_REMOTE)
    ):
        return None
    # H2Connection.send_data: both windows shrink by what is sent, the
    # state machines stay (SEND_DATA: OPEN, HALF_CLOSED_REMOTE and
    # SERVER_OPEN are kept), the frames go to _data_to_send.
    window = min(conn.outbound_flow_control_window, stream.outbound_flow_control_window)
    frame = conn.max_outbound_frame_size
    out: bytearray = conn._data_to_send
    size = len(data)
    if size <= window and size <= frame:
        out += data_header(size, stream_id)
        out += data
        sent = size
    else:
        view = memoryview(data)
        sent = 0
        while sent < size and window - sent > 0:
            chunk = min(window - sent, frame, size - sent)
            out += data_header(chunk, stream_id)
            out += view[sent : sent + chunk]
            sent += chunk
    conn.outbound_flow_control_window -= sent
    stream.outbound_flow_control_window -= sent
    return sent, window - sent


def acknowledge(conn: h2.connection.H2Connection, stream_id: int, size: int) -> None:
    """
    h2's C{acknowledge_received_data}: C{size} bytes of C{stream_id} have
    been read, and a WINDOW_UPDATE is queued where h2's window managers say
    it is due (half a window read, most often).
    """
    out: bytearray = conn._data_to_send
    increment = conn._inbound_flow_control_window_manager.process_bytes(size)
    if increment:
        out += window_update(0, increment)
    stream = conn.streams.get(stream_id)
    if stream is not None and stream.open:
        increment = stream._inbound_window_manager.process_bytes(size)
        if increment:
            out += window_update(stream_id, increment)
