"""
A connection's share of the reactor: the work done in its turn, the input
waiting for its next one, and the pings of the turn (see
L{wsecho.ws.scheduler} for the round robin of turns).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wsecho.wire.frames import PINGS_PER_READ
from wsecho.ws.account import Account
from wsecho.ws.scheduler import FRAME_WORK, TURN_WORK, Scheduler


class Turns:
    """
    One connection's turns: what it spent of the current one, and what
    waits for the next. C{resume} is called at the connection's next turn.
    """

    def __init__(
        self,
        transport: Any,
        account: Account,
        scheduler: Scheduler,
        resume: Callable[[], None],
    ) -> None:
        self._transport = transport
        self._account = account
        self._scheduler = scheduler
        self._resume = resume
        # The input left for the next turn, and the latest ping of this
        # one not answered yet (past PINGS_PER_READ, only the latest is
        # answered, at the end of the turn: RFC 6455 5.5.3 allows it).
        self._held = b""
        self._last_ping: bytes | None = None
        # Read by the protocol (attributes, not properties: the echo of a
        # small message reads them once each): whether the connection
        # waits for its next turn, the work left in this turn (negative
        # once over), and the pings of this turn.
        self.waiting = False
        self.left = TURN_WORK
        self.pings = 0

    def begin(self) -> None:
        """
        A new turn: nothing spent yet.
        """
        self.left = TURN_WORK

    def spend(self, work: int) -> None:
        self.left -= work

    def frame(self) -> None:
        """
        A frame was handled: every frame costs its share, an empty
        continuation too.
        """
        self.left -= FRAME_WORK

    def over(self) -> bool:
        return self.left <= 0

    def ping(self, payload: bytes) -> bool:
        """
        A ping came: whether to answer it now (else the turn's latest ping
        is answered at its end, see L{last_ping}).
        """
        self.left -= FRAME_WORK
        self.pings += 1
        if self.pings <= PINGS_PER_READ:
            return True
        self._last_ping = payload
        return False

    def last_ping(self) -> bytes | None:
        """
        The latest ping not answered yet, taken.
        """
        ping, self._last_ping = self._last_ping, None
        return ping

    def end(self) -> bytes | None:
        """
        The end of a turn: the latest ping still to answer, taken.
        """
        self.pings = 0
        return self.last_ping()

    def hold(self, data: bytes) -> None:
        """
        Keep C{data} (read while waiting) for the next turn, in order, on
        the connection's account, and stop reading meanwhile.
        """
        if self._account.hold(len(data)):
            self._held += data
        self._transport.pauseProducing()

    def wait(self, rest: bytes | None) -> None:
        """
        The turn is used: the rest waits for the next one, and the
        connection stops reading meanwhile.
        """
        self.waiting = True
        if rest:
            self.hold(rest)
        else:
            self._transport.pauseProducing()
        self._scheduler.wait(self._resume)

    def next(self) -> None:
        """
        The connection's next turn begins.
        """
        self.waiting = False
        self.left = TURN_WORK

    def take_held(self) -> bytes:
        """
        What was held for this turn, taken off the account.
        """
        data, self._held = self._held, b""
        self._account.release(len(data))
        return data

    def stop(self) -> None:
        """
        What waited for a turn is dropped, and reads are handled at once.
        """
        self.waiting = False
        self._account.release(len(self._held))
        self._held = b""
