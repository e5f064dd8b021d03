"""
One memory budget for the whole process (C{--memory-budget}).

Every connection is bounded on its own (message and frame size limits,
backpressure), but ten thousand connections each holding an unfinished
16 MiB message are 160 GiB. The budget counts the bytes held for clients
where they are buffered: unfinished messages after inflation, frames the
fast path waits to have whole, echoes and HTTP answers waiting in a write
buffer the client does not empty. Not RSS: what the allocator does with
freed memory is not a client's doing.

The policy, when a holder needs more than what is left: the holder that
holds the most gives way. If that is the one asking (or one holding no
more than it), it is closed with 1013 (try again later); otherwise the
largest holder is closed and the one asking goes on. So one connection can
never take the budget from many small ones, small echoes keep flowing, and
the process stays within the budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from wsecho.settings import DEFAULT_BUDGET, MiB

# Releases of at least this much call the budget's on_release.
LARGE_RELEASE = MiB


class Holder(Protocol):
    def evict(self) -> None:
        """
        Give back everything held (calling L{MemoryBudget.give_all}) and
        close: the budget needs it.
        """


class MemoryBudget:
    """
    Bytes held for clients in this process, against a limit (0: none).
    """

    def __init__(
        self,
        limit: int = DEFAULT_BUDGET,
        on_release: Callable[[], None] | None = None,
    ) -> None:
        self.limit = limit
        # Called when a holder gives back LARGE_RELEASE bytes or more.
        self.on_release = on_release
        self.used = 0
        # Connections closed to stay within the budget.
        self.evictions = 0
        self._held: dict[Holder, int] = {}

    def held(self, holder: Holder) -> int:
        return self._held.get(holder, 0)

    def take(self, holder: Holder, size: int) -> bool:
        """
        Count C{size} more bytes for C{holder}. L{False} when the budget
        would not have them and C{holder} was evicted for it.
        """
        held = self._held.get(holder, 0) + size
        self._held[holder] = held
        self.used += size
        while self.limit and self.used > self.limit:
            largest = max(self._held, key=self._held.__getitem__)
            if largest is holder or self._held[largest] <= self._held.get(holder, 0):
                self._evict(holder)
                return False
            self._evict(largest)
        return True

    def give(self, holder: Holder, size: int) -> None:
        """
        C{holder} no longer holds C{size} of its bytes.
        """
        held = self._held.get(holder, 0)
        size = min(size, held)
        if not size:
            return
        self.used -= size
        if held == size:
            del self._held[holder]
        else:
            self._held[holder] = held - size
        if size >= LARGE_RELEASE and self.on_release is not None:
            self.on_release()

    def give_all(self, holder: Holder) -> None:
        self.give(holder, self._held.get(holder, 0))

    def _evict(self, holder: Holder) -> None:
        self.evictions += 1
        try:
            holder.evict()
        finally:
            # Whatever the holder did, its bytes are no longer counted.
            self.give_all(holder)
