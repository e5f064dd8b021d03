"""
Attacks on a real C{twistd -n wsecho} process over loopback: clients that
do not read, decompression bombs, abusive frames and handshakes, too many
connections. Each test shows the protection working, and that another
client is served meanwhile.
"""

import os
import threading
import time
import zlib

import pytest

from support import DEADLINE, wait_until_stalled
from support.daemon import rss
from support.wire import UPGRADE, RawClient, assert_echoes, frame, raw_http

# Each test starts real processes: deselected by -m "not system".
pytestmark = pytest.mark.system

MiB = 1024 * 1024
CLOSE_NORMAL = (1000).to_bytes(2, "big")


def test_client_that_does_not_read_is_not_buffered_for(run) -> None:
    """
    A client pushes 256 MiB without reading its echoes: the server stops
    reading from it (its RSS grows by less than 32 MiB), echoes another
    client meanwhile, and echoes every byte once the client reads.
    """
    daemon = run()
    baseline = rss(daemon.pid)
    payload = os.urandom(64 * 1024)
    data = frame(2, payload)
    total = 256 * MiB
    sent = [0]

    with RawClient(daemon.port) as client:
        assert client.status == 101

        def push() -> None:
            while sent[0] < total:
                client.send(data)
                sent[0] += len(payload)

        pusher = threading.Thread(target=push, daemon=True)
        pusher.start()
        wait_until_stalled(lambda: sent[0], total)
        stalled = sent[0]
        # The kernel's buffers hold a few MiB; the rest was never sent.
        assert stalled < total // 4, stalled
        assert_echoes(daemon.port)

        echoed = 0
        while echoed < total:
            received = client.read_frame()
            assert received is not None, echoed
            assert received == (2, payload), echoed
            echoed += len(payload)
        pusher.join(DEADLINE)
        client.send(frame(8, CLOSE_NORMAL))
        assert client.close_code() == 1000

    grown = rss(daemon.pid, "VmHWM") - baseline
    print(
        f"pushed {stalled / MiB:.1f} MiB before stalling; peak RSS +{grown / MiB:.1f} MiB"
    )
    assert grown < 32 * MiB, f"peak RSS grew by {grown / MiB:.1f} MiB"


def test_slow_client_is_closed(run) -> None:
    """
    A client that leaves its echoes unread for --slow-client-timeout is
    closed with 1008 after the echoes it was owed.
    """
    daemon = run("--slow-client-timeout", "1")
    payload = os.urandom(64 * 1024)
    with RawClient(daemon.port) as client:
        # Blocks once the server stops reading, until it gives up on us.
        pusher = threading.Thread(
            target=lambda: client.send(frame(2, payload) * 256), daemon=True
        )
        pusher.start()
        pusher.join(DEADLINE)
        assert not pusher.is_alive()
        assert client.close_code() == 1008
    daemon.wait_for("did not read its echoes for 1.0 s")
    assert_echoes(daemon.port)


def test_decompression_bomb(run) -> None:
    """
    A compressed message of 1 GiB of zeros (1 MiB on the wire) is closed
    with 1009 without being inflated: the server's memory barely moves.
    """
    daemon = run()
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MiB)
    body = b"".join(deflate.compress(zeros) for _ in range(1024))
    body += deflate.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff") and len(body) < 2 * MiB
    baseline = rss(daemon.pid)
    with RawClient(
        daemon.port, "Sec-WebSocket-Extensions: permessage-deflate"
    ) as client:
        assert b"permessage-deflate" in client.response
        try:
            client.send(frame(2, body[:-4], rsv=4))
        except OSError:
            pass  # the server may close before it has read it all
        assert client.close_code() == 1009
    grown = rss(daemon.pid, "VmHWM") - baseline
    print(
        f"1 GiB bomb ({len(body) / MiB:.2f} MiB on the wire): peak RSS +{grown / MiB:.1f} MiB"
    )
    assert grown < 48 * MiB, f"peak RSS grew by {grown / MiB:.1f} MiB"
    assert_echoes(daemon.port)


def _long_length(size: int) -> bytes:
    # A masked binary frame header claiming a 64-bit length; no payload.
    return bytes([0x82, 0xFF]) + size.to_bytes(8, "big") + bytes(4)


