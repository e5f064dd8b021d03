"""
The fast path's frame scanner (wsecho.wire.frames.scan) on its own, against an
independent reference: the sans-I/O frame parser of the websockets library.
Hypothesis builds streams of valid and invalid client frames, cut at random
points, and both must agree on what is echoed, ponged, waited for, or left
to Autobahn.
"""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import PayloadTooBig, ProtocolError
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from wsecho.wire.frames import PINGS_PER_READ, SMALL_PAYLOAD, scan, unmask

LIMIT = 300  # the message size limit the scanner is given here


def _header_size(data: bytes) -> int:
    if len(data) < 2:
        return 2
    length = data[1] & 0x7F
    return 2 + {126: 2, 127: 8}.get(length, 0) + (4 if data[1] & 0x80 else 0)


def _minimal(data: bytes) -> bool:
    length = data[1] & 0x7F
    if length == 126:
        return int.from_bytes(data[2:4], "big") >= 126
    if length == 127:
        return int.from_bytes(data[2:10], "big") >= 65536
    return True


def reference(data: bytes, limit: int):
    """
    What the scanner should do with C{data}, worked out with websockets'
    parser: the replies, the bytes consumed, and whether the rest is a
    frame of ours still incomplete (and how long it is when known).
    """
    at, replies, pings, last_ping = 0, [], 0, None
    while at < len(data):
        reader = StreamReader()
        reader.feed_data(data[at:])
        reader.feed_eof()
        parser = Frame.parse(reader.read_exact, mask=True, max_size=limit)
        first = data[at]
        fin_rsv = first & 0xF0
        opcode = first & 0x0F
        ours_data = fin_rsv == 0x80 and opcode in (1, 2)
        ours_control = fin_rsv == 0x80 and opcode in (9, 10)
        try:
            next(parser)
        except StopIteration as done:
            frame = done.value
        except EOFError:
            # Incomplete. Ours to wait for: a binary or control frame that
            # would be ours once whole, masked and minimal (text: Autobahn's).
            rest = data[at:]
            head = _header_size(rest)
            if len(rest) >= 2 and not rest[1] & 0x80:
                return replies, at, False
            if len(rest) >= 2 and ours_control and (rest[1] & 0x7F) > 125:
                return replies, at, False
            if len(rest) >= head and not _minimal(rest):
                return replies, at, False
            length = None
            if len(rest) >= head:
                length = int.from_bytes(
                    rest[2 : head - 4] if head > 6 else rest[1:2], "big"
                ) & (0x7F if head == 6 else ~0)
                if length > limit and ours_data:
                    return replies, at, False
            waits = ours_control or (ours_data and (opcode == 2 or len(rest) < head))
            return replies, at, waits
        except PayloadTooBig:
            # The scanner reads a length with its mask: a header still short
            # of its mask is waited for (then Autobahn answers 1009).
            rest = data[at:]
            return replies, at, ours_data and len(rest) < _header_size(rest)
        except ProtocolError:
            return replies, at, False
        size = len(data) - at - len(reader.buffer)
        raw = data[at : at + size]
        if not (ours_data or ours_control) or not _minimal(raw):
            break
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            if frame.opcode is Opcode.TEXT:
                try:
                    frame.data.decode("utf-8")
                except UnicodeDecodeError:
                    break
            replies.append((opcode, bytes(frame.data)))
        elif frame.opcode is Opcode.PING:
            pings += 1
            if pings <= PINGS_PER_READ:
                replies.append((10, bytes(frame.data)))
            else:
                last_ping = bytes(frame.data)
        at += size
    if last_ping is not None:
        replies.append((10, last_ping))
    return replies, at, False


def _server_frames(replies: list[bytes]) -> list[tuple[int, bytes]]:
    frames = []
    for header, payload in zip(replies[::2], replies[1::2], strict=True):
        assert header[0] & 0x80 and not header[1] & 0x80  # final, unmasked
        frames.append((header[0] & 0x0F, payload))
    return frames


