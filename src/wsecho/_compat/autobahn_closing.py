"""
How a connection's WebSocket ended, read from Autobahn's close bookkeeping
and traffic counters (neither is its public API): for the close line and
the metrics.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Closing(NamedTuple):
    """
    How a connection's WebSocket ended, from Autobahn's bookkeeping.
    """

    # The close code of whoever closed first (None: dropped without one).
    code: int | None
    # Our own close reason when we closed first, else the peer's.
    reason: str
    by_server: bool
    clean: bool
    # Why it was not clean, when it was not.
    not_clean_reason: str | None
    messages_received: int
    messages_sent: int
    wire_received: int
    wire_sent: int
    # permessage-deflate: payload bytes compressed and plain, each way.
    compressed_received: int
    plain_received: int
    compressed_sent: int
    plain_sent: int


def closing(protocol: Any, reason: str | None = None) -> Closing:
    """
    How C{protocol}'s WebSocket ended (or stands); C{reason} is the peer's
    as Autobahn gave it to C{onClose}.
    """
    stats = protocol.trafficStats
    by_me = bool(protocol.closedByMe)
    if by_me:
        code = protocol.localCloseCode
        reason = (protocol.localCloseReason or b"").decode("utf-8", "replace")
    else:
        code = protocol.remoteCloseCode
    return Closing(
        code=code,
        reason=reason or "",
        # The server ended it: it sent the first close frame, or dropped the
        # connection without a clean close (a timeout, the budget).
        by_server=by_me or (bool(protocol.droppedByMe) and not protocol.wasClean),
        clean=bool(protocol.wasClean),
        not_clean_reason=protocol.wasNotCleanReason,
        messages_received=stats.incomingWebSocketMessages,
        messages_sent=stats.outgoingWebSocketMessages,
        wire_received=stats.incomingOctetsWireLevel,
        wire_sent=stats.outgoingOctetsWireLevel,
        compressed_received=stats.incomingOctetsWebSocketLevel,
        plain_received=stats.incomingOctetsAppLevel,
        compressed_sent=stats.outgoingOctetsWebSocketLevel,
        plain_sent=stats.outgoingOctetsAppLevel,
    )


def close_code(protocol: Any) -> int | None:
    # The close code of whoever closed first: 1005 when the peer's close
    # frame had none (Autobahn marks the connection clean once it has the
    # peer's close frame); None when dropped without one.
    if protocol.closedByMe:
        return protocol.localCloseCode  # type: ignore[no-any-return]
    code = protocol.remoteCloseCode
    if code is None and protocol.wasClean:
        return 1005
    return code  # type: ignore[no-any-return]


def deflate_totals(protocol: Any) -> tuple[int, int, int, int]:
    # permessage-deflate's payload bytes: compressed and plain received,
    # compressed and plain sent.
    stats = protocol.trafficStats
    return (
        stats.incomingOctetsWebSocketLevel,
        stats.incomingOctetsAppLevel,
        stats.outgoingOctetsWebSocketLevel,
        stats.outgoingOctetsAppLevel,
    )


def not_clean_reason(protocol: Any) -> str | None:
    # Why the connection did not close cleanly (a failed handshake's).
    return protocol.wasNotCleanReason  # type: ignore[no-any-return]
