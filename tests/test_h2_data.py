"""
The WebSocket streams' DATA frames read and written beside h2
(L{wsecho._compat.h2data}) against h2's own path: the same client bytes,
in the same reads, get the same bytes back from a connection with the fast
path as from one without it. And the frame layout it reads
(in the same module) against hyperframe's.
"""

from __future__ import annotations

import struct
from typing import Any

import h2.errors
import h2.exceptions
import h2.settings
import h2.stream
import h2.windows
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    WindowUpdateFrame,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from support.h2wire import MemoryH2
from support.markers import needs_http2
from wsecho._compat import h2 as compat_h2
from wsecho._compat import h2data
from wsecho._compat import h2data as wire
from wsecho.http.site import make_site
from wsecho.settings import EchoSettings

pytestmark = needs_http2

S = h2.settings.SettingCodes


# --- the frame layout against hyperframe ----------------------------------


@given(
    kind=st.sampled_from([0x0, 0x1, 0x3, 0x8, 0x9]),
    stream_id=st.integers(1, 2**31 - 1),
    body=st.binary(max_size=300),
    flags=st.integers(0, 255),
    reserved=st.booleans(),
)
def test_header_reads_what_hyperframe_reads(
    kind: int, stream_id: int, body: bytes, flags: int, reserved: bool
) -> None:
    """
    A frame header gives the length, type, flags and stream hyperframe
    reads from it, the reserved bit ignored.
    """
    raw = struct.pack(">L", len(body))[1:] + bytes([kind, flags])
    raw += struct.pack(">L", stream_id | (reserved << 31)) + body
    frame, length = Frame.parse_frame_header(memoryview(raw[:9]))
    assert wire.header(b"xx" + raw, 2) == (length, frame.type, flags, frame.stream_id)


@given(stream_id=st.integers(1, 2**31 - 1), body=st.binary(max_size=70_000))
def test_data_header_is_hyperframes(stream_id: int, body: bytes) -> None:
    """
    A DATA frame made here is the one hyperframe serialises.
    """
    frame = DataFrame(stream_id)
    frame.data = body
    assert wire.data_header(len(body), stream_id) + body == frame.serialize()


@given(stream_id=st.integers(0, 2**31 - 1), increment=st.integers(1, 2**31 - 1))
def test_window_update_is_hyperframes(stream_id: int, increment: int) -> None:
    """
    A WINDOW_UPDATE made here is the one hyperframe serialises.
    """
    frame = WindowUpdateFrame(stream_id)
    frame.window_increment = increment
    assert wire.window_update(stream_id, increment) == frame.serialize()


def test_header_blocks_are_followed() -> None:
    """
    HEADERS without END_HEADERS opens a block, CONTINUATION with it ends
    it, other frames say nothing of it.
    """
    assert wire.opens_headers(HeadersFrame.type, 0) is True
    assert wire.opens_headers(HeadersFrame.type, 0x4 | 0x1) is False
    assert wire.opens_headers(ContinuationFrame.type, 0) is True
    assert wire.opens_headers(ContinuationFrame.type, 0x4) is False
    assert wire.opens_headers(PingFrame.type, 0x4) is None
    assert wire.opens_headers(DataFrame.type, 0) is None


# --- the connection, with and without the fast path -----------------------


class Splitting(MemoryH2):
    """
    A client whose bytes the server reads in pieces of the sizes C{cuts}
    (over and over), and whose server may be told not to take the fast path.
    """

    def __init__(self, site: Any, cuts: list[int], fast: bool) -> None:
        self.cuts = cuts or [1 << 30]
        self.turn = 0
        fast_before = compat_h2.H2Connection.fast_data
        compat_h2.H2Connection.fast_data = fast
        try:
            super().__init__(site, {S.MAX_FRAME_SIZE: 16384})
        finally:
            compat_h2.H2Connection.fast_data = fast_before
        assert (self.server._frames is not None) is fast

    def deliver(self, data: bytes) -> None:
        while data and self.transport.protocol is not None:
            cut = self.cuts[self.turn % len(self.cuts)]
            self.turn += 1
            self.transport.protocol.dataReceived(data[:cut])
            data = data[cut:]


