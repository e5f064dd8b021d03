"""
One run of wsecho-client: its connection (and, with --reconnect, the next
ones), the messages sent and their echoes checked, pings, and how it ends.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from wsecho._compat.autobahn import drop
from wsecho._compat.autobahn_client import closed_by_me
from wsecho.client.diagnose import connect_error, handshake_error
from wsecho.client.output import (
    EXIT_CLOSED,
    EXIT_INTERRUPTED,
    EXIT_MISMATCH,
    EXIT_OK,
    EXIT_TIMEOUT,
    PROGRESS_EVERY,
    ClientError,
    Config,
    Message,
    Output,
    Ping,
    Stats,
)

if TYPE_CHECKING:
    from wsecho.client.protocol import EchoClientProtocol

# --reconnect: the first wait, doubled at each failed attempt up to the cap.
RECONNECT_FIRST = 0.5
RECONNECT_MAX = 8.0


class Session:
    """
    One run: send the messages one at a time, compare each echo with what
    was sent, close when there is nothing more to send, and fire C{done}
    with an exit code or fail it with a L{ClientError}.

    Messages come from the command line, or (--interactive) from stdin as
    it is read, which may be before the connection is open. C{connect}
    opens a connection whose protocol reports back here; with --reconnect
    it is called again after a lost connection.
    """

    def __init__(
        self,
        config: Config,
        clock: IReactorTime,
        output: Output,
        connect: Callable[[], defer.Deferred[Any]] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.output = output
        self.connect = connect
        self.done: defer.Deferred[int] = defer.Deferred()
        self.protocol: EchoClientProtocol | None = None
        self.pending: deque[Message | Ping] = deque(
            m for m in config.messages for _ in range(config.count)
        )
        self.input_done = not config.interactive
        self.expected: Message | Ping | None = None
        self.result: int | None = None
        self.timer = clock.callLater(config.timeout, self._timed_out, "connecting")
        self.stats = Stats()
        self.total = len(self.pending)
        self.progress: Any = None
        # /close CODE REASON, and pings sent (payload: when) for /ping.
        self.close_with: tuple[int, str | None] = (1000, None)
        self.pings: dict[bytes, float] = {}
        self.keepalive: task.LoopingCall | None = None
        self.keepalives = 0
        # --reconnect: attempts since something last came back.
        self.attempt = 0
        self.was_open = False
        self.waiting: Any = None
        self.reported = False
        self.interrupted = False
        self.dropped = False
        # Where the HTTP proxy is, if there is one, for connection errors.
        self.proxy_address: str | None = None

    def start(self) -> None:
        assert self.connect is not None
        try:
            connecting = self.connect()
        except ClientError as e:  # options that cannot be used (--cafile...)
            self.timer.cancel()
            self._fail(e)
            return
        connecting.addErrback(self.connect_failed)

    def submit(self, message: Message) -> None:
        if not self.input_done:
            self.pending.append(message)
            self._pump()

    def end_of_input(self, code: int = 1000, reason: str | None = None) -> None:
        if not self.input_done:
            self.close_with = (code, reason)
        self.input_done = True
        self._pump()

    def ping(self, data: bytes = b"") -> None:
        """
        Send a ping after what was submitted before it; its pong is printed
        with the round trip.
        """
        if not self.input_done:
            self.pending.append(Ping(data or b"%d" % len(self.pending)))
            self._pump()

    def ponged(self, payload: bytes) -> None:
        sent = self.pings.pop(payload, None)
        if sent is None:
            return  # not ours (an unsolicited pong)
        self.attempt = 0
        self.output.pong(len(payload), time.perf_counter() - sent)
        if (
            isinstance(self.expected, Ping)
            and self.expected.data == payload
            and self.result is None
        ):
            self.timer.cancel()
            self.expected = None
            self._pump()

    def pinged(self, payload: bytes) -> None:
        if self.config.show_ping:
            self.output.server_ping(payload)

    def opened(self, protocol: EchoClientProtocol) -> None:
        self.protocol = protocol
        self.timer.cancel()
        self.output.connected(
            self.config.url,
            protocol.websocket_protocol_in_use,
            [e.EXTENSION_NAME for e in protocol.websocket_extensions_in_use],
        )
        if not self.was_open:
            self.was_open = True
            self.stats.start()
            if self.config.count > 1:
                self.progress = self.clock.callLater(PROGRESS_EVERY, self._progress)
        if self.config.ping_interval:
            self.keepalive = task.LoopingCall(self._keepalive)
            self.keepalive.clock = self.clock
            self.keepalive.start(self.config.ping_interval, now=False)
        self._pump()

    def _keepalive(self) -> None:
        """
        --ping-interval: ping, unless the last one is unanswered after
        --timeout (the connection is then dead).
        """
        now = time.perf_counter()
        if any(now - sent > self.config.timeout for sent in self.pings.values()):
            self._timed_out("waiting for a pong")
            return
        if self.protocol is not None:
            self.keepalives += 1
            data = b"keepalive %d" % self.keepalives
            self.pings[data] = now
            self.protocol.sendPing(data)

    def _progress(self) -> None:
        """
        Every second of a --count run: how far it is, on stderr (rewritten
        in place on a terminal).
        """
        line = f"{self.stats.messages}/{self.total} messages, {self.stats.rate():.0f}/s"
        if self.output.err.isatty():
            print(f"\r{line}", end="", file=self.output.err, flush=True)
        else:
            print(line, file=self.output.err, flush=True)
        self.progress = self.clock.callLater(PROGRESS_EVERY, self._progress)

    def _stop_timers(self) -> None:
        if self.progress is not None and self.progress.active():
            self.progress.cancel()
            if self.output.err.isatty():
                print(file=self.output.err)
        if self.keepalive is not None and self.keepalive.running:
            self.keepalive.stop()
        if self.waiting is not None and self.waiting.active():
            self.waiting.cancel()

    def _report(self) -> None:
        self._stop_timers()
        if self.was_open and not self.reported:
            self.reported = True
            self.output.summary(self.stats.summary())

    def _pump(self) -> None:
        if (
            self.protocol is None
            or self.expected is not None
            or self.result is not None
        ):
            return
        if self.pending:
            self.expected = self.pending.popleft()
            if isinstance(self.expected, Ping):
                self.timer = self.clock.callLater(
                    self.config.timeout, self._timed_out, "waiting for a pong"
                )
                self.pings[self.expected.data] = time.perf_counter()
                self.protocol.sendPing(self.expected.data)
                return
            self.timer = self.clock.callLater(
                self.config.timeout, self._timed_out, "waiting for an echo"
            )
            self.stats.sent()
            self.protocol.sendMessage(self.expected.payload, self.expected.binary)
            if not self.config.check and self.config.interactive:
                # Nothing to wait for: anything may come, or nothing.
                self.timer.cancel()
                self.expected = None
                self._pump()
        elif self.input_done:
            self._report()
            self._finish(EXIT_OK)

    def received(self, message: Message) -> None:
        latency = self.stats.echoed(len(message.payload))
        # The connection works: --reconnect counts failed attempts from here
        # (not from the opening, or a server that accepts and closes at
        # once would be tried forever).
        self.attempt = 0
        self.output.echo(message, latency)
        if (
            self.expected is None
            or isinstance(self.expected, Ping)
            or self.result is not None  # closing: what was in flight
        ):
            return
        self.timer.cancel()
        if self.config.check and message != self.expected:
            self.output.notice(
                f"wsecho-client: echo mismatch: sent {self.expected.describe()}"
            )
            self._report()
            self._finish(EXIT_MISMATCH)
            return
        self.expected = None
        self._pump()

    def _finish(self, code: int) -> None:
        """
        Close the connection cleanly; C{done} fires once it is closed.
        """
        assert self.protocol is not None
        self.result = code
        close_code, reason = self.close_with if code == EXIT_OK else (1000, None)
        self.protocol.sendClose(close_code, reason)

    def interrupt(self) -> None:
        """
        Ctrl-C: close with 1000 at once, as the user's choice; a second
        Ctrl-C (or one before the connection is open) stops without waiting.
        """
        if self.done.called:
            return
        if self.interrupted or self.protocol is None:
            self._report()
            self._drop()
            self._fail(ClientError(EXIT_INTERRUPTED, "interrupted (Ctrl-C)"))
            return
        self.interrupted = True
        if self.timer.active():
            self.timer.cancel()
        self._report()
        self.result = EXIT_OK if self.config.interactive else EXIT_INTERRUPTED
        self.protocol.sendClose(1000)

    def _drop(self) -> None:
        if self.protocol is not None:
            self.dropped = True
            drop(self.protocol, abort=True)

    def _timed_out(self, doing: str) -> None:
        self._report()
        self._fail(
            ClientError(
                EXIT_TIMEOUT, f"timed out after {self.config.timeout:g} s {doing}"
            )
        )
        self._drop()

    def _fail(self, reason: Exception) -> None:
        self._stop_timers()
        if not self.done.called:
            self.done.errback(reason)

    def _retry(self, why: str) -> bool:
        """
        --reconnect: after a lost connection, try again after a wait that
        doubles at each failed attempt, at most C{config.reconnect} times in
        a row. Whatever was in flight is sent again.
        """
        if (
            not self.was_open
            or self.attempt >= self.config.reconnect
            or self.result is not None
            or self.interrupted
            or self.done.called
        ):
            return False
        self.attempt += 1
        delay = min(RECONNECT_FIRST * 2 ** (self.attempt - 1), RECONNECT_MAX)
        self.output.reconnecting(why, delay, self.attempt, self.config.reconnect)
        if self.expected is not None:
            if isinstance(self.expected, Ping):
                self.pings.pop(self.expected.data, None)
            self.pending.appendleft(self.expected)
            self.expected = None
        self.pings.clear()

        def again() -> None:
            self.timer = self.clock.callLater(
                self.config.timeout, self._timed_out, "connecting"
            )
            self.start()

        self.waiting = self.clock.callLater(delay, again)
        return True

    def connect_failed(self, reason: Failure) -> None:
        if self.timer.active():
            self.timer.cancel()
        error = connect_error(reason, self.config.url, self.proxy_address)
        if not self._retry(str(error)):
            self._fail(error)

    def closed(
        self,
        protocol: EchoClientProtocol,
        wasClean: bool,
        code: int | None,
        reason: str | None,
    ) -> None:
        if self.timer.active():
            self.timer.cancel()
        if self.keepalive is not None and self.keepalive.running:
            self.keepalive.stop()
        if self.done.called:
            return
        if protocol is not self.protocol:
            error = handshake_error(protocol, self.config.url)
            if not self._retry(str(error)):
                self._fail(error)
            return
        self.protocol = None
        by = "client" if closed_by_me(protocol) or self.dropped else "server"
        detail = f"code {code}" + (f", {reason}" if reason else "")
        ends = self.result is not None or (not self.config.check and wasClean)
        if (
            not ends
            and by == "server"
            and self._retry(f"connection closed by the server ({detail})")
        ):
            self.output.closed(code, reason, by, wasClean, "")
            return
        self._report()
        self.output.closed(
            code, reason, by, wasClean, "Ctrl-C" if self.interrupted else ""
        )
        if self.result == EXIT_INTERRUPTED:
            self._fail(
                ClientError(
                    EXIT_INTERRUPTED,
                    f"interrupted (Ctrl-C) after {self.stats.messages} of "
                    f"{self.total} echoes",
                )
            )
        elif self.result is not None:
            # We closed: every echo so far was checked, whether or not the
            # server completed the closing handshake.
            self.done.callback(self.result)
        elif not self.config.check and wasClean:
            # A general client: the server closing cleanly is the end.
            self.done.callback(EXIT_OK)
        else:
            self._fail(
                ClientError(EXIT_CLOSED, f"connection closed by the server ({detail})")
            )
