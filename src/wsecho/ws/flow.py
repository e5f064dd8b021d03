"""
Flow control for an echo: it writes as much as it reads, so a client that
sends without reading would fill the server's memory with its echoes.

L{FlowControl} is its transport's producer. When the transport's write
buffer passes its high-water mark (set to L{READ_SIZE}) the transport
pauses it and it stops reading from the socket; once the buffer has
drained the transport resumes it and it reads again. The kernel's buffers
then push back on the client. Echoes waiting meanwhile count on the
connection's account; a client still not reading after the slow-client
timeout is reported (the protocol closes it with 1008).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

from wsecho._compat.twisted import resume_reading, set_high_water, write_buffered
from wsecho.ws.account import Account

# How much is read from a socket at a time, and how much may wait in a
# connection's write buffer before the echo stops reading from its client.
# Twisted reads 64 KiB at a time: a 64 KiB message then takes two reads and
# two passes. asyncio reads 256 KiB; so do we.
READ_SIZE = 256 * 1024


@implementer(IPushProducer)
class FlowControl:
    """
    The producer of an echo connection's transport.
    """

    def __init__(
        self,
        transport: Any,
        account: Account,
        clock: IReactorTime,
        slow_client_timeout: float,
        too_slow: Callable[[], None],
    ) -> None:
        self._transport: Any = transport
        self._account: Any = account
        self._clock = clock
        self._timeout = slow_client_timeout
        self._too_slow: Any = too_slow
        self._timer: IDelayedCall | None = None
        # Paused by the transport: the client is not reading its echoes.
        self.paused = False

    def start(self) -> None:
        """
        Become the transport's producer. twisted.web's HTTPChannel
        registered itself and stays registered after Autobahn takes the
        transport over, but it pauses nothing while a request is in
        progress (the upgrade request never ends).
        """
        transport = self._transport
        transport.unregisterProducer()
        transport.registerProducer(self, True)
        set_high_water(transport, READ_SIZE)

    def wrote(self) -> None:
        """
        An echo was written: while paused, it waits in the write buffer.
        """
        if self.paused:
            self._account.hold_writes(write_buffered(self._transport))

    def read_again(self) -> None:
        """
        Read from the client although its echoes wait (to see its close
        frame after ours).
        """
        resume_reading(self._transport)

    def pauseProducing(self) -> None:
        # TCP transports stop reading; TLS passes it on to the TCP one.
        self.paused = True
        self._transport.pauseProducing()
        self._account.hold_writes(write_buffered(self._transport))
        if self._timeout and self._timer is None:
            self._timer = self._clock.callLater(self._timeout, self._expired)

    def resumeProducing(self) -> None:
        # The write buffer is empty (Twisted resumes its producer then).
        self.paused = False
        self._account.writes_drained()
        self.stopProducing()
        resume_reading(self._transport)

    def stopProducing(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def forget(self) -> None:
        """
        The connection is gone: let go of it (the transport keeps its
        producer, and the producer's references would keep the protocol
        until a full garbage collection).
        """
        self.stopProducing()
        self._transport = self._account = self._too_slow = None

    def _expired(self) -> None:
        self._timer = None
        self._too_slow()