def client_frame():
    """
    One client frame, valid or not: any opcode, FIN and RSV bits, masked or
    not, payloads of any size around the limit, text valid UTF-8 or not.
    """
    return st.builds(
        _serialize,
        # Mostly frames the scanner takes, so that streams get past a few.
        st.sampled_from([1, 1, 1, 2, 2, 2, 9, 10, 0, 3, 8, 11]),
        st.one_of(
            st.binary(max_size=LIMIT + 20),
            # Each side of every length that matters.
            st.sampled_from([124, 125, 126, 127, LIMIT, LIMIT + 1]).map(bytes),
            st.text(max_size=80).map(lambda t: t.encode()),
            st.just(b"\xff\xfe"),
        ),
        st.sampled_from([True] * 5 + [False]),
        st.sampled_from([0] * 8 + [4, 1]),
        st.sampled_from([True] * 9 + [False]),
        st.binary(min_size=4, max_size=4),
        st.sampled_from([False] * 9 + [True]),
    )


def _serialize(opcode, data, fin, rsv, masked, mask, wide=False) -> bytes:
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if masked else 0
    if wide and len(data) < 126:  # a length in more bytes than it needs
        head += bytes([bit | 126]) + len(data).to_bytes(2, "big")
    elif wide:
        head += bytes([bit | 127]) + len(data).to_bytes(8, "big")
    elif len(data) < 126:
        head += bytes([bit | len(data)])
    else:
        head += bytes([bit | 126]) + len(data).to_bytes(2, "big")
    if not masked:
        return head + data
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


@settings(max_examples=400, deadline=None)
@given(st.lists(client_frame(), max_size=24), st.data())
def test_scan_agrees_with_websockets(frames, data) -> None:
    """
    On any stream of client frames cut anywhere, the scanner echoes and
    pongs exactly what the reference says, consumes as much, and waits
    (need > 0) exactly when the rest is an incomplete frame of its own.
    """
    stream = b"".join(frames)
    cut = data.draw(st.integers(0, len(stream)))
    stream = stream[:cut]
    replies, consumed, need, messages = scan(stream, LIMIT)
    expected, expected_consumed, waits = reference(stream, LIMIT)
    assert _server_frames(replies) == expected
    assert consumed == expected_consumed
    assert bool(need) == waits
    assert messages == sum(1 for opcode, _ in expected if opcode in (1, 2))
    if need:
        assert len(stream) - consumed < need


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("opcode", [1, 2, 9, 10])
@pytest.mark.parametrize("size", [0, 124, 125, 126, 127, LIMIT, LIMIT + 1])
def test_lengths_at_the_edges(size, opcode, wide) -> None:
    """
    At each edge (the control frame limit, the 16-bit length, the size
    limit), whole and cut, the scanner agrees with the reference.
    """
    whole = _serialize(opcode, b"a" * size, True, 0, True, b"abcd", wide)
    for stream in (whole, whole + whole, whole[:-1], whole[:3]):
        replies, consumed, need, _ = scan(stream, LIMIT)
        expected, expected_consumed, waits = reference(stream, LIMIT)
        assert (_server_frames(replies), consumed, bool(need)) == (
            expected,
            expected_consumed,
            waits,
        )


@given(st.integers(PINGS_PER_READ + 1, 200))
def test_ping_floods_get_the_latest_pong(count) -> None:
    """
    Past PINGS_PER_READ pings in one read, only the most recent one is
    answered besides the first ones.
    """
    pings = b"".join(
        _serialize(9, b"%d" % i, True, 0, True, b"abcd") for i in range(count)
    )
    replies, consumed, need, _ = scan(pings, LIMIT)
    pongs = [payload for _, payload in _server_frames(replies)]
    assert consumed == len(pings) and not need
    assert pongs == [b"%d" % i for i in range(PINGS_PER_READ)] + [b"%d" % (count - 1)]


