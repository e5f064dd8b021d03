"""
Backpressure for an echo: it writes as much as it reads, so a client that
sends without reading would fill the server's memory with its echoes.

The echo protocol becomes its transport's producer. When the transport's
write buffer passes its high-water mark (Twisted's C{bufferSize}, set to
L{READ_SIZE}) the transport pauses it and it stops reading from the socket;
once the buffer has drained the transport resumes it and it reads again.
The kernel's buffers then push back on the client. A client still paused
after the slow-client timeout is closed with 1008.

What a connection holds for its client (frames and messages it waits to
have whole, echoes its client leaves unread) counts against the process's
memory budget (L{wsecho.ws.budget}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from autobahn.twisted.websocket import WebSocketServerProtocol
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from wsecho._compat import write_buffered
from wsecho.ws.budget import MemoryBudget

# How much is read from a socket at a time, and how much may wait in a
# connection's write buffer before the echo stops reading from its client.
# Twisted reads 64 KiB at a time: a 64 KiB message then takes two reads and
# two passes. asyncio reads 256 KiB; so do we.
READ_SIZE = 256 * 1024

POLICY_VIOLATION = 1008

if TYPE_CHECKING:
    _Base = WebSocketServerProtocol
else:
    _Base = object


@implementer(IPushProducer)
class Backpressure(_Base):
    """
    The producer half of an echo protocol, and its share of the budget.
    """

    _log = Logger()
    _slow_timer: IDelayedCall | None = None
    # The process's memory budget, and what this connection holds of it.
    _budget: MemoryBudget | None = None
    _held_message = 0
    _held_write = 0
    # Paused by the transport: the client is not reading its echoes.
    _paused = False
    client_address = "-"

    def take_producer(self) -> None:
        """
        Become the transport's producer. twisted.web's HTTPChannel
        registered itself and stays registered after Autobahn takes the
        transport over, but it pauses nothing while a request is in
        progress (the upgrade request never ends).
        """
        transport: Any = self.transport
        transport.unregisterProducer()
        transport.registerProducer(self, True)
        transport.bufferSize = READ_SIZE
        if self.factory.budget.limit:
            self._budget = self.factory.budget

    def pauseProducing(self) -> None:
        # TCP transports stop reading; TLS passes it on to the TCP one.
        self._paused = True
        cast(Any, self.transport).pauseProducing()
        if self._budget is not None:
            self.hold_write()
        timeout = self.factory.slow_client_timeout
        if timeout and self._slow_timer is None:
            self._slow_timer = self.factory.reactor.callLater(timeout, self._too_slow)

    def resumeProducing(self) -> None:
        # The write buffer is empty (Twisted resumes its producer then).
        self._paused = False
        if self._held_write:
            self.release(self._held_write)
            self._held_write = 0
        if self._slow_timer is not None:
            self._slow_timer.cancel()
            self._slow_timer = None
        cast(Any, self.transport).resumeProducing()

    def stopProducing(self) -> None:
        if self._slow_timer is not None:
            self._slow_timer.cancel()
            self._slow_timer = None

    def _too_slow(self) -> None:
        self._slow_timer = None
        self._log.info(
            "closing {client}: it did not read its echoes for {timeout} s",
            client=self.client_address,
            timeout=self.factory.slow_client_timeout,
        )
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(
                code=POLICY_VIOLATION, reasonUtf8=b"client too slow", isReply=False
            )
            # Read again, to see the client's close frame should it catch
            # up; messages after our close frame are not echoed.
            cast(Any, self.transport).resumeProducing()
        else:
            self.dropConnection(abort=True)

    def evict(self) -> None:
        """
        The budget needs what this connection holds: let go of it.
        """
        raise NotImplementedError

    def hold(self, size: int) -> bool:
        """
        Count C{size} more bytes held; L{False} if the budget closed this
        connection for them.
        """
        budget = self._budget
        return budget is None or budget.take(self, size)

    def release(self, size: int) -> None:
        if self._budget is not None:
            self._budget.give(self, size)

    def release_all(self) -> None:
        self._held_message = self._held_write = 0
        if self._budget is not None:
            self._budget.give_all(self)

    def hold_write(self) -> None:
        """
        Echoes wait in the write buffer (we are paused): count what is
        there until it has drained.
        """
        buffered = write_buffered(self.transport)
        if buffered > self._held_write:
            more, self._held_write = buffered - self._held_write, buffered
            self.hold(more)
