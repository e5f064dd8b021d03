"""
permessage-deflate (RFC 7692) on the server side: which offers to take, and
with what memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

from autobahn.exception import PayloadExceededError
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateOfferAccept,
)

from wsecho._compat.autobahn import PayloadCorruptError

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


class DeflateCodec:
    """
    The fast path's permessage-deflate (a L{wsecho.wire.frames.Codec}).

    With context takeover, it works with the connection's own Autobahn
    C{PerMessageDeflate} (its public methods): the same zlib objects, so
    that the context carries on between the messages the fast path takes and
    those Autobahn's frame machinery takes. Without (gorilla's offer, say),
    no message refers to another, and it keeps zlib objects of its own: one
    compressor whose window is emptied after each message (C{Z_FULL_FLUSH},
    RFC 7692 7.1.1.1) and one decompressor, where Autobahn would make new
    ones for every message (some 20 us each). Inflation is bounded by
    C{limit}, as Autobahn bounds it.
    """

    def __init__(self, deflate: Any, limit: int) -> None:
        self._deflate = deflate
        self._limit = limit
        self.failure: tuple[int, str] | None = None
        self.compressed_in = self.plain_in = 0
        self.compressed_out = self.plain_out = 0
        self._compressor: Any = None
        self._decompressor: Any = None
        if deflate.server_no_context_takeover:
            self._compressor = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION,
                zlib.DEFLATED,
                -deflate.server_max_window_bits,
                deflate.mem_level,
            )
        if deflate.client_no_context_takeover:
            self._decompressor = zlib.decompressobj(-deflate.client_max_window_bits)

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

    def inflate(self, payload: bytes) -> bytes | None:
        bound = self._limit + 1
        decompressor = self._decompressor
        try:
            if decompressor is None:
                deflate = self._deflate
                deflate.start_decompress_message()
                plain: bytes = deflate.decompress_message_data(payload, bound)
                deflate.end_decompress_message()
            else:
                plain = decompressor.decompress(payload, bound)
                if decompressor.unconsumed_tail:
                    raise PayloadExceededError(len(plain))
                decompressor.decompress(_TAIL)
        except PayloadExceededError:
            self.failure = (1009, f"message over {self._limit} bytes")
        except (PayloadCorruptError, zlib.error) as e:
            self.failure = (1007, f"message cannot be decompressed: {e}")
        else:
            if len(plain) <= self._limit:
                return plain
            self.failure = (1009, f"message over {self._limit} bytes")
        return None

    def deflate(self, payload: bytes) -> bytes:
        compressor = self._compressor
        if compressor is None:
            deflate = self._deflate
            deflate.start_compress_message()
            compressed: bytes = deflate.compress_message_data(payload)
            compressed += deflate.end_compress_message()
        else:
            compressed = compressor.compress(payload)
            compressed += compressor.flush(zlib.Z_FULL_FLUSH)[:-4]
        self.plain_out += len(payload)
        self.compressed_out += len(compressed)
        return compressed


# What RFC 7692 7.2.2 has the sender strip from the end of a message, and
# the receiver append before inflating its end.
_TAIL = b"\x00\x00\xff\xff"