def _pair(cuts: list[int]) -> tuple[Splitting, Splitting]:
    # One site each: their registries, budgets and metrics are apart.
    return (
        Splitting(make_site(EchoSettings()), cuts, fast=False),
        Splitting(make_site(EchoSettings()), cuts, fast=True),
    )


def _ws_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    # A masked client frame with a fixed key: both clients send the same.
    key = b"\x11\x22\x33\x44"
    size = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return head + key + masked


def _raw(kind: int, flags: int, stream_id: int, body: bytes) -> bytes:
    return (
        struct.pack(">L", len(body))[1:]
        + bytes([kind, flags])
        + (struct.pack(">L", stream_id) + body)
    )


def _apply(client: Splitting, streams: list[int], action: tuple[Any, ...]) -> None:
    # One step of a client, the same on both connections.
    conn = client.conn
    what, *args = action
    if client.closed or client.goaway is not None:
        return
    stream = streams[args[0] % len(streams)] if args and streams else None
    try:
        if what == "open":
            streams.append(client.websocket())
            return
        if what == "message" and stream is not None:
            opcode, payload, frame_size, pad = args[1:]
            data = _ws_frame(opcode, payload)
            for _ in range(1000):  # a frame a turn, bounded
                if not data or client.closed:
                    return
                window = min(
                    conn.local_flow_control_window(stream),
                    conn.max_outbound_frame_size,
                    frame_size,
                )
                if window <= 0:
                    client.pump()  # the server reads, and opens the window
                    if conn.local_flow_control_window(stream) <= 0:
                        return
                    continue
                if pad is not None and window <= pad + 1:
                    pad = None
                room = window - (pad + 1 if pad is not None else 0)
                chunk, data = data[:room], data[room:]
                conn.send_data(stream, chunk, pad_length=pad)
                client.flush()
            return
        if what == "close" and stream is not None:
            conn.send_data(stream, _ws_frame(8, (4000).to_bytes(2, "big") + b"bye"))
        elif what == "end" and stream is not None:
            conn.end_stream(stream)
        elif what == "reset" and stream is not None:
            conn.reset_stream(stream, h2.errors.ErrorCodes.CANCEL)
        elif what == "ping":
            conn.ping(b"12345678")
        elif what == "window":
            conn.increment_flow_control_window(args[1], stream if args[2] else None)
        elif what == "settings":
            conn.update_settings({S.INITIAL_WINDOW_SIZE: args[0]})
        elif what == "get":
            client.get("/healthz")
            return
        elif what == "raw":
            client.deliver(_raw(args[1], args[2], stream or 1, args[3]))
            client.pump()
            return
        client.flush()
    except KeyError:
        return  # the client's h2 refuses it (a stream it has closed)
    except h2.exceptions.ProtocolError:
        # The client's h2 refuses what it was to send, or what it read: an
        # empty DATA frame with END_STREAM on a window made negative by its
        # SETTINGS (legal, RFC 9113 6.9.2; h2 raises). Both stop here.
        client.closed = True


