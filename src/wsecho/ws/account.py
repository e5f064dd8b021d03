"""
A connection's account with the process's memory budget: what it holds for
its client (the message Autobahn assembles, a frame the fast path waits to
have whole, echoes waiting in a write buffer the client does not empty),
its fixed costs (L{wsecho.ws.costs}), and what its client sent and when
(what the budget's eviction ranks by), taken from and given back to
L{wsecho.ws.budget.MemoryBudget}.
"""

from __future__ import annotations

from collections.abc import Callable

from wsecho.ws.budget import Holder, MemoryBudget


class Account:
    """
    One connection's holdings; the budget's holder, which it evicts when it
    needs what the account holds.
    """

    def __init__(
        self,
        budget: MemoryBudget | None,
        evicted: Callable[[], None],
        now: Callable[[], float],
    ):
        # None: no budget (--memory-budget 0), nothing is counted.
        self._budget = budget
        self._evicted = evicted
        self._now = now
        # Of what is held: the unfinished message, unread echoes, and the
        # connection's fixed costs.
        self._message = 0
        self._writes = 0
        self._fixed = 0
        # Bytes the client sent, and when it last sent any.
        self.sent = 0
        self.progressed_at = now()

    def received(self, size: int) -> None:
        """
        The client sent C{size} bytes (a read).
        """
        self.sent += size
        self.progressed_at = self._now()

    def opened(self) -> None:
        """
        The WebSocket is open: what ranks it from now on is what its client
        sends on it, not its upgrade request (a request of 200 bytes that
        bought 57 KiB of zlib state has not paid for them).
        """
        self.sent = 0
        self.progressed_at = self._now()

    def admit(self, size: int, push: bool = False) -> bool:
        """
        Count a fixed cost of C{size} bytes if the budget can afford it
        (with C{push}, by evicting holders that rank badly enough: see
        L{MemoryBudget.admit}); L{False} (nothing counted) if it cannot.
        """
        budget = self._budget
        if budget is None:
            return True
        if not budget.admit(self, size, push):
            return False
        self._fixed += size
        return True

    def adopt(self, holder: Holder, fixed: int) -> None:
        """
        Take over what C{holder} (the HTTP channel this connection was)
        holds, C{fixed} bytes of fixed costs.
        """
        if self._budget is not None:
            self._budget.move(holder, self)
            self._fixed += fixed

    def refund(self, size: int) -> None:
        """
        A fixed cost is C{size} bytes lower (a TLS handshake is done).
        """
        size = min(size, self._fixed)
        if self._budget is not None and size > 0:
            self._fixed -= size
            self._budget.give(self, size, fixed=True)

    def hold(self, size: int) -> bool:
        """
        Count C{size} more bytes held; L{False} if the budget evicted this
        account for them (the connection is closing).
        """
        budget = self._budget
        return budget is None or budget.take(self, size)

    def release(self, size: int) -> None:
        if self._budget is not None:
            self._budget.give(self, size)

    def hold_message(self, size: int) -> bool:
        """
        C{size} more bytes of the message under way (after inflation).
        """
        self._message += size
        return self.hold(size)

    def message_done(self) -> None:
        # Echoed or refused: the message is the write buffer's now.
        if self._message:
            self.release(self._message)
            self._message = 0

    def hold_writes(self, buffered: int) -> None:
        """
        C{buffered} bytes wait in the write buffer (the client is not
        reading): count what is there until it has drained.
        """
        if buffered > self._writes:
            more, self._writes = buffered - self._writes, buffered
            self.hold(more)

    def writes_drained(self) -> None:
        if self._writes:
            self.release(self._writes)
            self._writes = 0

    def close(self) -> None:
        """
        Give back everything held.
        """
        self._message = self._writes = 0
        budget = self._budget
        if budget is not None:
            if self._fixed:
                budget.give(self, self._fixed, fixed=True)
                self._fixed = 0
            budget.give_all(self)

    def evict(self) -> None:
        # The budget's call (it stops counting this account's bytes itself).
        self._message = self._writes = self._fixed = 0
        self._evicted()
