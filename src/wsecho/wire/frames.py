"""
The echo's fast path, without I/O: client frames in, the server's replies
out, for the frames that need none of Autobahn's machinery. Whatever this
does not take (fragments, extensions, close frames, anything invalid) it
leaves where it stops, for Autobahn, which answers with the right close code.
"""

from __future__ import annotations

from typing import Any, Protocol

from autobahn.websocket.utf8validator import Utf8Validator

from wsecho._compat.autobahn import masker

# The first byte of the frames taken here: FIN, no RSV bit, and an opcode.
FIN_TEXT = 0x81
FIN_BINARY = 0x82
FIN_PING = 0x89
FIN_PONG = 0x8A
# With permessage-deflate (RFC 7692): RSV1 marks a compressed message.
FIN_TEXT_DEFLATED = 0xC1
FIN_BINARY_DEFLATED = 0xC2

# Up to this size a payload is unmasked with Python's integers: Autobahn's C
# masker costs 3 us a call whatever the size, the integers 0.4 us at 32
# bytes and as much as the C masker at 1 KiB.
SMALL_PAYLOAD = 1024

# Pings answered one by one in a read; past that only the most recent one
# is answered (RFC 6455 5.5.3 allows it), once the read is done or before
# the next message's echo: a ping flood then costs a pong a read, not a
# pong a ping.
PINGS_PER_READ = 16

# What a frame costs in L{scan}'s C{work}, in bytes: a frame's handling
# costs as much as some hundreds of bytes of payload, so that a flood of
# empty frames is counted as the work it is.
FRAME_WORK = 512

# scan's C{need} when it stopped because its C{work} was done: the rest
# waits for the connection's next turn.
YIELD = -1


def unmask(payload: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """
    Undo a client's masking (RFC 6455, 5.3): C{payload} XOR C{mask}
    repeated.
    """
    size = len(payload)
    if size > SMALL_PAYLOAD:
        return masker(mask, size).process(payload)  # type: ignore[no-any-return]
    key = (mask * ((size + 3) >> 2))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little"
    )


def valid_utf8(payload: bytes) -> bool:
    # Python's codec is as strict as RFC 6455 asks (RFC 3629): no
    # surrogates, no overlong forms, nothing past U+10FFFF.
    if payload.isascii():
        return True
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def utf8_failure(payload: bytes) -> str:
    """
    Why C{payload}, a whole text message, is not UTF-8, in Autobahn's words
    (its validator's, which the fast path's answers must match).
    """
    valid, _, _, at = Utf8Validator().validate(payload)
    if not valid:
        return (
            "encountered invalid UTF-8 while processing text message at payload "
            f"octet index {at}"
        )
    return (
        "UTF-8 text message payload ended within Unicode code point at payload "
        f"octet index {at}"
    )


# What scan returns: the frames to send back, in order (headers and
# payloads); how many bytes of the input they answer; 0 if the rest is
# Autobahn's, or else how many bytes the rest (the start of a frame of ours
# not whole yet) must have before it is looked at again; and how many data
# messages were echoed. A plain tuple: a NamedTuple's constructor costs a
# small echo 3 %.
Scan = tuple[list[bytes], int, int, int]


class Codec(Protocol):
    """
    permessage-deflate for L{scan}, on a connection that negotiated it:
    C{inflate} gives a message's payload, or L{None} when it cannot (too
    big once inflated, or corrupt: C{failure} then says which, and the
    caller fails the connection); C{deflate} compresses an echo. Both carry
    the connection's compression context from one message to the next.
    """

    failure: tuple[int, str] | None
    compressed_in: int
    plain_in: int
    compressed_out: int
    plain_out: int

    def inflate(self, payload: bytes, binary: bool = True) -> bytes | None: ...

    @property
    def busy(self) -> bool: ...

    def deflate(self, payload: bytes) -> bytes: ...


def frame_header(first: int, length: int) -> bytes:
    # A server frame's header: not masked, the length as short as it goes.
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return bytes((first, 126)) + length.to_bytes(2, "big")
    return bytes((first, 127)) + length.to_bytes(8, "big")


