"""
The echo's fast path for small whole frames (EchoServerProtocol.dataReceived)
against a real C{twistd -n wsecho} over loopback: what it echoes, in what
order, and that whatever it does not take still gets Autobahn's answer.
"""

import os
import socket
import threading

import pytest

from support import wait_until_stalled
from support.daemon import start_daemon
from support.wire import RawClient, frame

# Each test starts real processes: deselected by -m "not system".
pytestmark = pytest.mark.system

TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """
    One daemon for the module, with a 1000-byte message limit.
    """
    daemon = start_daemon(
        tmp_path_factory.mktemp("fastpath"),
        "--max-message-size",
        "1000",
    )
    port = daemon.port
    daemon.port = port
    yield daemon
    assert daemon.stop() == 0
    log = daemon.whole_log()
    assert "Traceback" not in log and "Unhandled" not in log, log


def masked(opcode: int, payload: bytes, **options) -> bytes:
    return frame(opcode, payload, mask=os.urandom(4), **options)


def test_many_frames_in_one_read(daemon) -> None:
    """
    Frames sent in one write come back in order, each with its type and
    payload: short and 16-bit lengths, empty ones, non-ASCII text, and a
    ping among them answered in its place.
    """
    messages = [
        (TEXT, b"Hello, world!"),
        (BINARY, os.urandom(200)),
        (TEXT, "h\u00e9llo \U0001f600".encode()),
        (PING, b"ping"),
        (BINARY, b""),
        (TEXT, b""),
        (TEXT, b"x" * 1000),  # at the limit
        (BINARY, os.urandom(125)),
        (BINARY, os.urandom(126)),
    ]
    with RawClient(daemon.port) as client:
        assert client.status == 101
        client.send(b"".join(masked(opcode, payload) for opcode, payload in messages))
        for opcode, payload in messages:
            expected = PONG if opcode == PING else opcode
            assert client.read_frame() == (expected, payload)
        client.send(masked(CLOSE, (1000).to_bytes(2, "big")))
        assert client.close_code() == 1000


def test_frames_cut_across_reads(daemon) -> None:
    """
    Frames that arrive in pieces (header, mask and payload cut anywhere)
    come back whole: binary ones kept by the fast path until whole, text
    ones left to Autobahn.
    """
    messages = [
        (BINARY, os.urandom(1000)),
        (TEXT, "été ".encode() * 100),
        (BINARY, os.urandom(200)),
        (BINARY, b"x"),
    ]
    data = b"".join(masked(opcode, payload) for opcode, payload in messages)
    with RawClient(daemon.port) as client:
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Piece by piece, unbuffered: the server most likely reads them
        # apart, and however it reads them the echoes must be right.
        for cut in (1, 2, 5, 7, 300, 1003, 1500):
            client.send(data[:cut])
            data = data[cut:]
        client.send(data)
        for message in messages:
            assert client.read_frame() == message


def test_large_frames_with_64_bit_lengths(tmp_path) -> None:
    """
    Binary frames past 64 KiB (64-bit lengths), many reads each, are
    echoed; one over --max-frame-size gets 1009.
    """
    daemon = start_daemon(tmp_path, "--max-frame-size", "300000")
    port = daemon.port
    try:
        with RawClient(port) as client:
            for size in (65536, 300_000):
                payload = os.urandom(size)
                client.send(masked(BINARY, payload))
                assert client.read_frame() == (BINARY, payload)
            client.send(masked(BINARY, os.urandom(300_001)))
            assert client.close_code() == 1009
    finally:
        assert daemon.stop() == 0
    assert "Traceback" not in daemon.whole_log()


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (masked(TEXT, b"\xed\xa0\x80"), 1007),  # a UTF-16 surrogate
        (masked(TEXT, b"caf\xc3"), 1007),  # cut inside a character
        (frame(TEXT, b"unmasked", mask=None), 1002),
        (masked(BINARY, b"x", rsv=4), 1002),  # RSV1 without deflate
        (masked(TEXT, b"x" * 1001), 1009),  # over --max-message-size
        (masked(3, b"x"), 1002),  # a reserved opcode
        # The 16-bit length form for 5 bytes is not minimal.
        (b"\x81\xfe\x00\x05\x00\x00\x00\x00hello", 1002),
    ],
)
def test_what_the_fast_path_refuses(daemon, bad: bytes, code: int) -> None:
    """
    A frame the fast path does not take, after one it did in the same
    write, gets Autobahn's close code; the good one before it is echoed.
    """
    with RawClient(daemon.port) as client:
        client.send(masked(TEXT, b"first") + bad + masked(TEXT, b"never"))
        assert client.read_frame() == (TEXT, b"first")
        assert client.close_code() == code


def test_order_kept_when_the_socket_is_full(daemon) -> None:
    """
    A client that sends without reading fills the kernel's buffers and the
    server stops reading: echoes then wait in Twisted's buffer, and every
    later echo must go after them, not straight to the socket. All come
    back, in order.
    """
    cap = 256 * 1024  # messages: 256 MiB, far more than buffers hold
    sent = [0]
    stop = threading.Event()

    def message(i: int) -> bytes:
        return i.to_bytes(4, "big") * 250

    def send() -> None:
        while sent[0] < cap and not stop.is_set():
            client.send(masked(BINARY, message(sent[0])))
            sent[0] += 1

    with RawClient(daemon.port) as client:
        sender = threading.Thread(target=send)
        sender.start()
        wait_until_stalled(lambda: sent[0], cap)
        assert sent[0] < cap, "the buffers took it all: nothing was tested"
        stop.set()
        received = 0
        while received < sent[0] or sender.is_alive():
            if received < sent[0]:
                assert client.read_frame() == (BINARY, message(received))
                received += 1
            else:  # the last message still going out
                sender.join(0.01)
