"""
Attacks on the CPU of a real C{twistd -n wsecho} process over loopback:
compressed messages that inflate a thousandfold, and floods of pings and
of tiny continuation frames inside a fragmented message. Each test counts
what a control client gets while the attack runs (the echo's turns keep it
served: see wsecho.ws.scheduler), not how long anything takes.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable

import pytest

from support.wire import RawClient, frame

# Each test starts real processes: deselected by -m "not system".
pytestmark = pytest.mark.system

MiB = 1024 * 1024
DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate"
# No attack here may run longer than this.
ATTACK_DEADLINE = 120.0


def bomb(size: int, fragmented: bool = False) -> bytes:
    """
    A compressed binary message of C{size} zeros, as client frames (some
    16 KB on the wire for 16 MiB): one, or two (Autobahn's path).
    """
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = deflate.compress(bytes(size)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    body = body[:-4]
    if fragmented:
        return frame(2, body[:100], rsv=4, fin=False) + frame(0, body[100:])
    return frame(2, body, rsv=4)


def read_data(client: RawClient) -> tuple[int, bytes] | None:
    """
    The next data or close frame from the server; pings are answered on
    the way, as an honest client does.
    """
    while (received := client.read_frame()) is not None:
        if received[0] == 9:
            client.send(frame(10, received[1]))
            continue
        return received
    return None


def served_during(port: int, attack: Callable[[], None]) -> int:
    """
    How many echoes a control client gets, one message at a time, while
    C{attack} runs (it returns when the server has answered it all).
    """
    done = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            attack()
        except BaseException as e:  # reported by the test's thread
            failed.append(e)
        finally:
            done.set()

    echoes = 0
    with RawClient(port) as control:
        assert control.status == 101
        attacker = threading.Thread(target=run, daemon=True)
        attacker.start()
        ends = time.monotonic() + ATTACK_DEADLINE
        while not done.is_set():
            assert time.monotonic() < ends, "the attack did not end"
            control.send(frame(1, b"still here"))
            assert read_data(control) == (1, b"still here")
            echoes += 1
        attacker.join(ATTACK_DEADLINE)
    if failed:
        raise failed[0]
    return echoes


@pytest.mark.parametrize("fragmented", [False, True], ids=["whole", "fragmented"])
def test_compressed_bombs_take_turns(run, fragmented: bool) -> None:
    """
    Three connections each send 24 compressed messages of 16 MiB of zeros
    (16 KB each on the wire, all at once; whole frames for the fast path, or
    two fragments for Autobahn's): every one is echoed, and a control client
    that answers pings (every second, 2 s to answer) stays connected and gets
    a hundred echoes or more before they are, where handled a read at a time
    it got one between reads.
    """
    daemon = run("--ping-interval", "1", "--ping-timeout", "2")
    message = bomb(16 * MiB, fragmented)
    count = 24

    def attacker() -> None:
        with RawClient(daemon.port, DEFLATE) as client:
            assert b"permessage-deflate" in client.response
            client.send(message * count)
            for _ in range(count):
                received = read_data(client)
                assert received is not None and received[0] == 2, received

    def attack() -> None:
        threads = [threading.Thread(target=attacker) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(ATTACK_DEADLINE)

    echoes = served_during(daemon.port, attack)
    print(f"control echoes during 72 bombs of 16 MiB: {echoes}")
    assert echoes >= 100, echoes
    assert "wsecho_throttled_seconds_total" in daemon_metrics(daemon.port)


def daemon_metrics(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as answer:
        return str(answer.read().decode())


def _flood(port: int, flood: bytes, end: bytes) -> tuple[Callable[[], None], list[int]]:
    # An attacker that sends a fragment, the flood and the last fragment,
    # and reads up to the echo of the message: the opcodes it got.
    got: list[int] = []

    def attack() -> None:
        with RawClient(port) as client:
            client.send(frame(1, b"a", fin=False) + flood + end)
            while (received := read_data(client)) is not None:
                got.append(received[0])
                if received[0] == 1:
                    return

    return attack, got


def test_pings_inside_a_message_take_turns(run) -> None:
    """
    100,000 pings inside a fragmented message get a pong for the latest of
    each turn (not one each), the message is echoed, and a control client
    gets echoes meanwhile.
    """
    daemon = run()
    attack, got = _flood(daemon.port, frame(9, b"") * 100_000, frame(0, b"b", fin=True))
    echoes = served_during(daemon.port, attack)
    pongs = got.count(10)
    print(f"100,000 pings in a message: {pongs} pongs, control echoes {echoes}")
    assert got[-1] == 1
    assert 0 < pongs < 20_000, pongs
    assert echoes >= 20, echoes


def test_tiny_continuations_take_turns(run) -> None:
    """
    A message in 100,000 continuation frames of one byte is echoed, and a
    control client gets echoes while it is read.
    """
    daemon = run("--max-message-size", str(MiB))
    attack, got = _flood(
        daemon.port, frame(0, b"x", fin=False) * 100_000, frame(0, b"", fin=True)
    )
    echoes = served_during(daemon.port, attack)
    print(f"100,000 1-byte continuations: control echoes {echoes}")
    assert got == [1]
    assert echoes >= 20, echoes
