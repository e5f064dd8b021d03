"""
One memory budget for the whole process (C{--memory-budget}).

Every connection is bounded on its own (message and frame size limits,
backpressure), but ten thousand connections each holding an unfinished
16 MiB message are 160 GiB. The budget counts what wsecho holds for each
client: the buffers (unfinished messages after inflation, frames the fast
path waits to have whole, echoes and HTTP answers waiting in a write buffer
the client does not empty, with what each read costs on top of its bytes)
and the connection's fixed cost (its socket, its TLS state, its WebSocket
protocol, its zlib state each way: see L{wsecho.ws.costs}). Not RSS: what
the allocator does with freed memory is not a client's doing.

The rank: what a holder holds for each byte its client actually sent
(amplification: 1 MiB inflated from a 1 KiB fragment ranks a thousand
times worse than 1 MiB sent as 1 MiB), times one plus the seconds since its
client last sent anything (stall). A client sending a large message at
full speed holds about what it sent and sent something a moment ago: it
ranks near 1. Inflated partial messages, messages stopped half-way, echoes
not read, silent connections rank far worse, and the worse the longer
they wait.

Eviction, when a holder needs more buffers than what is left: the holders
of buffers are ranked by their buffers alone, and the worst ranked gives
way: if that is the one asking, it is closed with 1013 (try again later);
otherwise that holder is closed and the one asking goes on, until the
process is back within the budget.

Admission: a fixed cost is taken only if it fits. A new connection (its
socket and TLS handshake, then its WebSocket) makes room by evicting,
worst ranked first, holders of buffers and holders ranked 1000 or worse
(silent or long idle connections), never a connection that holds only
its own fixed cost and uses it; if that does not make room it is refused
(closed at once before any HTTP, 503 for the upgrade). A
permessage-deflate negotiation that does not fit is degraded: 101 without
compression.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import islice
from typing import Protocol

from wsecho.settings import DEFAULT_BUDGET, MiB

# Releases of at least this much, or fixed costs of closed connections
# adding up to it, call the budget's on_release (a heap trim).
LARGE_RELEASE = MiB


# How badly a holder must rank for a new connection to push it out when
# the budget is full: a thousand times what its client sent, or as much
# per second it has stalled. Silent connections (their fixed cost for no
# byte), inflated partial messages that stopped, and long idle connections
# rank so; a client sending at full speed ranks near 1.
PUSH_RANK = 1000.0
# How many of the oldest holders, and of the oldest holders of buffers, a
# new connection looks at for one to push out.
PUSH_SCAN = 64


class Holder(Protocol):
    # Bytes the holder's client has sent, and when it last sent any (on
    # the budget's clock): what the eviction ranks by.
    @property
    def sent(self) -> int: ...

    @property
    def progressed_at(self) -> float: ...

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
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        # Called when a holder gives back LARGE_RELEASE bytes or more, and
        # when the fixed costs given back add up to as much.
        self.on_release = on_release
        self.now = now
        self.used = 0
        # Connections closed to stay within the budget, and fixed costs
        # refused for want of room.
        self.evictions = 0
        self.refusals = 0
        self._held: dict[Holder, int] = {}
        # Of what each holds, its fixed costs (the rest is buffers); those
        # that hold buffers, oldest first.
        self._fixed: dict[Holder, int] = {}
        self._buffered: dict[Holder, None] = {}
        # Fixed costs given back since on_release was last called for them.
        self._released = 0

    def held(self, holder: Holder) -> int:
        return self._held.get(holder, 0)

    def rank(self, holder: Holder, now: float, buffers: bool = False) -> float:
        """
        How badly C{holder} uses the budget: what it holds (with
        C{buffers}, of buffers only) per byte its client sent, times one
        plus the seconds it has stalled.
        """
        held = self._held.get(holder, 0)
        if buffers:
            held -= self._fixed.get(holder, 0)
        amplification = held / max(holder.sent, 1)
        return amplification * (1.0 + max(0.0, now - holder.progressed_at))

    def take(self, holder: Holder, size: int) -> bool:
        """
        Count C{size} more bytes for C{holder}. L{False} when the budget
        would not have them and C{holder} was evicted for it.
        """
        held = self._held.get(holder, 0) + size
        self._held[holder] = held
        self._buffered[holder] = None
        self.used += size
        if self.limit and self.used > self.limit:
            now = self.now()
            while self.used > self.limit:
                # Buffers are what can give way to buffers: a connection's
                # fixed cost is a few KiB, admitted when it came.
                worst = max(
                    self._buffered, key=lambda h: self.rank(h, now, buffers=True)
                )
                self._evict(worst)
                if worst is holder:
                    return False
        return True

    def admit(self, holder: Holder, size: int, push: bool = False) -> bool:
        """
        Count a fixed cost of C{size} bytes for C{holder} if it fits in
        what is left; L{False} (nothing counted) if it does not. With
        C{push}, holders of buffers, and holders ranked L{PUSH_RANK} or
        worse, are evicted to make room, the worst ranked first: a new
        connection's few KiB come before buffers, but not at the expense of
        the connections that only hold their own fixed cost and use it.
        """
        limit = self.limit
        if limit and self.used + size > limit and push:
            now = self.now()
            while self.used + size > limit:
                worst = self._pushable(holder, now)
                if worst is None:
                    break
                self._evict(worst)
        if limit and self.used + size > limit:
            self.refusals += 1
            return False
        self._held[holder] = self._held.get(holder, 0) + size
        self._fixed[holder] = self._fixed.get(holder, 0) + size
        self.used += size
        return True

    def _pushable(self, holder: Holder, now: float) -> Holder | None:
        """
        The worst ranked of the holders a new connection may push out, among
        the PUSH_SCAN oldest holders of buffers and the PUSH_SCAN oldest
        holders (dicts keep their order): a flood of connections costs each
        of them a bounded look, and the oldest are those that have stalled
        longest or that progress.
        """
        worst, worst_rank = None, -1.0
        for h in islice(self._buffered, PUSH_SCAN):
            rank = self.rank(h, now)
            if h is not holder and rank > worst_rank:
                worst, worst_rank = h, rank
        for h in islice(self._held, PUSH_SCAN):
            rank = self.rank(h, now)
            if h is not holder and rank >= PUSH_RANK and rank > worst_rank:
                worst, worst_rank = h, rank
        return worst

    def move(self, source: Holder, target: Holder) -> None:
        """
        What C{source} holds is C{target}'s now (a connection upgraded to
        a WebSocket: the protocol takes over its channel's costs).
        """
        held = self._held.pop(source, 0)
        if held:
            self._held[target] = self._held.get(target, 0) + held
        fixed = self._fixed.pop(source, 0)
        if fixed:
            self._fixed[target] = self._fixed.get(target, 0) + fixed
        if self._buffered.pop(source, 0) is None:
            self._buffered[target] = None

    def give(self, holder: Holder, size: int, fixed: bool = False) -> None:
        """
        C{holder} no longer holds C{size} of its bytes (C{fixed}: a fixed
        cost, of a connection that closed).
        """
        held = self._held.get(holder, 0)
        size = min(size, held)
        if not size:
            return
        self.used -= size
        if held == size:
            del self._held[holder]
            self._fixed.pop(holder, None)
            self._buffered.pop(holder, None)
        else:
            self._held[holder] = held - size
        if not fixed:
            if held - size <= self._fixed.get(holder, 0):
                self._buffered.pop(holder, None)
        else:
            if holder in self._fixed:
                left = self._fixed[holder] - size
                if left > 0:
                    self._fixed[holder] = left
                else:
                    del self._fixed[holder]
            # Many connections' small costs are many small frees: their
            # memory goes back to the system only with a trim.
            self._released += size
            if self._released < LARGE_RELEASE:
                return
            size, self._released = self._released, 0
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
