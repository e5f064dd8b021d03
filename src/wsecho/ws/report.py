"""
What the log and the metrics say of a closed connection: a summary built
once from how its WebSocket ended, with no I/O.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from wsecho._compat.autobahn import Closing

# RFC 6455 7.1.5: "no status code was actually present" in the close frame
# the peer sent; and 7.1.5/7.1.6: no close frame at all (dropped).
NO_STATUS = 1005
DROPPED = 1006


def reported_code(closing: Closing) -> int:
    """
    The close code the log and the metrics give a connection: whoever
    closed first's; 1005 when the peer's close frame had no code (the
    handshake then completed, clean); 1006 when the connection was dropped
    without a close frame.
    """
    if closing.code is not None:
        return closing.code
    # Autobahn marks the connection clean once it has the peer's close frame.
    return NO_STATUS if closing.clean and not closing.by_server else DROPPED


class Described(NamedTuple):
    """
    Where a connection came from, and what was agreed in its handshake.
    """

    peer: str
    client: str
    origin: str
    subprotocol: str
    extensions: str
    # The HTTP version that carried the WebSocket: 1.1 or 2 (RFC 8441).
    http: str = "1.1"

    def fields(self) -> dict[str, Any]:
        return self._asdict()


class CloseReport(NamedTuple):
    """
    How a connection ended, as its one log line gives it.

    The code and reason are those of whoever closed first (the server's
    own when it failed the connection, as /metrics counts it); see
    L{reported_code} for a close without a code.
    """

    described: Described
    code: int
    reason: str
    clean: bool
    closed_by: str
    duration: float
    closing: Closing

    @classmethod
    def of(cls, described: Described, closing: Closing, duration: float) -> CloseReport:
        return cls(
            described=described,
            code=reported_code(closing),
            reason=closing.reason,
            clean=closing.clean,
            closed_by="server" if closing.by_server else "client",
            duration=duration,
            closing=closing,
        )

    def line(self) -> str:
        """
        The close line, less the peer (its format's first field). Written
        here, once: twisted.logger's formatting of a format with fifteen
        fields cost a handshake a tenth of its time.
        """
        d, c = self.described, self.closing
        return (
            f"client={d.client} code={self.code} reason={self.reason!r} "
            f"clean={self.clean} closed_by={self.closed_by} "
            f"duration={self.duration * 1000:.0f}ms "
            f"messages={c.messages_received}/{c.messages_sent} "
            f"wire_bytes={c.wire_received}/{c.wire_sent} origin={d.origin} "
            f"subprotocol={d.subprotocol} extensions={d.extensions} http={d.http}"
        )

    def fields(self) -> dict[str, Any]:
        """
        The line's fields, for the JSON log.
        """
        c = self.closing
        return {
            **self.described.fields(),
            "code": self.code,
            "reason": self.reason,
            "clean": self.clean,
            "closed_by": self.closed_by,
            "duration": self.duration,
            "duration_ms": self.duration * 1000,
            "received": c.wire_received,
            "sent": c.wire_sent,
            "messages_received": c.messages_received,
            "messages_sent": c.messages_sent,
        }