def scan(
    data: bytes | bytearray,
    limit: int,
    tally: Any = None,
    codec: Codec | None = None,
    work: int = 1 << 62,
) -> Scan:
    """
    Answer the whole frames at the start of C{data}: unfragmented text and
    binary messages (echoed) of at most C{limit} bytes, pings (ponged) and
    pongs (read). Each is checked as Autobahn would: masking, RSV bits,
    opcode, minimal length, UTF-8. C{tally}, if given, counts each message
    echoed (L{wsecho.ws.metrics.EchoTally.message}).

    With a C{codec} (permessage-deflate), compressed messages (RSV1) are
    inflated, and every echo is compressed; a message that cannot be
    inflated stops the scan with the codec's C{failure} set.

    A text frame cut short is left to Autobahn (C{need} 0), which checks
    its UTF-8 as it arrives and fails an invalid one before the rest is
    sent; a binary frame or a control frame cut short is waited for.

    The scan stops (C{need} L{YIELD}) once it has done about C{work} bytes
    of work (each frame costs L{FRAME_WORK} more than its bytes), and after
    a compressed message larger than a step, left under way in the codec.
    """
    size = len(data)
    # The work done beyond the bytes read: frames, and inflated bytes.
    cost = 0
    at = 0
    need = 0
    messages = 0
    pings = 0
    last_ping: bytes | None = None
    replies: list[bytes] = []
    while at < size:
        if at and at + cost >= work:
            need = YIELD
            break
        cost += FRAME_WORK
        first = data[at]
        if (
            first == FIN_TEXT
            or first == FIN_BINARY
            or (
                codec is not None
                and (first == FIN_TEXT_DEFLATED or first == FIN_BINARY_DEFLATED)
            )
        ):
            if size - at < 2:
                need = 2
                break
            length = data[at + 1] ^ 0x80  # the mask bit must be set
            if length < 126:
                start = at + 6
                header = bytes((first, length))
            elif length == 126:
                start = at + 8
                if size < start:
                    need = 8
                    break
                length = (data[at + 2] << 8) | data[at + 3]
                if length < 126:
                    break  # not minimal: a protocol error, Autobahn's to answer
                header = bytes((first, 126)) + data[at + 2 : at + 4]
            elif length == 127:
                start = at + 14
                if size < start:
                    need = 14
                    break
                length = int.from_bytes(data[at + 2 : at + 10], "big")
                if length < 65536:
                    break  # not minimal (past 2**63, over any limit)
                header = bytes((first, 127)) + data[at + 2 : at + 10]
            else:
                break  # unmasked
            if length > limit:
                break  # Autobahn answers 1009
            end = start + length
            if end > size:
                if first == FIN_BINARY or first == FIN_BINARY_DEFLATED:
                    need = end - at
                elif size < start:
                    need = start - at
                break
            mask = bytes(data[start - 4 : start])  # data may be a bytearray
            if length > SMALL_PAYLOAD:  # unmasked without a copy first
                payload = unmask(memoryview(data)[start:end], mask)
            else:
                payload = unmask(data[start:end], mask)
            if codec is not None:
                if first & 0x40:
                    plain = codec.inflate(payload, first & 0x0F == 2)
                    if plain is None:
                        if codec.failure is None:  # under way: later turns
                            at = end
                            need = YIELD
                        break  # or the codec says why: the connection fails
                else:
                    plain = payload
                codec.compressed_in += length
                if first & 0x0F == 1 and not valid_utf8(plain):
                    if first & 0x40:
                        # Inflated, the message is gone from the context:
                        # Autobahn could not see it again.
                        codec.failure = (1007, utf8_failure(plain))
                    break
                codec.plain_in += len(plain)
                cost += len(plain)
                if last_ping is not None:  # answered before what follows it
                    replies.append(bytes((FIN_PONG, len(last_ping))))
                    replies.append(last_ping)
                    last_ping = None
                echo = codec.deflate(plain)
                replies.append(frame_header(0xC0 | (first & 0x0F), len(echo)))
                replies.append(echo)
                messages += 1
                if tally is not None:
                    tally.message(first & 0x0F == 2, len(plain))
                at = end
                continue
            if first == FIN_TEXT and not valid_utf8(payload):
                break
            if last_ping is not None:  # answered before what follows it
                replies.append(bytes((FIN_PONG, len(last_ping))))
                replies.append(last_ping)
                last_ping = None
            replies.append(header)
            replies.append(payload)
            messages += 1
            if tally is not None:
                tally.message(first == FIN_BINARY, length)
            at = end
        elif first == FIN_PING or first == FIN_PONG:
            if size - at < 2:
                need = 2
                break
            length = data[at + 1] ^ 0x80
            if length > 125:
                break  # unmasked, or too long for a control frame
            start = at + 6
            end = start + length
            if end > size:
                need = end - at
                break
            if first == FIN_PING:
                payload = unmask(data[start:end], bytes(data[start - 4 : start]))
                pings += 1
                if pings <= PINGS_PER_READ:
                    replies.append(bytes((FIN_PONG, length)))
                    replies.append(payload)
                else:
                    last_ping = payload
            at = end
        else:
            break
    if last_ping is not None:
        replies.append(bytes((FIN_PONG, len(last_ping))))
        replies.append(last_ping)
    return replies, at, need, messages
