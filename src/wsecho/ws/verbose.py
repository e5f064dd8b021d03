"""
The echo that logs each message: C{--verbose}.
"""

from __future__ import annotations

from typing import Any

from wsecho.ws.protocol import EchoServerProtocol

# How much of a message --verbose shows.
VERBOSE_PREVIEW = 120


class VerboseEchoServerProtocol(EchoServerProtocol):
    """
    The echo, logging each message (the seed's C{Received:%s}); --verbose.

    A separate class so that the default echo pays nothing for it. Every
    message goes through Autobahn's path, which calls onMessage.
    """

    fast_path = False

    def onOpen(self) -> None:
        super().onOpen()
        self._log.info(
            "open {peer} client={client} origin={origin} "
            "subprotocol={subprotocol} extensions={extensions}",
            **self.described().fields(),
        )

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        preview: Any = payload[:VERBOSE_PREVIEW]
        if not isBinary:
            preview = preview.decode("utf-8", "replace")
        self._log.info(
            "message {peer} {kind} {size} bytes: {preview!r}{more}",
            peer=self.peer,
            kind="binary" if isBinary else "text",
            size=len(payload),
            preview=preview,
            more="..." if len(payload) > VERBOSE_PREVIEW else "",
        )
        super().onMessage(payload, isBinary)
