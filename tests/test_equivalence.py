"""
The fast path against Autobahn's own path, in memory: random streams of
client frames (whole and fragmented messages, pings and pongs inside and
between them, frames over the limit, invalid UTF-8, permessage-deflate with
and without context takeover), cut into reads anywhere, get byte-identical
answers with the fast path on and off.
"""

from __future__ import annotations

import os
import zlib
from typing import Any

import pytest
from autobahn import exception as autobahn_exception
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from support.site import connect_in_memory
from support.wire import frame, upgrade
from wsecho.http.site import make_site
from wsecho.settings import EchoSettings
from wsecho.ws.protocol import EchoServerProtocol
from wsecho.ws.scheduler import Scheduler

TEXT, BINARY, CONTINUATION, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10
LIMIT = 1000

OFFERS = {
    # Context takeover both ways (browsers, websockets).
    "takeover": "permessage-deflate; client_max_window_bits",
    # No context takeover (gorilla/websocket's offer).
    "no-takeover": (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    ),
}


class SlowPath(EchoServerProtocol):
    """
    The echo with its fast path off: every frame goes through Autobahn.
    """

    fast_path = False


class Compressor:
    """
    A client's permessage-deflate: one context for the stream (takeover), or
    a fresh one for every message.
    """

    def __init__(self, takeover: bool) -> None:
        self._takeover = takeover
        self._context = zlib.compressobj(wbits=-15)

    def message(self, payload: bytes) -> bytes:
        if not self._takeover:
            self._context = zlib.compressobj(wbits=-15)
        data = self._context.compress(payload) + self._context.flush(zlib.Z_SYNC_FLUSH)
        return data[:-4]


@st.composite
def streams(draw: Any, deflate: str | None) -> tuple[bytes, list[int]]:
    """
    A client's frames after its handshake, and where to cut them into reads.
    """
    compressor = Compressor(deflate == "takeover") if deflate else None
    text = st.text(max_size=40).map(str.encode)
    payloads = st.one_of(
        text,
        st.binary(max_size=300),
        st.just(b"\xff\xfe"),  # invalid UTF-8 in a text frame
        st.integers(LIMIT - 2, LIMIT + 2).map(lambda n: b"x" * n),
    )
    out = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["whole", "whole", "fragmented", "ping", "pong"]))
        mask = draw(st.binary(min_size=4, max_size=4))
        if kind == "ping":
            out.append(frame(PING, draw(st.binary(max_size=20)), mask=mask))
        elif kind == "pong":
            out.append(frame(PONG, draw(st.binary(max_size=20)), mask=mask))
        elif kind == "whole":
            opcode = draw(st.sampled_from([TEXT, BINARY]))
            payload = draw(payloads)
            rsv = 0
            if compressor is not None and draw(st.booleans()):
                payload, rsv = compressor.message(payload), 4
            out.append(frame(opcode, payload, rsv=rsv, mask=mask))
        else:
            opcode = draw(st.sampled_from([TEXT, BINARY]))
            payload = draw(payloads)
            rsv = 0
            if compressor is not None and draw(st.booleans()):
                payload, rsv = compressor.message(payload), 4
            cuts = sorted(draw(st.lists(st.integers(0, len(payload)), max_size=3)))
            pieces = [
                payload[a:b]
                for a, b in zip([0, *cuts], [*cuts, len(payload)], strict=True)
            ]
            for number, piece in enumerate(pieces):
                out.append(
                    frame(
                        opcode if number == 0 else CONTINUATION,
                        piece,
                        fin=number == len(pieces) - 1,
                        rsv=rsv if number == 0 else 0,
                        mask=mask,
                    )
                )
                if draw(st.integers(0, 4)) == 0:
                    out.append(frame(PING, b"in a message", mask=mask))
    if draw(st.booleans()):
        out.append(frame(CLOSE, (4000).to_bytes(2, "big") + b"bye", mask=os.urandom(4)))
    data = b"".join(out)
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=6)))
    return data, cuts


def answers(deflate: str | None, fast: bool, data: bytes, cuts: list[int]) -> bytes:
    """
    Everything the server writes for the upgrade and C{data}, read in the
    pieces C{cuts} make, with the fast path on or off.
    """
    site = make_site(
        EchoSettings(
            max_message_size=LIMIT,
            max_frame_size=LIMIT,
            compression=deflate is not None,
            ping_interval=0,
            close_handshake_timeout=0,
            open_handshake_timeout=0,
            memory_budget=0,
        )
    )
    factory = site.resource.children[b"socket"].factory
    if not fast:
        factory.protocol = SlowPath
    # Turns (see wsecho.ws.scheduler) on a clock of the test's own.
    clock = Clock()
    scheduler = factory.context.scheduler = Scheduler(clock, lambda waited: None)
    try:
        _, transport = connect_in_memory(site)
        extra = [f"Sec-WebSocket-Extensions: {OFFERS[deflate]}"] if deflate else []
        transport.protocol.dataReceived(upgrade("127.0.0.1:8181", *extra))
        protocol = transport.protocol
        assert isinstance(protocol, EchoServerProtocol)
        assert (protocol.fast is not None) is fast
        for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
            if transport.disconnecting:
                break
            protocol.dataReceived(data[a:b])
            while len(scheduler):
                clock.advance(0)
        written = bytes(transport.value())
        # Lost, the connection cancels every timer it started.
        protocol.connectionLost(Failure(ConnectionDone()))
        return written
    finally:
        factory.context.stop()