def _pair(takeover: bool = True):
    """
    A server's codec, and the client's compressor and decompressor to talk
    to it (context takeover or not, as a browser or gorilla offers).
    """
    import zlib

    from autobahn.websocket.compress_deflate import PerMessageDeflate

    from wsecho.wire.deflate import DeflateCodec

    server = PerMessageDeflate(True, not takeover, not takeover, 13, 15, 6)
    codec = DeflateCodec(server, LIMIT)

    class Client:
        def __init__(self) -> None:
            self.compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
            self.decompressor = zlib.decompressobj(-13)

        def frame(self, opcode: int, plain: bytes) -> bytes:
            if not takeover:
                self.compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
            data = self.compressor.compress(plain) + self.compressor.flush(
                zlib.Z_SYNC_FLUSH
            )
            return _serialize(opcode, data[:-4], True, 4, True, b"\x01\x02\x03\x04")

        def read(self, payload: bytes) -> bytes:
            if not takeover:
                self.decompressor = zlib.decompressobj(-13)
            return self.decompressor.decompress(payload + b"\x00\x00\xff\xff")

    return codec, Client()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([1, 2]),
            # Within the limit once encoded: 300 characters can be 1,200 bytes.
            st.text(max_size=LIMIT).map(str.encode).filter(lambda b: len(b) <= LIMIT),
        ),
        min_size=1,
        max_size=12,
    ),
    st.booleans(),
    st.data(),
)
def test_deflated_messages_are_echoed_compressed(messages, takeover, data) -> None:
    """
    With permessage-deflate, whole compressed messages (and uncompressed
    ones) are inflated, echoed compressed, and read back by the client as
    sent, in one read or cut across several, with or without context
    takeover.
    """
    codec, client = _pair(takeover)
    stream = b"".join(
        client.frame(opcode, plain)
        if data.draw(st.booleans()) or takeover
        else _serialize(opcode, plain, True, 0, True, b"\x00\x00\x00\x00")
        for opcode, plain in messages
    )
    echoed = []
    low = 1
    while stream:
        cut = data.draw(st.integers(low, len(stream)))
        replies, consumed, _, count = scan(stream[:cut], LIMIT, None, codec)
        assert count == len(replies) // 2
        assert codec.failure is None
        for header, payload in zip(replies[::2], replies[1::2], strict=True):
            assert header[0] & 0xF0 == 0xC0  # final, compressed
            echoed.append((header[0] & 0x0F, client.read(payload)))
        if consumed:
            stream, low = stream[consumed:], 1
        else:
            # A cut text frame is Autobahn's; here, read on with more.
            assert cut < len(stream)
            low = cut + 1
    assert echoed == messages


@pytest.mark.parametrize("takeover", [True, False])
def test_a_deflate_bomb_fails_with_1009(takeover) -> None:
    """
    A compressed message that inflates past the limit stops the scan with a
    1009 for the caller to close with, before anything is echoed of it.
    """
    codec, client = _pair(takeover)
    replies, consumed, _, _ = scan(
        client.frame(1, b"ok") + client.frame(2, b"\x00" * (LIMIT + 1)),
        LIMIT,
        None,
        codec,
    )
    assert len(replies) == 2 and consumed > 0
    assert codec.failure == (1009, f"message over {LIMIT} bytes")


@pytest.mark.parametrize("takeover", [True, False])
def test_corrupt_and_invalid_text_fail_with_1007(takeover) -> None:
    """
    Compressed data zlib cannot read, and compressed text that is not
    UTF-8, stop the scan with 1007.
    """
    codec, _ = _pair(takeover)
    junk = _serialize(2, b"\xff\xff\xff\xff\xff", True, 4, True, b"\x00\x00\x00\x00")
    assert scan(junk, LIMIT, None, codec)[1] == 0
    assert codec.failure[0] == 1007
    codec, client = _pair(takeover)
    assert scan(client.frame(1, b"\xff\xfe"), LIMIT, None, codec)[1] == 0
    assert codec.failure == (
        1007,
        "encountered invalid UTF-8 while processing text message at payload octet "
        "index 0",
    )


def test_unmask_matches_the_definition() -> None:
    """
    Both ways of unmasking (Python integers up to SMALL_PAYLOAD bytes,
    Autobahn's masker above) give RFC 6455's XOR with the repeated key.
    """
    for size in (0, 1, 3, 4, 5, 31, 125, 126, SMALL_PAYLOAD, SMALL_PAYLOAD + 1, 5000):
        payload, mask = os.urandom(size), os.urandom(4)
        expected = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert unmask(payload, mask) == expected, size
