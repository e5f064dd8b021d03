"""
Issue 20, findings 3 to 5, against a real C{twistd -n wsecho} on loopback
on a small --memory-budget (so that the attacks are small and quick): the
budget's eviction cannot be aimed at honest clients, every connection's
fixed cost counts and goes back to the system, and an unfinished message
that stops progressing is cut. Each fails without its protection.
"""

import os
import threading
import time
import zlib

import pytest
from websockets.sync.client import connect

from support import DEADLINE, poll_until
from support.wire import RawClient, frame

pytestmark = pytest.mark.system

MiB = 1024 * 1024
BUDGET = 32 * MiB
DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate"


def _compressed_fragment(size: int) -> bytes:
    # The first fragment of a compressed message of size zeros: 1 KB.
    deflate = zlib.compressobj(wbits=-15)
    data = deflate.compress(bytes(size)) + deflate.flush(zlib.Z_SYNC_FLUSH)
    return frame(2, data, fin=False, rsv=4)


def _echoed(port: int, size: int) -> None:
    with connect(
        f"ws://127.0.0.1:{port}/socket",
        open_timeout=DEADLINE,
        compression=None,
        max_size=None,
    ) as ws:
        message = os.urandom(size)
        ws.send(message)
        assert ws.recv(timeout=DEADLINE) == message


@pytest.mark.parametrize(
    ("size", "inflated"), [(1 * MiB, 256 * 1024), (16 * MiB, 1 * MiB)]
)
def test_partial_compressed_messages_cannot_aim_eviction(run, size, inflated):
    """
    Connections each holding the first compressed fragment of a message
    (smaller than the honest one once inflated, from 1 KB or less on the
    wire) fill the budget; an honest client then sending a message at full
    speed is echoed three times (the old policy closed it, the largest
    holder, with 1013), and attackers are closed instead.
    """
    daemon = run("--memory-budget", str(BUDGET))
    attack = _compressed_fragment(inflated)
    attackers = []
    try:
        for _ in range(BUDGET // inflated + 8):
            client = RawClient(daemon.port, DEFLATE)
            attackers.append(client)
            if client.status == 101:  # 503 once the budget is full
                client.send(attack)
        poll_until(lambda: daemon_used(daemon.port) > BUDGET - 2 * MiB)
        # They stall; the honest client sends as fast as loopback allows.
        time.sleep(0.5)
        for _ in range(3):
            _echoed(daemon.port, size)
    finally:
        for client in attackers:
            client.close()


def daemon_used(port: int) -> float:
    from urllib.request import urlopen

    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("wsecho_memory_budget_used_bytes "):
                return float(line.split()[1])
    raise AssertionError("no wsecho_memory_budget_used_bytes")


def test_trickled_fragments_are_cut(run) -> None:
    """
    A client that begins a fragmented message and then sends a 1-byte
    continuation now and then is closed with 1008 within the window, as is
    one that sends the start of a frame and stops; a client sending a
    fragmented message slowly but steadily, above the minimum rate, is not.
    """
    daemon = run("--message-min-rate", "100", "--message-window", "1")
    trickler = RawClient(daemon.port)
    stuck = RawClient(daemon.port)
    steady = RawClient(daemon.port)
    codes: dict[str, int | None] = {}

    def watch(name: str, client: RawClient) -> None:
        codes[name] = client.close_code()

    threads = [
        threading.Thread(target=watch, args=(name, client))
        for name, client in (("trickler", trickler), ("stuck", stuck))
    ]
    try:
        trickler.send(frame(2, b"x", fin=False))
        stuck.send(frame(2, length=1000)[:6] + b"x" * 10)
        steady.send(frame(2, b"y", fin=False))
        for thread in threads:
            thread.start()
        end = time.monotonic() + 4
        sent = 1
        while time.monotonic() < end:
            # 250 bytes/s from the steady one; a byte a 0.5 s from the other.
            steady.send(frame(0, b"y" * 125, fin=False))
            sent += 125
            if "trickler" not in codes:
                try:
                    trickler.send(frame(0, b"x", fin=False))
                except OSError:
                    pass
            time.sleep(0.5)
        steady.send(frame(0, b"y", fin=True))
        sent += 1
        received = steady.read_frame()
        assert received == (2, b"y" * sent), received and received[0]
        for thread in threads:
            thread.join(DEADLINE)
        assert codes == {"trickler": 1008, "stuck": 1008}, codes
    finally:
        for client in (trickler, stuck, steady):
            client.close()
