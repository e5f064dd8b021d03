"""
Progress deadlines for unfinished messages (C{--message-min-rate} over
C{--message-window}).

A connection that begins a fragmented message, then sends a byte every few
seconds and answers every ping, passes every other deadline: the ping
timeout sees traffic, the slow-client timer sees a client that reads. A
hundred of them held C{--max-connections 100} for as long as they liked.
So a message under way (fragments Autobahn assembles, or a frame the fast
path waits to have whole) must go on: in each window after it began, its
client must send at least the minimum rate times the window, or the
connection is closed with 1008. Honest clients send a message as fast as
their link allows, far above the default of 1 KiB/s.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from wsecho.ws.account import Account


class ProgressDeadline:
    """
    One connection's deadline: armed when a message begins, checked once a
    window while one is unfinished.
    """

    def __init__(
        self,
        clock: IReactorTime,
        account: Account,
        min_rate: float,
        window: float,
        unfinished: Callable[[], bool],
        too_slow: Callable[[], None],
    ) -> None:
        self._clock = clock
        self._account = account
        # 0 for either: no deadline.
        self._least = int(min_rate * window) if min_rate > 0 and window > 0 else 0
        self._window = window
        self._unfinished = unfinished
        self._too_slow = too_slow
        self._call: IDelayedCall | None = None
        # What the client had sent when the window began.
        self._mark = 0

    def watch(self) -> None:
        """
        A message is under way: check its progress a window from now,
        unless already watched.
        """
        if self._call is None and self._least:
            self._mark = self._account.sent
            self._call = self._clock.callLater(self._window, self._check)

    def _check(self) -> None:
        self._call = None
        if not self._unfinished():
            return  # done: the next message is watched when it begins
        if self._account.sent - self._mark < self._least:
            self._too_slow()
            return
        self.watch()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