_actions = st.one_of(
    st.tuples(st.just("open")),
    st.tuples(
        st.just("message"),
        st.integers(0, 3),
        st.sampled_from([1, 2]),
        st.one_of(
            st.binary(max_size=200),
            st.integers(0, 70_000).map(lambda n: bytes(range(256)) * (n // 256)),
        ),
        st.integers(1, 20_000),
        st.one_of(st.none(), st.integers(0, 20)),
    ),
    st.tuples(st.just("close"), st.integers(0, 3)),
    st.tuples(st.just("end"), st.integers(0, 3)),
    st.tuples(st.just("reset"), st.integers(0, 3)),
    st.tuples(st.just("ping")),
    st.tuples(
        st.just("window"), st.integers(0, 3), st.integers(1, 100_000), st.booleans()
    ),
    st.tuples(st.just("settings"), st.integers(0, 200_000)),
    st.tuples(st.just("get")),
    st.tuples(
        st.just("raw"),
        st.integers(0, 3),
        st.sampled_from([0x0, 0x1, 0x8, 0x9]),
        st.sampled_from([0x0, 0x1, 0x4, 0x8]),
        st.binary(max_size=40),
    ),
)


@settings(max_examples=300, deadline=None)
# A message over half the stream's window (h2 acknowledges it on the
# stream and the connection), and DATA inside a header block (refused).
@example(cuts=[7000], actions=[("message", 0, 2, bytes(70_000), 16384, None)])
@example(
    cuts=[5], actions=[("raw", 0, 0x1, 0x0, b"\x82"), ("message", 0, 1, b"x", 9, None)]
)
@given(
    cuts=st.lists(st.integers(1, 20_000), max_size=5),
    actions=st.lists(_actions, max_size=12),
)
def test_the_same_bytes_come_back_with_and_without_the_fast_path(
    cuts: list[int], actions: list[tuple[Any, ...]]
) -> None:
    """
    Whatever a client does (messages in DATA frames of any size, padded or
    not, pings, windows, settings, closes, resets, pages, frames of any
    kind) in reads of any size, a connection taking the WebSocket streams'
    DATA frames beside h2 writes exactly what one leaving them all to h2
    writes, step by step.
    """
    reference, fast = _pair(cuts)
    streams: tuple[list[int], list[int]] = ([], [])
    for client, opened in zip((reference, fast), streams, strict=True):
        opened.append(client.websocket())
    for action in actions:
        for client, opened in zip((reference, fast), streams, strict=True):
            _apply(client, opened, action)
        assert streams[0] == streams[1]
        assert bytes(fast.received) == bytes(reference.received), action
    ref, new = reference.server.conn, fast.server.conn
    assert new.outbound_flow_control_window == ref.outbound_flow_control_window
    assert (
        new._inbound_flow_control_window_manager.current_window_size
        == ref._inbound_flow_control_window_manager.current_window_size
    )


def test_a_preface_read_a_byte_at_a_time_is_http2() -> None:
    """
    A client whose connection preface arrives a byte a read (fewer than the
    14 bytes that tell it from an HTTP/1.1 request) is served over HTTP/2.
    """
    client = Splitting(make_site(EchoSettings()), [1], fast=True)
    stream = client.websocket()
    client.send(stream, _ws_frame(1, b"Hello, world!"))
    assert client.messages(stream, 1) == [(1, b"Hello, world!")]


def test_echoes_are_taken_by_the_fast_path() -> None:
    """
    A small echo over h2 goes through the fast path (h2's receive_data and
    send_data are not called for it), so the comparison above compares it.
    """
    client = Splitting(make_site(EchoSettings()), [], fast=True)
    stream = client.websocket()
    calls = []
    conn = client.server.conn
    for name in ("receive_data", "send_data", "acknowledge_received_data"):
        original = getattr(conn, name)

        def counted(*args: Any, _name: str = name, _f: Any = original) -> Any:
            calls.append(_name)
            return _f(*args)

        setattr(conn, name, counted)
    client.send(stream, _ws_frame(1, b"Hello, world!"))
    assert client.messages(stream, 1) == [(1, b"Hello, world!")]
    assert calls == []


def test_a_frame_over_the_size_read_is_refused_at_its_header() -> None:
    """
    A frame whose header announces more than SETTINGS_MAX_FRAME_SIZE gets
    a GOAWAY FRAME_SIZE_ERROR at once: its 16 MiB are not read first (h2
    alone waits for the whole frame before it checks the length).
    """
    client = Splitting(make_site(EchoSettings()), [], fast=True)
    stream = client.websocket()
    header = struct.pack(">L", (1 << 24) - 1)[1:] + bytes([0, 0])
    client.deliver(header + struct.pack(">L", stream) + b"x" * 1000)
    client.pump()
    assert client.goaway is not None
    assert client.goaway.error_code == h2.errors.ErrorCodes.FRAME_SIZE_ERROR


def test_the_fast_path_is_off_where_h2_has_changed(monkeypatch) -> None:
    """
    Where h2's private state is not what the fast path knows, it says so
    (for the start-up warning), and the path is off.
    """
    assert h2data.MISSING == []
    assert "h2 data frames" not in compat_h2.MISSING
    monkeypatch.delattr(h2.windows.WindowManager, "process_bytes")
    assert h2data._missing() == ["h2 data frames"]
