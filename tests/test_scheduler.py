"""
Fair CPU's parts alone: the round robin of connections waiting for their
turn, and permessage-deflate messages inflated, checked and compressed in
steps.
"""

from __future__ import annotations

import zlib

import pytest
from autobahn.websocket.compress import PerMessageDeflate
from twisted.internet.task import Clock

from wsecho.wire import deflate
from wsecho.wire.deflate import DeflateCodec
from wsecho.wire.frames import utf8_failure
from wsecho.ws.scheduler import Scheduler


def test_waiting_connections_take_turns_in_order() -> None:
    """
    Connections waiting get their turns in the order they came: one that
    waits again goes behind the others, and the time each waited is
    reported.
    """
    clock = Clock()
    waited: list[float] = []
    scheduler = Scheduler(clock, waited.append)
    turns: list[str] = []

    def again() -> None:
        turns.append("a")
        if turns.count("a") < 2:
            scheduler.wait(again)

    scheduler.wait(again)
    scheduler.wait(lambda: turns.append("b"))
    assert turns == []
    clock.advance(0)
    assert turns == ["a", "b", "a"]
    assert len(scheduler) == 0 and len(waited) == 3
    assert all(w >= 0 for w in waited)


def test_a_failing_turn_spares_the_others() -> None:
    """
    A turn that raises is logged, and the turns after it still run.
    """
    clock = Clock()
    scheduler = Scheduler(clock, lambda waited: None)
    turns: list[str] = []
    scheduler.wait(lambda: 1 / 0)  # type: ignore[func-returns-value]
    scheduler.wait(lambda: turns.append("b"))
    clock.advance(0)
    assert turns == ["b"]
    assert len(scheduler) == 0
    scheduler.stop()


def _codec(takeover: bool, limit: int = 1 << 24) -> DeflateCodec:
    return DeflateCodec(
        PerMessageDeflate(True, not takeover, not takeover, 13, 15, 6, limit + 1),
        limit,
    )


def _client(payload: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


@pytest.mark.parametrize("takeover", [True, False])
def test_a_large_message_is_echoed_in_steps(takeover: bool) -> None:
    """
    A compressed message of 1 MiB is inflated, checked and compressed in
    bounded steps, and its echo is the one a single pass gives.
    """
    payload = "é".encode() * (512 * 1024)
    stepped = _codec(takeover)
    assert stepped.inflate(_client(payload), binary=False) is None
    assert stepped.busy and stepped.failure is None
    steps = 0
    echo = None
    while echo is None:
        echo, done = stepped.step(deflate.INFLATE_STEP)
        assert done <= 2 * deflate.INFLATE_STEP
        assert stepped.failure is None
        steps += 1
    assert steps >= len(payload) // deflate.INFLATE_STEP
    assert stepped.finished == (False, len(payload))
    whole = _codec(takeover).deflate(payload)
    assert echo == bytes((0xC1, 126)) + len(whole).to_bytes(2, "big") + whole


def test_invalid_utf8_found_across_steps() -> None:
    """
    Invalid UTF-8 deep in a large compressed text message fails it with
    1007, naming the byte where Autobahn's validator would.
    """
    payload = b"a" * 300_000 + "é".encode() + b"\xff" + b"b" * 300_000
    codec = _codec(True)
    assert codec.inflate(_client(payload), binary=False) is None
    while codec.failure is None:
        echo, _ = codec.step(deflate.INFLATE_STEP)
        assert echo is None
    assert codec.failure == (1007, utf8_failure(payload))
    assert not codec.busy


def test_the_limit_holds_across_steps() -> None:
    """
    A message that inflates past the limit fails with 1009 in the step
    that passes it.
    """
    codec = _codec(True, limit=300_000)
    assert codec.inflate(_client(bytes(400_000))) is None
    while codec.failure is None:
        codec.step(deflate.INFLATE_STEP)
    assert codec.failure == (1009, "message over 300000 bytes")
