"""
Fair CPU: every connection's work is done in turns of bounded size, and a
connection that has used its turn waits while the others go first.

The reactor has one thread: a connection whose read is handled in one go
holds every other connection for as long as its read takes. A compressed
message of 16 KiB can inflate to 16 MiB (some 100 ms to inflate, check and
compress again), a read of 256 KiB can hold 40,000 empty frames. So the
echo counts the work of a read as it goes (bytes, frames, inflated bytes:
L{TURN_WORK} a turn, some 2 to 10 ms of CPU) and stops when its turn is
used: what is left waits, the connection stops reading from its socket,
and the L{Scheduler} gives it its next turn after the reactor has served
everyone else once (a round robin, one turn each per reactor iteration).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from time import monotonic

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from wsecho.wire.frames import FRAME_WORK

# The work of a turn, in bytes (a frame costs FRAME_WORK bytes more than
# its payload): 256 KiB of plain echo, or 512 frames.
TURN_WORK = 256 * 1024

__all__ = ["FRAME_WORK", "TURN_WORK", "Scheduler"]


class Scheduler:
    """
    The connections waiting for their next turn, served in order, one turn
    each per reactor iteration. C{throttled} is told the seconds each
    waited.
    """

    _log = Logger()

    def __init__(self, clock: IReactorTime, throttled: Callable[[float], None]) -> None:
        self._clock = clock
        self._throttled = throttled
        self._waiting: deque[tuple[float, Callable[[], None]]] = deque()
        self._call: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._waiting)

    def wait(self, turn: Callable[[], None]) -> None:
        """
        Call C{turn} once every connection now waiting has had its turn.
        """
        self._waiting.append((monotonic(), turn))
        if self._call is None:
            self._call = self._clock.callLater(0, self._serve)

    def _serve(self) -> None:
        # The turns of those waiting now; a connection that uses its turn
        # again waits again, behind them, for the next iteration (the
        # reactor reads its sockets in between).
        self._call = None
        waiting = self._waiting
        now = monotonic()
        for _ in range(len(waiting)):
            since, turn = waiting.popleft()
            self._throttled(now - since)
            try:
                turn()
            except Exception:
                # One connection's failure must not stop the others' turns.
                self._log.failure("a connection's turn failed")
        if waiting and self._call is None:
            self._call = self._clock.callLater(0, self._serve)

    def stop(self) -> None:
        """
        Forget those waiting (the process stops).
        """
        self._waiting.clear()
        if self._call is not None:
            self._call.cancel()
            self._call = None
