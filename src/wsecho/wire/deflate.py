"""
permessage-deflate (RFC 7692) on the server side: which offers to take, and
with what memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)
from autobahn.websocket.utf8validator import Utf8Validator

from wsecho._compat.autobahn import PayloadCorruptError, decompressor_of
from wsecho.wire.frames import frame_header

EXTENSION = "permessage-deflate"

# The deflate context kept per connection for compressing echoes: a
# 2**13-byte window and memLevel 6 take about 64 KiB (zlib's
# 2**(window+2) + 2**(memLevel+9)) instead of the 256 KiB of zlib's
# defaults. It is made at a connection's first compressed message. The
# inflate side is bounded by the message size limit.
WINDOW_BITS = 13
MEM_LEVEL = 6

_FLAGS = ("server_no_context_takeover", "client_no_context_takeover")
_WINDOWS = ("server_max_window_bits", "client_max_window_bits")


def _window(value: str) -> int | None:
    # RFC 7692 7.1.2: 1*DIGIT, no leading zero, 8 to 15.
    if value.isascii() and value.isdigit() and value[0] != "0":
        bits = int(value)
        if 8 <= bits <= 15:
            return bits
    return None


def _offer(text: str) -> str | None:
    """
    One permessage-deflate offer as Autobahn can take it, or L{None} when
    it has a parameter RFC 7692 does not define, a duplicate, or a bad
    value, or asks for what zlib cannot do.
    """
    name, *params = (p.strip() for p in text.split(";"))
    if name != EXTENSION:
        return None
    seen: set[str] = set()
    kept = [name]
    for param in params:
        key, has_value, value = (s.strip() for s in param.partition("="))
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key in seen:
            return None
        seen.add(key)
        if key in _FLAGS:
            if has_value:
                return None
            kept.append(key)
        elif key in _WINDOWS:
            if not has_value:
                if key == "server_max_window_bits":
                    return None
                kept.append(key)
                continue
            bits = _window(value)
            if bits is None:
                return None
            if bits == 8:
                if key == "server_max_window_bits":
                    # zlib cannot deflate raw data with a 256-byte window
                    # (it makes 512): decline, as RFC 7692 lets a server.
                    return None
                # The client keeps to 256 bytes; our inflater's larger
                # window reads that. Autobahn knows only 9 to 15.
                kept.append(key)
                continue
            kept.append(f"{key}={bits}")
        else:
            return None
    return "; ".join(kept)


def acceptable_offers(values: Sequence[str]) -> str | None:
    """
    The C{Sec-WebSocket-Extensions} header values of a request, reduced to
    the permessage-deflate offers wsecho can accept, in the client's order;
    L{None} when none is left. RFC 7692 section 5: a server declines an
    offer it cannot accept and takes the next one, or none, and still
    upgrades; Autobahn answers 400 instead.
    """
    offers = []
    for value in values:
        for text in value.split(","):
            offer = _offer(text)
            if offer is not None:
                offers.append(offer)
    return ", ".join(offers) or None


def first_offer_has(header: str | None, parameter: str) -> bool:
    """
    Whether the first permessage-deflate offer of C{header} (as
    L{acceptable_offers} left it) has C{parameter}. Autobahn's parsed offer
    does not tell whether the client offered client_no_context_takeover.
    """
    for text in (header or "").split(","):
        name, *params = (p.strip() for p in text.split(";"))
        if name == EXTENSION:
            return any(p.partition("=")[0].strip() == parameter for p in params)
    return False


def accept_deflate(
    max_message_size: int,
) -> Callable[[Sequence[Any], str | None], PerMessageDeflateOfferAccept | None]:
    def accept(
        offers: Sequence[Any], header: str | None
    ) -> PerMessageDeflateOfferAccept | None:
        for offer in offers:
            if isinstance(offer, PerMessageDeflateOffer):
                # Honour a client's server_max_window_bits (0: none asked),
                # but never use a larger window than our own bound.
                requested = offer.request_max_window_bits or WINDOW_BITS
                return PerMessageDeflateOfferAccept(
                    offer,
                    # A client that offers client_no_context_takeover may
                    # require it in the answer (gorilla/websocket does:
                    # "invalid compression negotiation" otherwise).
                    request_no_context_takeover=first_offer_has(
                        header, "client_no_context_takeover"
                    ),
                    window_bits=min(requested, WINDOW_BITS),
                    mem_level=MEM_LEVEL,
                    max_message_size=max_message_size,
                )
        return None

    return accept


# How many plain bytes a message is inflated, checked and compressed at a
# time: a message that inflates to more is echoed in steps of this size
# (L{DeflateCodec.step}), between which the connection may wait its turn.
# A step costs 0.5 ms (zeros) to 2.5 ms (incompressible data).
INFLATE_STEP = 64 * 1024


class _Message:
    """
    A compressed message larger than a step, being inflated, checked and
    compressed again step by step: what is left to inflate, its size so far,
    its UTF-8 check (once it is not ASCII), and its echo so far.
    """

    __slots__ = ("binary", "echo", "input", "offset", "plain", "size", "validator")

    def __init__(self, binary: bool, tail: bytes, plain: bytes | None = None) -> None:
        self.binary = binary
        self.input = tail
        # A message inflated already (by Autobahn), only to compress.
        self.plain = plain
        self.size = 0
        self.validator: Any = None
        # Where the UTF-8 check started (what came before it was ASCII).
        self.offset = 0
        self.echo: list[bytes] = []


class DeflateCodec:
    """
    The fast path's permessage-deflate (a L{wsecho.wire.frames.Codec}).

    With context takeover, it works with the connection's own Autobahn
    C{PerMessageDeflate}: the same zlib objects, so that the context
    carries on between the messages the fast path takes and those
    Autobahn's frame machinery takes. Without (gorilla's offer, say), no
    message refers to another, and it keeps zlib objects of its own: one
    compressor whose window is emptied after each message (C{Z_FULL_FLUSH},
    RFC 7692 7.1.1.1) and one decompressor, where Autobahn would make new
    ones for every message (some 20 us each). Inflation is bounded by
    C{limit}, as Autobahn bounds it.

    A message is inflated L{INFLATE_STEP} bytes at a time: one that
    inflates to more (16 KiB on the wire can be 16 MiB of zeros) is left
    under way (L{busy}) and finished by L{step}, a bounded piece at a time.
    zlib compresses a message given in pieces byte for byte as given whole,
    so the echo is the one Autobahn would send.
    """

    def __init__(self, deflate: Any, limit: int) -> None:
        self._deflate = deflate
        self._limit = limit
        self.failure: tuple[int, str] | None = None
        self.compressed_in = self.plain_in = 0
        self.compressed_out = self.plain_out = 0
        self._compressor: Any = None
        self._decompressor: Any = None
        self._message: _Message | None = None
        # The last message step finished: binary or not, and its size
        # (None: Autobahn read it, and counted it).
        self.finished: tuple[bool, int] | None = None
        if deflate.server_no_context_takeover:
            self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION,
                zlib.DEFLATED,
                -deflate.server_max_window_bits,
                deflate.mem_level,
            )
        if deflate.client_no_context_takeover:
            self._decompressor = zlib.decompressobj(-deflate.client_max_window_bits)

    @property
    def busy(self) -> bool:
        """
        Whether a message is under way (see L{step}).
        """
        return self._message is not None

    def take_failure(self) -> tuple[int, str] | None:
        """
        Why the last message could not be inflated (a close code and a
        reason), once; L{None} if it could.
        """
        failure, self.failure = self.failure, None
        return failure

    def take_counts(self) -> tuple[int, int, int, int]:
        """
        The payload bytes compressed and inflated since last asked:
        compressed in, plain in, compressed out, plain out.
        """
        counts = (
            self.compressed_in,
            self.plain_in,
            self.compressed_out,
            self.plain_out,
        )
        self.compressed_in = self.plain_in = 0
        self.compressed_out = self.plain_out = 0
        return counts

    def _decompressor_for_message(self) -> Any:
        decompressor = self._decompressor
        if decompressor is None:
            deflate = self._deflate
            deflate.start_decompress_message()
            return decompressor_of(deflate)
        return decompressor

    def _inflated(self, decompressor: Any, data: bytes, size: int) -> bytes | None:
        # At most a step, and one byte over the limit; None: failure set.
        try:
            plain: bytes = decompressor.decompress(
                data, min(INFLATE_STEP, self._limit + 1 - size)
            )
        except zlib.error as e:
            why: Exception = e
            if self._decompressor is None:  # in Autobahn's words
                why = PayloadCorruptError(f"invalid permessage-deflate data: {e}")
            self.failure = (1007, f"message cannot be decompressed: {why}")
            return None
        if size + len(plain) > self._limit:
            self.failure = (1009, f"message over {self._limit} bytes")
            return None
        return plain

    def inflate(self, payload: bytes, binary: bool = True) -> bytes | None:
        """
        The message C{payload} inflated; L{None} when it cannot be
        (C{failure} says why), or when it is larger than a step: it is then
        under way (L{busy}), for L{step} to finish.
        """
        decompressor = self._decompressor_for_message()
        data = payload + _TAIL
        plain = self._inflated(decompressor, data, 0)
        if plain is None:
            return None
        if not decompressor.unconsumed_tail and len(plain) < INFLATE_STEP:
            return plain
        message = self._message = _Message(binary, decompressor.unconsumed_tail)
        self.compressed_in += len(payload)
        self._start_deflate()
        self._feed(message, plain)
        return None

    def deflate_later(self, payload: bytes, binary: bool) -> None:
        """
        Compress the echo of C{payload}, a message inflated and checked
        already, in steps (see L{step}).
        """
        self._start_deflate()
        self._message = _Message(binary, b"", payload)

    def step(self, work: int) -> tuple[bytes | None, int]:
        """
        Go on with the message under way for about C{work} plain bytes: its
        echo (the whole frame) once it is done, or L{None} (still under
        way, or failed: C{failure} then says why); and the plain bytes
        done.
        """
        message = self._message
        assert message is not None
        done = 0
        plain = message.plain
        if plain is not None:
            while done < work and message.size < len(plain):
                piece = plain[message.size : message.size + INFLATE_STEP]
                message.echo.append(self._compress(piece))
                message.size += len(piece)
                done += len(piece)
            if message.size < len(plain):
                return None, done
            self._message = None
            return self._finish(message), done
        decompressor = self._decompressor_for_step()
        while done < work:
            plain = self._inflated(decompressor, message.input, message.size)
            if plain is None:
                self._message = None
                return None, done
            message.input = decompressor.unconsumed_tail
            if not plain and not message.input:
                self._message = None
                return self._finish(message), done
            self._feed(message, plain)
            if self.failure is not None:
                self._message = None
                return None, done
            done += len(plain)
        return None, done

    def _decompressor_for_step(self) -> Any:
        if self._decompressor is not None:
            return self._decompressor
        return decompressor_of(self._deflate)

    def _feed(self, message: _Message, plain: bytes) -> None:
        # Check (text) and compress a piece of a message under way.
        if not message.binary:
            validator = message.validator
            if validator is None and not plain.isascii():
                validator = message.validator = Utf8Validator()
                message.offset = message.size
            if validator is not None:
                valid, _, _, at = validator.validate(plain)
                if not valid:
                    self.failure = (
                        1007,
                        "encountered invalid UTF-8 while processing text message "
                        f"at payload octet index {message.offset + at}",
                    )
                    return
        message.size += len(plain)
        message.echo.append(self._compress(plain))

    def _finish(self, message: _Message) -> bytes | None:
        validator = message.validator
        if validator is not None:
            _, ends, _, at = validator.validate(b"")
            if not ends:
                self.failure = (
                    1007,
                    "UTF-8 text message payload ended within Unicode code point "
                    f"at payload octet index {message.offset + at}",
                )
                return None
        if message.plain is None:
            self.plain_in += message.size
        echo = b"".join(message.echo) + self._end_deflate()
        self.plain_out += message.size
        self.compressed_out += len(echo)
        self.finished = (
            (message.binary, message.size) if message.plain is None else None
        )
        first = 0xC2 if message.binary else 0xC1
        return frame_header(first, len(echo)) + echo

    def deflate(self, payload: bytes) -> bytes:
        self._start_deflate()
        compressed = self._compress(payload) + self._end_deflate()
        self.plain_out += len(payload)
        self.compressed_out += len(compressed)
        return compressed

    def _start_deflate(self) -> None:
        if self._compressor is None:
            self._deflate.start_compress_message()

    def _compress(self, payload: bytes) -> bytes:
        compressor = self._compressor
        if compressor is None:
            return self._deflate.compress_message_data(payload)  # type: ignore[no-any-return]
        return compressor.compress(payload)  # type: ignore[no-any-return]

    def _end_deflate(self) -> bytes:
        compressor = self._compressor
        if compressor is None:
            return self._deflate.end_compress_message()  # type: ignore[no-any-return]
        return compressor.flush(zlib.Z_FULL_FLUSH)[:-4]  # type: ignore[no-any-return]

    def stop(self) -> None:
        """
        Let go of the message under way.
        """
        self._message = None


# What RFC 7692 7.2.2 has the sender strip from the end of a message, and
# the receiver append before inflating its end.
_TAIL = b"\x00\x00\xff\xff"
