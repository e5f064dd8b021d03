"""
What a closed connection leaves behind: nothing. Closed protocols used to
live on in reference cycles until a rare full garbage collection, with
their buffers and zlib objects.
"""

import gc
import os

import pytest
from twisted.internet.threads import deferToThread
from twisted.logger import globalLogBeginner
from twisted.trial.unittest import TestCase
from websockets.sync.client import connect

from support import DEADLINE, poll
from support.site import serve
from support.wire import RawClient, frame
from wsecho.ws.protocol import EchoServerProtocol


@pytest.fixture(autouse=True, scope="module")
def logging_begun():
    """
    Begin logging, as twistd does: until then Twisted keeps the first
    events it is given, and every object they name.
    """
    globalLogBeginner.beginLoggingTo(
        [lambda event: None], discardBuffer=True, redirectStandardIO=False
    )


def _protocols() -> list[EchoServerProtocol]:
    # type(), not isinstance(): a dead weak proxy raises on the latter.
    return [o for o in gc.get_objects() if issubclass(type(o), EchoServerProtocol)]


class ReleaseTests(TestCase):
    def setUp(self) -> None:
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)

    async def test_closed_protocols_are_freed_without_the_collector(self) -> None:
        """
        With the garbage collector's automatic runs off, clients that
        closed cleanly (with and without deflate), dropped in the middle of
        a message, or were failed by the server leave no protocol alive,
        and nothing counted against the memory budget.
        """
        port, tracked = serve(self)
        before = len(_protocols())

        def clients() -> None:
            url = f"ws://127.0.0.1:{port}/socket"
            for compression in ("deflate", None):
                for _ in range(5):
                    with connect(
                        url, compression=compression, open_timeout=DEADLINE
                    ) as ws:
                        ws.send(os.urandom(100_000))
                        ws.recv(timeout=DEADLINE)
            for _ in range(5):
                with RawClient(port) as raw:
                    # Half of a fragmented message, then half of a frame.
                    raw.send(frame(2, b"x" * 1000, fin=False))
                    raw.send(frame(0, length=1_000_000)[:14] + b"y" * 50_000)
            for _ in range(5):
                with RawClient(port) as raw:
                    raw.send(frame(1, b"\xff\xfe"))  # invalid UTF-8
                    assert raw.close_code() == 1007

        await deferToThread(clients)
        await poll(lambda: not tracked.protocols)
        left = _protocols()
        self.assertEqual(len(left) - before, 0, [p.peer for p in left])
        self.assertEqual(tracked.wrappedFactory.context.budget.used, 0)


class DrippedFrameTests(TestCase):
    async def test_a_dripped_frame_is_scanned_once(self) -> None:
        """
        A 4 MiB binary frame sent in 1 KiB writes is echoed whole, and the
        fast path looks at its bytes about once, not once per read (which
        made the CPU time quadratic in the frame's size).
        """
        import wsecho.ws.fastpath

        scanned = [0]
        scan = wsecho.ws.fastpath.scan

        def counting(data, *args):
            scanned[0] += len(data)
            return scan(data, *args)

        self.patch(wsecho.ws.fastpath, "scan", counting)
        port, _ = serve(self)
        payload = os.urandom(4 * 1024 * 1024)
        data = frame(2, payload)

        def drip() -> None:
            import socket

            with RawClient(port) as client:
                client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for at in range(0, len(data), 1024):
                    client.send(data[at : at + 1024])
                assert client.read_frame() == (2, payload)

        await deferToThread(drip)
        self.assertLess(scanned[0], 2 * len(data))