@pytest.mark.parametrize(
    "data, code",
    [
        pytest.param(frame(1, b"hi", mask=None), 1002, id="unmasked"),
        pytest.param(frame(1, b"hi", rsv=2), 1002, id="rsv2"),
        pytest.param(frame(1, b"hi", rsv=4), 1002, id="rsv1-without-deflate"),
        pytest.param(frame(3, b"hi"), 1002, id="reserved-data-opcode"),
        pytest.param(frame(0xB, b"hi"), 1002, id="reserved-control-opcode"),
        pytest.param(frame(0, b"hi"), 1002, id="continuation-first"),
        pytest.param(frame(9, b"x" * 126), 1002, id="long-ping"),
        pytest.param(frame(9, b"x", fin=False), 1002, id="fragmented-ping"),
        pytest.param(
            frame(1, b"a", fin=False) + frame(1, b"b"), 1002, id="interleaved"
        ),
        pytest.param(frame(1, b"\xff\xfe"), 1007, id="invalid-utf8"),
        pytest.param(_long_length(2**63), 1002, id="length-2**63"),
        pytest.param(_long_length(2**63 - 1), 1009, id="length-2**63-1"),
        pytest.param(_long_length(16 * MiB + 1), 1009, id="over-max-frame-size"),
    ],
)
def test_frame_abuse(run, data: bytes, code) -> None:
    """
    A frame that breaks RFC 6455, or claims more than the limits, gets the
    right close code at once (no payload is waited for) and the connection
    is closed; other clients are served.
    """
    # The claimed payload swallows our closing reply: do not wait long.
    daemon = run("--close-handshake-timeout", "1")
    with RawClient(daemon.port) as client:
        client.send(data)
        assert client.close_code() == code
        client.send(frame(8, code.to_bytes(2, "big")))
        assert client.read_frame() is None
    assert_echoes(daemon.port)


@pytest.mark.parametrize(
    "payload, code",
    [
        pytest.param((999).to_bytes(2, "big"), 1002, id="code-999"),
        pytest.param((1005).to_bytes(2, "big"), 1002, id="code-1005"),
        pytest.param((5000).to_bytes(2, "big"), 1002, id="code-5000"),
        pytest.param(b"\x03\xe8\xff", 1007, id="reason-not-utf8"),
    ],
)
def test_bad_close_frame(run, payload: bytes, code: int) -> None:
    """
    A close frame with a bad code or reason gets the right close code, then
    an orderly end of the TCP connection, not a reset: the client can still
    write its close frame in answer. The close line says the server failed
    the connection, with that code.
    """
    daemon = run()
    with RawClient(daemon.port) as client:
        client.send(frame(8, payload))
        assert client.close_code() == code
        assert client.ended_in_order()
        client.send(frame(8, code.to_bytes(2, "big")))
    line = daemon.wait_for("reason='invalid close ")
    assert f" code={code} " in line and " clean=False closed_by=server " in line
    assert_echoes(daemon.port)


def test_flood_of_tiny_fragments(run) -> None:
    """
    A message in 200,000 empty fragments costs the server neither memory
    nor its other clients; the message is echoed.
    """
    daemon = run()
    baseline = rss(daemon.pid)
    with RawClient(daemon.port) as client:
        client.send(frame(1, b"", fin=False))
        client.send(frame(0, b"", fin=False) * 200_000)
        assert_echoes(daemon.port)
        client.send(frame(0, b"end"))
        assert client.read_frame() == (1, b"end")
    grown = rss(daemon.pid, "VmHWM") - baseline
    print(f"200,000 empty fragments: peak RSS +{grown / MiB:.2f} MiB")
    assert grown < 4 * MiB, f"peak RSS grew by {grown / MiB:.1f} MiB"


def test_ping_flood(run) -> None:
    """
    20,000 pings sent without reading the pongs: the server holds back (not
    buffering without bound) while the client does not read, answers the
    pings of each read up to a few and then the most recent one only (RFC
    6455 5.5.3), in order, and the last ping gets its pong.
    """
    daemon = run()
    baseline = rss(daemon.pid)
    count = 20_000
    with RawClient(daemon.port) as client:
        pings = b"".join(frame(9, b"%05d" % i + b"p" * 120) for i in range(count))
        sender = threading.Thread(target=client.send, args=(pings,), daemon=True)
        sender.start()
        wait_until_stalled(lambda: 0 if sender.is_alive() else 1, 1)
        assert_echoes(daemon.port)
        sender.join(DEADLINE)
        client.send(frame(1, b"after"))
        answered = []
        while (received := client.read_frame()) != (1, b"after"):
            assert received is not None and received[0] == 10, received
            answered.append(int(received[1][:5]))
    assert answered == sorted(set(answered)), "pongs out of order or repeated"
    assert answered[-1] == count - 1
    # A pong for every ping of a small read, one a read past that.
    assert len(answered) < count // 2, len(answered)
    grown = rss(daemon.pid, "VmHWM") - baseline
    print(f"20,000 pings: {len(answered)} pongs; peak RSS +{grown / MiB:.2f} MiB")
    assert grown < 8 * MiB, f"peak RSS grew by {grown / MiB:.1f} MiB"


