"""
The echo: an Autobahn server protocol that sends every message back with
its type, and the client's close code and reason.

Its hooks delegate to parts that each own their state: L{FastPath} (bytes
in, echoes out, between messages), L{FlowControl} (the transport's
producer and the slow-client timer), L{Account} (what the connection holds
on the process's memory budget), L{ProgressDeadline} (an unfinished
message must progress), L{Turns} (its share of the reactor) and
L{CloseReport} (the summary the close line and the metrics read). What it needs of Autobahn beyond Autobahn's
public hooks goes through L{wsecho._compat.autobahn}.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from autobahn.exception import Disconnected
from autobahn.websocket.compress import PerMessageDeflateOfferAccept
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from wsecho._compat import autobahn, autobahn_closing
from wsecho._compat.twisted import can_send_now, resume_reading, send_now
from wsecho.wire.deflate import INFLATE_STEP
from wsecho.ws import costs
from wsecho.ws.account import Account
from wsecho.ws.fastpath import FastPath
from wsecho.ws.flow import FlowControl
from wsecho.ws.progress import ProgressDeadline
from wsecho.ws.report import (
    GOING_AWAY,
    MESSAGE_TOO_BIG,
    POLICY_VIOLATION,
    TRY_AGAIN_LATER,
    CloseReport,
    Described,
    describe,
)
from wsecho.ws.scheduler import FRAME_WORK
from wsecho.ws.turns import Turns

if TYPE_CHECKING:
    from wsecho.ws.factory import EchoServerFactory

# How many chunks of a message are kept apart before they are folded into
# one buffer (see EchoServerProtocol.onMessageFrame).
FOLD_CHUNKS = 64


class EchoServerProtocol(autobahn.ServerProtocol):
    """
    Send every message back as it came: text as text, binary as binary.
    """

    _log = Logger()
    factory: EchoServerFactory
    # Off where Autobahn's parser state is not what _compat knows, and for
    # --verbose (every message then goes through Autobahn's onMessage).
    fast_path = autobahn.FAST_FRAMES
    # The client's address as logged and counted for the per-address
    # limit: the peer's, or the one a trusted proxy forwarded.
    client_address = "-"
    # The HTTP version of its opening: 1.1 (an upgrade) or 2 (RFC 8441).
    http_version = "1.1"

    # The parts, made when the connection is made.
    account: Account | None = None
    flow: FlowControl | None = None
    fast: FastPath | None = None
    progress: ProgressDeadline | None = None
    turns: Turns | None = None

    # When the WebSocket opened (None: it never did), and when the current
    # message began (for the latency of messages Autobahn assembles).
    _opened_at: float | None = None
    _began = 0.0
    # Aborts a connection we closed that its peer keeps open (TLS waits for
    # the peer's close_notify, which may never come).
    _abort_timer: IDelayedCall | None = None

    # --- the connection -----------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()
        factory = self.factory
        context = factory.context
        settings = factory.settings
        budget = context.budget if context.budget.limit else None
        self.account = Account(budget, self._evicted, context.clock.seconds)
        transport: Any = self.transport
        # The HTTP channel this connection was: its costs are ours now.
        channel = context.admitted.pop(transport, None)
        if channel is not None:
            fixed = channel.hand_over()
            self.account.adopt(channel, fixed)
            if fixed > costs.TCP:
                # Over TLS, whose handshake is done (the request came in):
                # it keeps less than it needed for the handshake.
                self.account.refund(costs.TLS_HANDSHAKE - costs.TLS_SESSION)
        self.progress = ProgressDeadline(
            context.clock,
            self.account,
            settings.message_min_rate,
            settings.message_window,
            self._unfinished,
            self._stalled,
        )
        self.flow = FlowControl(
            transport,
            self.account,
            context.clock,
            settings.slow_client_timeout,
            self._too_slow,
        )
        self.flow.start()
        self.turns = Turns(transport, self.account, context.scheduler, self._turn)
        if can_send_now(transport):
            # What is written goes out at once, the fast path's echoes and
            # Autobahn's frames alike (see send_now).
            write: Any = partial(send_now, transport)
        else:
            write = transport.write
        self.write_now = self._writer(write, self.flow)
        if self.fast_path:
            self.fast = FastPath(
                write,
                self.flow,
                self.account,
                min(
                    settings.max_message_size,
                    settings.max_frame_size or settings.max_message_size,
                ),
                factory.tally,
            )
        context.registry.connected(self)

    @staticmethod
    def _writer(write: Any, flow: FlowControl) -> Any:
        def write_now(data: bytes) -> None:
            write(data)
            if flow.paused:
                flow.wrote()

        return write_now

    def dataReceived(self, data: bytes) -> None:
        """
        Echo the whole single-frame messages at the start of C{data} on the
        fast path, and hand the rest to Autobahn. The fast path runs on an
        open connection, between messages (with permessage-deflate too).
        A connection that has used its turn's share of work waits for its
        next turn, with what is left (see L{wsecho.ws.scheduler}).
        """
        account = self.account
        if account is not None:
            account.received(len(data))
        turns = self.turns
        if turns is None:
            return  # gone
        if turns.waiting:
            # Read while it waits (its flow control resumed reading): kept
            # for its turn, in order.
            turns.hold(data)
            return
        turns.begin()
        self._take(data)
        if turns.pings:  # Autobahn's path answered pings this turn
            self._end_turn()

    def _take(self, data: bytes) -> None:
        fast = self.fast
        turns = self.turns
        assert turns is not None
        if fast is None:
            self._autobahn(data)
            return
        if fast.waiting:
            whole = fast.whole(data)
            if whole is None:
                return
            data = whole
        if not autobahn.between_messages(self):
            if not autobahn.state_closed(self):
                self._autobahn(data)
            return
        read, written, count, rest, failure = fast.echo(data, turns.left)
        if rest is None and failure is None and read < len(data):
            # The start of a frame waited for until it is whole: a message
            # under way, which must progress.
            assert self.progress is not None
            self.progress.watch()
        if read:
            autobahn.count_fast(self, read, written, count)
        if fast.deflating:
            autobahn.count_deflate(self, *fast.deflated())
        if failure is not None:
            autobahn.fail(self, *failure)
        elif fast.yielded:
            turns.wait(rest)
        elif rest is not None:
            # What the fast path did counts in the turn Autobahn goes on with.
            turns.spend(read + count * FRAME_WORK)
            self._autobahn(rest)

    def _autobahn(self, data: bytes) -> None:
        fast = self.fast
        # On a compressed connection, Autobahn is given a frame at a time: a
        # large message's echo may be compressed in later turns (see _echo).
        if not autobahn.state_open(self):
            # Closing: Autobahn only looks for the peer's close frame, and
            # the close handshake's timeout bounds how long.
            autobahn.read(self, data)
            return
        rest = autobahn.read(
            self, data, self._turn_over, fast is not None and fast.deflating
        )
        if rest or (fast is not None and fast.busy):
            assert self.turns is not None
            self.turns.wait(rest)

    def _turn_over(self) -> bool:
        fast = self.fast
        turns = self.turns
        return turns is None or turns.over() or (fast is not None and fast.busy)

    def _turn(self) -> None:
        """
        The connection's next turn: go on with the compressed message under
        way, then with what was held, and read again if all is done.
        """
        transport: Any = self.transport
        turns = self.turns
        if transport is None or turns is None:
            return  # gone meanwhile
        turns.next()
        fast = self.fast
        if fast is None or not fast.busy or self._step(fast):
            data = turns.take_held()
            if data:
                self._take(data)
        self._end_turn()
        if not turns.waiting and self.flow is not None and not self.flow.paused:
            resume_reading(transport)

    def _step(self, fast: FastPath) -> bool:
        # Go on with the compressed message under way: whether it is done.
        if not autobahn.state_open(self):
            # Closing meanwhile (a shutdown): no echo after our close frame.
            fast.stop()
            return True
        turns = self.turns
        assert turns is not None
        done, written, read_here, failure = fast.step(turns.left)
        turns.spend(done)
        if read_here:
            autobahn.count_fast(self, 0, written, 1)
        elif written:
            autobahn.count_sent(self, written)
        autobahn.count_deflate(self, *fast.deflated())
        if failure is not None:
            autobahn.fail(self, *failure)
            return False
        if fast.busy:
            turns.wait(None)
            return False
        return True

    def _end_turn(self) -> None:
        if self.turns is not None:
            self._pong(self.turns.end())

    def _pong(self, ping: bytes | None) -> None:
        if ping is not None and autobahn.state_open(self):
            self.sendPong(ping)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        try:
            super().connectionLost(reason)
        finally:
            # Whatever onClose did: a connection not forgotten would hold a
            # slot, and a shutdown, for ever.
            self._forget()

    # --- Autobahn's hooks ---------------------------------------------------

    def perMessageCompressionAccept(
        self, offers: Sequence[Any]
    ) -> PerMessageDeflateOfferAccept | None:
        # A method, so that it sees the request's header (Autobahn would
        # copy the factory's function over it otherwise).
        accept = self.factory.accept_deflate
        if accept is None:
            return None
        header = self.http_headers.get("sec-websocket-extensions")
        accepted = accept(offers, header)
        if accepted is not None and self.account is not None:
            if not self.account.admit(costs.DEFLATE):
                # zlib's state each way is more than the budget has left:
                # the connection goes on without compression.
                self.factory.context.metrics.refusals.labels("memory_budget").inc()
                return None
        return accepted

    def onConnect(self, request: ConnectionRequest) -> str | None:
        account = self.account
        assert account is not None
        if not account.admit(costs.WEBSOCKET, push=True):
            self.factory.context.metrics.refusals.labels("memory_budget").inc()
            raise ConnectionDeny(503, "memory budget reached")
        # The first of the client's offers we speak, in the client's order of
        # preference; a client that offers nothing (or nothing we know) still
        # gets a connection without a subprotocol.
        subprotocols = self.factory.settings.subprotocols
        for protocol in request.protocols:
            if protocol in subprotocols:
                return protocol  # type: ignore[no-any-return]
        return None

    def onOpen(self) -> None:
        # Logged at the close, in one line with the rest (a log line costs
        # a handshake a tenth of its time); --verbose logs the opening too.
        self._opened_at = time.monotonic()
        if self.account is not None:
            self.account.opened()
        self.factory.context.metrics.opened_over[self.http_version].inc()
        deflate = autobahn.deflate_of(self)
        if self.fast is not None and deflate is not None:
            self.fast.use_deflate(deflate, self.factory.settings.max_message_size)

    def onMessageBegin(self, isBinary: bool) -> None:
        if self.progress is not None:
            self.progress.watch()
        if self.factory.tally is not None:
            self._began = time.perf_counter()
        super().onMessageBegin(isBinary)

    def onPing(self, payload: bytes) -> None:
        if self.turns is None or self.turns.ping(payload):
            super().onPing(payload)

    def onPong(self, payload: bytes) -> None:
        if self.turns is not None:
            self.turns.frame()
        super().onPong(payload)

    def onMessageFrameBegin(self, length: int) -> None:
        # Every data frame costs its share, an empty continuation too.
        if self.turns is not None:
            self.turns.frame()
        super().onMessageFrameBegin(length)

    def onMessageFrame(self, payload: Any) -> None:
        # A message sent as millions of tiny fragments would otherwise take
        # many times its size (the size limit counts payload only).
        autobahn.fold_chunks(self, payload, FOLD_CHUNKS)

    def onMessageFrameData(self, payload: bytes) -> None:
        # What Autobahn keeps of an unfinished message, after inflation.
        if autobahn.failed(self):
            return
        assert self.account is not None and self.turns is not None
        self.turns.spend(len(payload))
        # Each frame's chunk costs a little on top of its bytes.
        if self.account.hold_message(len(payload) + costs.READ):
            super().onMessageFrameData(payload)

    def onMessageEnd(self) -> None:
        super().onMessageEnd()
        # The message has been echoed (or refused): it is the write buffer's
        # now, counted there if the client does not read it.
        if self.account is not None:
            self.account.message_done()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self._echo(payload, isBinary)
        tally = self.factory.tally
        if tally is None or not autobahn.state_open(self):
            return  # not counted, refused, or after our close frame
        tally.message(isBinary, len(payload))
        tally.latency(time.perf_counter() - self._began)

    def _echo(self, payload: bytes, isBinary: bool) -> None:
        # The pong of a ping before the message goes before its echo.
        if self.turns is not None:
            self._pong(self.turns.last_ping())
        limit = self.factory.settings.max_message_size
        if len(payload) > limit:
            # See EchoServerFactory: Autobahn may hand over a compressed
            # message cut to its limit, one byte over ours.
            reason = f"message over {limit} bytes"
            autobahn.close(self, MESSAGE_TOO_BIG, reason.encode())
            return
        fast = self.fast
        if (
            fast is not None
            and fast.deflating
            and len(payload) > INFLATE_STEP
            and autobahn.state_open(self)
        ):
            # Compressed in steps, in the turns to come: Autobahn is given
            # a frame at a time here, so nothing after the message is read
            # before its echo is written.
            fast.deflate_later(payload, isBinary)
            return
        try:
            self.sendMessage(payload, isBinary)
        except Disconnected:
            # The message came in after our close frame went out (shutting
            # down, or a limit hit): RFC 6455 allows no data after it.
            pass

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        opened_at = self._opened_at
        if opened_at is None:
            self._log.info(
                "handshake failed {peer}: {reason}",
                peer=self.peer,
                client=self.client_address,
                reason=autobahn_closing.not_clean_reason(self),
            )
            return
        # The seed printed the peer's close code and reason; so do we.
        report = CloseReport.of(
            self.described(),
            autobahn_closing.closing(self, reason),
            time.monotonic() - opened_at,
        )
        self._log.info(
            "close {peer} {summary}", summary=report.line(), **report.fields()
        )

    def websocket_closed(self, abort: bool) -> None:
        """
        The WebSocket is closed (or failed): its connection slot is free now,
        not when the peer closes TCP, which it may never do: the server
        half-closes and waits for the peer's FIN (or close_notify over TLS),
        dropping what the peer still sends. A connection still open
        C{--close-handshake-timeout} seconds later is aborted.
        """
        self._count_closed()
        if self.fast is not None:
            # What comes now goes to Autobahn's side, which drops it.
            self.fast.stop()
            self.fast = None
        timeout = self.factory.settings.close_handshake_timeout
        if not abort and timeout and self._abort_timer is None:
            self._abort_timer = self.factory.context.clock.callLater(
                timeout, self._abort_late
            )

    # --- what the server decides -------------------------------------------

    def described(self) -> Described:
        """
        What the log says of a connection: where from, and what was agreed.
        """
        return describe(self)

    def going_away(self, code: int = GOING_AWAY) -> None:
        """
        The server is shutting down: start the closing handshake with
        C{code} (1001, going away, or 1012, service restart), or drop a
        connection still in its opening handshake.
        """
        if autobahn.state_open(self):
            reason = b"server restarting" if code == 1012 else b"server shutting down"
            autobahn.close(self, code, reason)
        elif autobahn.state_connecting(self):
            autobahn.drop(self, abort=True)

    def abort(self) -> None:
        """
        Drop the connection at once (a shutdown that waited long enough).
        """
        autobahn.drop(self, abort=True)

    def _evicted(self) -> None:
        """
        The memory budget needs what this connection holds: drop it, and
        close with 1013 (try again later), or at once if the client is not
        reading (a close frame would only wait behind its echoes).
        """
        self._log.info(
            "closing {client}: memory budget of {budget} bytes reached",
            client=self.client_address,
            budget=self.factory.context.budget.limit,
        )
        unfinished = self._unfinished()
        self._drop_buffers()
        assert self.flow is not None
        if self.flow.paused or not autobahn.state_open(self):
            autobahn.drop(self, abort=True, why="memory budget reached")
            return
        autobahn.close(self, TRY_AGAIN_LATER, b"server busy", ignore_rest=True)
        if not unfinished:
            # An idle connection (pushed out for a new one) goes once its
            # close frame is out, its FIN not waited for. One sending a
            # message is read on to its close: a reset would hide the 1013.
            autobahn.drop(self, why="memory budget reached", wait=False)

    def _too_slow(self) -> None:
        self._log.info(
            "closing {client}: it did not read its echoes for {timeout} s",
            client=self.client_address,
            timeout=self.factory.settings.slow_client_timeout,
        )
        if autobahn.state_open(self):
            autobahn.close(self, POLICY_VIOLATION, b"client too slow")
            # Read again, to see the client's close frame should it catch
            # up; messages after our close frame are not echoed (nor those
            # that waited for their turn).
            assert self.turns is not None
            self.turns.stop()
            assert self.flow is not None
            self.flow.read_again()
        else:
            autobahn.drop(self, abort=True)

    def _unfinished(self) -> bool:
        # A message under way: Autobahn's, or a frame the fast path waits
        # to have whole.
        if not autobahn.state_open(self):
            return False
        fast = self.fast
        return not autobahn.between_messages(self) or (
            fast is not None and fast.waiting
        )

    def _stalled(self) -> None:
        settings = self.factory.settings
        self._log.info(
            "closing {client}: message under {rate} bytes/s over {window} s",
            client=self.client_address,
            rate=settings.message_min_rate,
            window=settings.message_window,
        )
        self._drop_buffers()
        autobahn.close(self, POLICY_VIOLATION, b"message too slow", ignore_rest=True)

    def _abort_late(self) -> None:
        self._abort_timer = None
        if self.transport is not None:
            self._log.info(
                "{peer}: connection still open {timeout} s after the WebSocket "
                "closed: aborted",
                peer=self.peer,
                client=self.client_address,
                timeout=self.factory.settings.close_handshake_timeout,
            )
            cast(Any, self.transport).abortConnection()

    def _count_closed(self) -> None:
        # Once: the slot is free, and the metrics count the close.
        self.factory.context.count_closed(self, opened=self._opened_at is not None)

    def _drop_buffers(self) -> None:
        if self.fast is not None:
            self.fast.stop()
        autobahn.drop_message(self)
        if self.turns is not None:
            self.turns.stop()
        if self.account is not None:
            self.account.close()

    def _forget(self) -> None:
        # Nothing of a closed connection stays: its buffers, timers and zlib
        # objects go now, and the references that would keep this protocol
        # in a cycle until a full garbage collection go with them.
        self._count_closed()
        self.factory.context.registry.forget(self)
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        self._drop_buffers()
        autobahn.forget(self)
        if self.flow is not None:
            self.flow.forget()
        if self.progress is not None:
            self.progress.stop()
        # The parts and the writer hold the transport and this protocol.
        self.account = self.flow = self.fast = self.progress = self.turns = None
        self.write_now = None
        self.transport = None