# Autobahn before 26.11 has no PayloadCorruptError: after a compressed
# message it failed, its parser can let zlib.error out of dataReceived (the
# daemon then drops the connection), and there is no answer to compare.
OLD_AUTOBAHN = not hasattr(autobahn_exception, "PayloadCorruptError")


def _check(deflate: str | None, stream: tuple[bytes, list[int]]) -> None:
    data, cuts = stream
    try:
        slow = answers(deflate, False, data, cuts)
    except zlib.error:
        if not OLD_AUTOBAHN:
            raise
        assume(False)
    assert slow.startswith(b"HTTP/1.1 101 ")
    assert answers(deflate, True, data, cuts) == slow


EXAMPLES = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
    ],
)


@EXAMPLES
@given(streams(None))
def test_plain_streams_answered_alike(stream: tuple[bytes, list[int]]) -> None:
    """
    Without compression, the fast path answers any stream, cut anywhere,
    byte for byte as Autobahn alone does.
    """
    _check(None, stream)


@EXAMPLES
@given(streams("takeover"))
def test_deflate_with_takeover_answered_alike(stream: tuple[bytes, list[int]]) -> None:
    """
    With permessage-deflate and context takeover (the fast path shares
    Autobahn's compression context), the answers are byte-identical.
    """
    _check("takeover", stream)


@EXAMPLES
@given(streams("no-takeover"))
def test_deflate_without_takeover_answered_alike(
    stream: tuple[bytes, list[int]],
) -> None:
    """
    With permessage-deflate and no context takeover (the fast path's own
    zlib objects), the answers are byte-identical.
    """
    _check("no-takeover", stream)


@pytest.fixture
def small_turns(monkeypatch: Any) -> None:
    """
    Turns of one frame, and compressed messages inflated (and echoes of
    fragmented ones compressed) 64 bytes at a time.
    """
    from wsecho.wire import deflate
    from wsecho.ws import protocol, turns

    monkeypatch.setattr(turns, "TURN_WORK", 1)
    monkeypatch.setattr(protocol, "INFLATE_STEP", 64)
    monkeypatch.setattr(deflate, "INFLATE_STEP", 64)


@EXAMPLES
@given(
    st.sampled_from([None, "takeover", "no-takeover"]).flatmap(
        lambda deflate: st.tuples(st.just(deflate), streams(deflate))
    )
)
def test_answered_alike_across_turns(
    small_turns: None, case: tuple[str | None, tuple[bytes, list[int]]]
) -> None:
    """
    With turns of one frame each and compressed messages echoed in steps of
    64 bytes, the answers are still byte-identical, and a read is spread over
    several turns.
    """
    deflate, stream = case
    _check(deflate, stream)


def test_turns_are_taken(small_turns: None) -> None:
    """
    With small turns, two messages of one read are echoed in two turns (the
    second once the scheduler gives the connection its next one), and a
    large compressed message in several steps.
    """
    data = frame(TEXT, b"one", mask=b"abcd") + frame(TEXT, b"two", mask=b"efgh")
    site = make_site(EchoSettings(ping_interval=0, memory_budget=0))
    factory = site.resource.children[b"socket"].factory
    clock = Clock()
    scheduler = factory.context.scheduler = Scheduler(clock, lambda waited: None)
    try:
        _, transport = connect_in_memory(site)
        transport.protocol.dataReceived(upgrade("127.0.0.1:8181"))
        protocol = transport.protocol
        transport.clear()
        protocol.dataReceived(data)
        assert transport.value() == b"\x81\x03one"
        assert len(scheduler) == 1
        clock.advance(0)
        assert transport.value() == b"\x81\x03one\x81\x03two"
        assert len(scheduler) == 0
        protocol.connectionLost(Failure(ConnectionDone()))
    finally:
        factory.context.stop()


def test_a_message_echoed_in_steps_is_counted(small_turns: None) -> None:
    """
    A compressed message echoed in steps over several turns is counted once
    received and once sent, as any other.
    """
    site = make_site(EchoSettings(ping_interval=0, memory_budget=0, compression=True))
    factory = site.resource.children[b"socket"].factory
    clock = Clock()
    turns: list[float] = []
    scheduler = factory.context.scheduler = Scheduler(clock, turns.append)
    try:
        _, transport = connect_in_memory(site)
        extra = f"Sec-WebSocket-Extensions: {OFFERS['takeover']}"
        transport.protocol.dataReceived(upgrade("127.0.0.1:8181", extra))
        protocol = transport.protocol
        payload = Compressor(True).message(b"z" * 1000)
        protocol.dataReceived(frame(BINARY, payload, rsv=4, mask=b"abcd"))
        while len(scheduler):
            clock.advance(0)
        assert len(turns) > 2
        stats = protocol.trafficStats
        assert (stats.incomingWebSocketMessages, stats.outgoingWebSocketMessages) == (
            1,
            1,
        )
        protocol.connectionLost(Failure(ConnectionDone()))
    finally:
        factory.context.stop()


def test_the_check_sees_a_broken_fast_path(monkeypatch: Any) -> None:
    """
    The comparison fails when the fast path mishandles a frame cut across
    reads (here: it forgets the start it waited for).
    """
    from wsecho.ws import fastpath

    data = frame(BINARY, b"y" * 300, mask=b"abcd") + frame(TEXT, b"hi", mask=b"efgh")
    cuts = [100]
    assert answers(None, True, data, cuts) == answers(None, False, data, cuts)

    def forgetful(self: Any, data: bytes) -> bytes | None:
        self._pending = None
        return data

    monkeypatch.setattr(fastpath.FastPath, "whole", forgetful)
    assert answers(None, True, data, cuts) != answers(None, False, data, cuts)
