"""
Property-based fuzzing of a running daemon over real sockets: random valid
and invalid frames after a good handshake, and random handshake bytes. The
daemon must never log an unhandled error, must close every connection and
file descriptor it opened, and must keep serving a control client.
"""

import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import DEADLINE
from support.daemon import open_files, start_daemon
from support.wire import UPGRADE, assert_echoes

# Each test starts real processes: deselected by -m "not system".
pytestmark = pytest.mark.system

EXAMPLES = 150

FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    directory = tmp_path_factory.mktemp("fuzz")
    # Short timeouts: a fuzzed frame may claim a payload that never comes.
    daemon = start_daemon(
        directory,
        "--close-handshake-timeout",
        "1",
        "--open-handshake-timeout",
        "2",
    )
    port = daemon.port
    daemon.port = port
    assert_echoes(port)
    daemon.baseline_files = open_files(daemon.process.pid)
    yield daemon
    try:
        # Every connection closed: back to the file descriptors it had.
        end = time.monotonic() + DEADLINE
        while open_files(daemon.process.pid) > daemon.baseline_files:
            assert time.monotonic() < end, "file descriptors leaked"
            time.sleep(0.05)
        assert_echoes(port)
    finally:
        assert daemon.stop() == 0, daemon.whole_log()
    log = daemon.whole_log()
    assert "Main loop terminated" in log
    for sign in ("Unhandled", "Traceback", "CRITICAL", "#critical]", "#error]"):
        assert sign not in log, log


@st.composite
def frames(draw) -> bytes:
    """
    One client frame: usually well-formed, sometimes not in any of the
    ways a frame can be wrong.
    """
    opcode = draw(st.sampled_from([0, 1, 2, 8, 9, 10]) | st.integers(0, 15))
    fin = draw(st.booleans())
    rsv = draw(st.sampled_from([0, 0, 0, 4]) | st.integers(0, 7))
    if opcode == 1:
        payload = draw(st.text(max_size=300)).encode("utf-8", "surrogatepass")
    elif opcode == 8:
        payload = draw(
            st.builds(
                lambda code, reason: struct.pack("!H", code) + reason.encode(),
                st.sampled_from([1000, 1001, 3000, 4999]) | st.integers(0, 65535),
                st.text(max_size=20),
            )
            | st.binary(max_size=3)
        )
    else:
        payload = draw(st.binary(max_size=300))
    if draw(st.integers(0, 9)) == 0:
        payload = draw(st.binary(max_size=300))  # any bytes at all
    masked = draw(st.integers(0, 19)) != 0
    key = draw(st.binary(min_size=4, max_size=4))
    length = len(payload)
    if draw(st.integers(0, 19)) == 0:
        length = draw(st.integers(0, 2**64 - 1))  # a lie
    head = bytes([fin << 7 | rsv << 4 | opcode])
    bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([bit | length])
    elif length < 2**16:
        head += bytes([bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", length)
    if not masked:
        return head + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def exchange(port: int, data: bytes) -> bytes:
    """
    Send C{data}, say we are done sending, and read until the server
    closes the connection.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as s:
        received = []
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            while chunk := s.recv(65536):
                received.append(chunk)
        except OSError:
            pass  # reset, or closed before we shut our side
    return b"".join(received)


@FUZZ_SETTINGS
@given(data=st.lists(frames(), max_size=8).map(b"".join))
def test_random_frames(daemon, data: bytes) -> None:
    """
    Random frames after a valid handshake: the server answers and closes,
    and a control client is echoed.
    """
    response = exchange(daemon.port, UPGRADE + b"\r\n" + data)
    # Twisted closes a connection as soon as the peer has shut its side,
    # which can be before the answer went out.
    assert response == b"" or response.startswith(b"HTTP/1.1 101 "), response[:100]
    assert_echoes(daemon.port)


_header_lines = st.lists(
    st.sampled_from(UPGRADE.split(b"\r\n")[1:-1])
    | st.builds(
        lambda name, value: name + b": " + value,
        st.binary(min_size=1, max_size=30),
        st.binary(max_size=100),
    ),
    max_size=12,
)


@FUZZ_SETTINGS
@given(
    data=st.one_of(
        st.binary(max_size=2000),
        st.builds(
            lambda method, path, lines, tail: (
                method
                + b" "
                + path
                + b" HTTP/1.1\r\n"
                + b"\r\n".join(lines)
                + b"\r\n\r\n"
                + tail
            ),
            st.sampled_from([b"GET", b"POST", b"HEAD", b"OPTIONS"])
            | st.binary(max_size=8),
            st.sampled_from([b"/socket", b"/", b"/healthz", b"/socket?x=1"])
            | st.binary(max_size=40),
            _header_lines,
            st.binary(max_size=200),
        ),
    )
)
def test_random_handshakes(daemon, data: bytes) -> None:
    """
    Random and mangled upgrade requests get an HTTP answer or a closed
    connection, never a hang or a server error, and a control client is
    echoed. (501 answers a method wsecho implements for no resource: PUT,
    OPTIONS, ..., as RFC 9110 says.)
    """
    response = exchange(daemon.port, data)
    if response.startswith(b"HTTP/1.1 5"):
        method = data.split(b" ", 1)[0]
        assert response.startswith(b"HTTP/1.1 501 "), response[:200]
        assert method not in (b"GET", b"HEAD", b"POST"), response[:200]
    assert_echoes(daemon.port)