@pytest.mark.parametrize(
    "data",
    [
        # All of it fits in one read: the server closes having read
        # everything, so its answer is not lost to a reset.
        pytest.param(UPGRADE + b"X-Big: " + b"a" * 17_000, id="long-line"),
        pytest.param(
            UPGRADE
            + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 100) for i in range(200))
            + b"\r\n",
            id="headers-over-16KiB",
        ),
        pytest.param(
            UPGRADE + b"".join(b"X-%d: a\r\n" % i for i in range(600)) + b"\r\n",
            id="600-headers",
        ),
        pytest.param(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 50 + b"\r\n\r\n",
            id="tls-hello",
        ),
        pytest.param(os.urandom(4096).replace(b"\n", b"") + b"\r\n\r\n", id="random"),
        pytest.param(b"GET /socket\r\n\r\n", id="http-0.9"),
    ],
)
def test_handshake_abuse(run, data: bytes) -> None:
    """
    Oversized headers and garbage get 400 (or 431) and a closed
    connection; other clients are served.
    """
    daemon = run()
    response = raw_http(daemon.port, data)
    assert response.split(b" ", 2)[1] in (b"400", b"431"), response[:200]
    assert_echoes(daemon.port)


def test_slowloris_does_not_delay_others(run) -> None:
    """
    Slowloris connections dribbling their headers get 408 at the
    opening-handshake timeout, and other clients are echoed meanwhile.
    """
    import socket

    daemon = run("--open-handshake-timeout", "2")
    slow = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", daemon.port), timeout=DEADLINE)
        s.sendall(b"GET /socket HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        slow.append(s)
    try:
        for _ in range(5):
            for s in slow:
                s.sendall(b"a")  # not idle, never finished
            assert_echoes(daemon.port)
        for s in slow:
            response = s.makefile("rb").read()
            assert response.startswith(b"HTTP/1.1 408 "), response
    finally:
        for s in slow:
            s.close()


def test_connection_limits_with_trusted_proxy(run) -> None:
    """
    --max-connections and --max-connections-per-ip answer 503 before the
    upgrade, counting the address a trusted proxy forwarded; a closed
    connection frees its place.
    """
    daemon = run(
        "--max-connections",
        "3",
        "--max-connections-per-ip",
        "2",
        "--trust-proxy",
        "1",
    )

    def from_(address: str) -> RawClient:
        return RawClient(daemon.port, f"X-Forwarded-For: 10.9.9.9, {address}")

    a, b = from_("198.51.100.7"), from_("198.51.100.7")
    assert (a.status, b.status) == (101, 101)
    third = from_("198.51.100.7")
    assert third.status == 503
    assert b"from this address" in third.reader.read()
    other = from_("198.51.100.8")
    assert other.status == 101
    full = from_("198.51.100.9")
    assert full.status == 503
    assert b"too many connections" in full.reader.read()
    line = daemon.wait_for("refused 198.51.100.9")
    assert "refused 198.51.100.9: too many connections" in line
    # twisted.web's access log names the forwarded address too.
    assert daemon.wait_for('"198.51.100.9" - - ').endswith('503 31 "-" "-"\n')

    a.send(frame(8, CLOSE_NORMAL))
    assert a.close_code() == 1000
    # Logged with the forwarded address (after the warm-up's connection).
    assert "client=198.51.100.7 " in daemon.wait_for("client=198.51.100.7 ")
    end = time.monotonic() + DEADLINE
    while (again := from_("198.51.100.7")).status != 101:
        again.close()
        assert time.monotonic() < end, "the closed connection's place was not freed"
        time.sleep(0.05)
    for client in (a, b, third, other, full, again):
        client.close()


def test_forwarded_addresses_are_ignored_without_trust(run) -> None:
    """
    Without --trust-proxy, X-Forwarded-For changes nothing: every
    connection from loopback counts against the same address.
    """
    daemon = run("--max-connections-per-ip", "1")
    with RawClient(daemon.port, "X-Forwarded-For: 198.51.100.1") as first:
        assert first.status == 101
        with RawClient(daemon.port, "X-Forwarded-For: 198.51.100.2") as second:
            assert second.status == 503
