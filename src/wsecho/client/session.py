"""
One run of wsecho-client: the connection, the messages sent and their
echoes checked, and the Autobahn client factory that carries the options.
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import IO, Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from OpenSSL import SSL
from twisted.internet import defer, ssl
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from wsecho import __version__
from wsecho.client.output import (
    EXIT_CLOSED,
    EXIT_MISMATCH,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    PROGRESS_EVERY,
    ClientError,
    Config,
    Message,
    Ping,
    Stats,
    connect_error,
    handshake_error,
    plural,
)


class EchoClientProtocol(WebSocketClientProtocol):
    """
    Hands what happens on the connection to the L{Session} that owns it.
    """

    lostReason: Failure | None = None
    # Whether a TLS handshake completed (wss:): see _handshake_error.
    tls_done = False

    def dataReceived(self, data: bytes) -> None:
        # Decrypted data came, so TLS (if any) was answered.
        self.tls_done = True
        super().dataReceived(data)

    def onOpen(self) -> None:
        self.factory.session.opened(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.session.received(Message(payload, isBinary))

    def onPong(self, payload: bytes) -> None:
        self.factory.session.ponged(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.session.closed(self, wasClean, code, reason)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # Kept for onClose, which Autobahn calls from here: it is how a TLS
        # verification failure is told apart from other drops.
        self.lostReason = reason
        super().connectionLost(reason)


class Session:
    """
    One run: send the messages one at a time, compare each echo with what
    was sent, close when there is nothing more to send, and fire C{done}
    with an exit code or fail it with a L{ClientError}.

    Messages come from the command line, or (--interactive) from stdin as
    it is read, which may be before the connection is open.
    """

    def __init__(
        self, config: Config, clock: IReactorTime, out: IO[str], err: IO[str]
    ) -> None:
        self.config = config
        self.clock = clock
        self.out = out
        self.err = err
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
        self.tty = config.interactive and out.isatty()

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
        rtt = (time.perf_counter() - sent) * 1000
        if isinstance(self.expected, Ping) and self.expected.data == payload:
            self.timer.cancel()
            self.expected = None
            self._pump()
        if self.config.json:
            record = {"event": "pong", "size": len(payload), "rtt_ms": round(rtt, 3)}
            print(json.dumps(record), file=self.out, flush=True)
        else:
            print(f"pong {rtt:.2f} ms", file=self.out, flush=True)
        self._prompt()

    def _prompt(self) -> None:
        if self.tty and self.result is None:
            print("> ", end="", file=self.out, flush=True)

    def opened(self, protocol: EchoClientProtocol) -> None:
        self.protocol = protocol
        self.timer.cancel()
        if self.config.interactive and not self.config.json:
            agreed = ", ".join(
                [protocol.websocket_protocol_in_use or "no subprotocol"]
                + [e.EXTENSION_NAME for e in protocol.websocket_extensions_in_use]
            )
            print(f"connected to {self.config.url} ({agreed})", file=self.err)
            self._prompt()
        self.stats.start()
        if self.config.count > 1:
            self.progress = self.clock.callLater(PROGRESS_EVERY, self._progress)
        self._pump()

    def _progress(self) -> None:
        """
        Every second of a --count run: how far it is, on stderr (rewritten
        in place on a terminal).
        """
        line = f"{self.stats.messages}/{self.total} messages, {self.stats.rate():.0f}/s"
        if self.err.isatty():
            print(f"\r{line}", end="", file=self.err, flush=True)
        else:
            print(line, file=self.err, flush=True)
        self.progress = self.clock.callLater(PROGRESS_EVERY, self._progress)

    def _stop_progress(self) -> None:
        if self.progress is not None and self.progress.active():
            self.progress.cancel()
            if self.err.isatty():
                print(file=self.err)

    def _report(self) -> None:
        summary = self.stats.summary()
        self._stop_progress()
        if self.config.json:
            print(
                json.dumps({"event": "summary", **summary}), file=self.out, flush=True
            )
        elif self.config.count > 1 or self.config.quiet:
            latency = summary["latency_ms"]
            print(
                f"wsecho-client: {plural(summary['messages'], 'message')} "
                f"({plural(summary['bytes'], 'byte')}) in {summary['seconds']:.2f} s: "
                f"{summary['rate']:.0f} messages/s; latency p50 "
                f"{latency['p50']:.3f} ms, p99 {latency['p99']:.3f} ms, "
                f"max {latency['max']:.3f} ms",
                file=self.err,
                flush=True,
            )

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
        if not self.config.quiet:
            if self.config.json:
                print(json.dumps(message.as_json(latency)), file=self.out, flush=True)
            else:
                print(message.describe(), file=self.out, flush=True)
        if self.expected is None or isinstance(self.expected, Ping):
            self._prompt()
            return
        self.timer.cancel()
        if self.config.check and message != self.expected:
            print(
                f"wsecho-client: echo mismatch: sent {self.expected.describe()}",
                file=self.err,
            )
            self._finish(EXIT_MISMATCH)
            return
        self.expected = None
        self._prompt()
        self._pump()

    def _finish(self, code: int) -> None:
        """
        Close the connection cleanly; C{done} fires once it is closed.
        """
        assert self.protocol is not None
        self.result = code
        close_code, reason = self.close_with if code == EXIT_OK else (1000, None)
        self.protocol.sendClose(close_code, reason)

    def _timed_out(self, doing: str) -> None:
        self._fail(
            ClientError(
                EXIT_TIMEOUT, f"timed out after {self.config.timeout:g} s {doing}"
            )
        )
        if self.protocol is not None:
            from wsecho._compat.autobahn import drop

            drop(self.protocol, abort=True)

    def _fail(self, reason: Exception) -> None:
        self._stop_progress()
        if not self.done.called:
            self.done.errback(reason)

    def connect_failed(self, reason: Failure) -> None:
        if self.timer.active():
            self.timer.cancel()
        self._fail(connect_error(reason, self.config.url))

    def closed(
        self,
        protocol: EchoClientProtocol,
        wasClean: bool,
        code: int | None,
        reason: str | None,
    ) -> None:
        if self.timer.active():
            self.timer.cancel()
        if self.done.called:
            return
        if self.protocol is not None and self.config.interactive:
            said = f"closed {code}" + (f" {reason}" if reason else "")
            if self.tty:
                print(file=self.out)
            print(said, file=self.err, flush=True)
        if self.protocol is None:
            self._fail(handshake_error(protocol, self.config.url))
        elif self.result is None and not self.config.check and wasClean:
            # A general client: the server closing cleanly is the end.
            self.done.callback(EXIT_OK)
        elif self.result is not None:
            # We closed: every echo so far was checked, whether or not the
            # server completed the closing handshake.
            self.done.callback(self.result)
        else:
            detail = f"code {code}" + (f", {reason}" if reason else "")
            self._fail(
                ClientError(EXIT_CLOSED, f"connection closed by the server ({detail})")
            )


def tls_options(config: Config, host: str) -> Any:
    if config.insecure:
        return ssl.CertificateOptions(verify=False)
    if config.cafile is not None:
        try:
            with open(config.cafile, "rb") as f:
                pem = f.read()
            roots = [ssl.Certificate.loadPEM(block) for block in _pem_blocks(pem)]
        except (OSError, SSL.Error, ValueError) as e:
            raise ClientError(EXIT_USAGE, f"--cafile {config.cafile}: {e}") from None
        if not roots:
            raise ClientError(
                EXIT_USAGE, f"--cafile {config.cafile}: no certificate in it"
            )
        return ssl.optionsForClientTLS(
            host, trustRoot=ssl.trustRootFromCertificates(roots)
        )
    return ssl.optionsForClientTLS(host)


def _pem_blocks(pem: bytes) -> list[bytes]:
    end = b"-----END CERTIFICATE-----"
    return [
        block + end
        for block in pem.split(end)
        if b"-----BEGIN CERTIFICATE-----" in block
    ]


class _ClientFactory(WebSocketClientFactory):
    protocol = EchoClientProtocol
    session: Session


def client_factory(config: Config, session: Session) -> WebSocketClientFactory:
    factory = _ClientFactory(
        config.url,
        origin=config.origin,
        protocols=config.subprotocols or None,
        headers=config.headers or None,
        useragent=f"wsecho-client/{__version__}",
    )
    factory.session = session
    # Session's own timer covers connecting and the opening handshake.
    configure_client_factory(factory, config.compression, config.timeout)
    factory.setProtocolOptions(openHandshakeTimeout=0)
    return factory


def _accept_deflate(
    response: PerMessageDeflateResponse,
) -> PerMessageDeflateResponseAccept:
    return PerMessageDeflateResponseAccept(response)


def configure_client_factory(
    factory: WebSocketClientFactory, compression: bool = True, timeout: float = 10.0
) -> None:
    """
    The protocol options of wsecho's client, shared by C{wsecho-client} and
    the TestSuite testee (L{wsecho.client.testee}).
    """
    factory.setProtocolOptions(
        openHandshakeTimeout=timeout,
        closeHandshakeTimeout=timeout,
        # Send the close frame (1002, 1007, ...) before dropping a server
        # that broke the protocol, as RFC 6455 asks.
        failByDrop=False,
        tcpNoDelay=True,
    )
    if compression:
        factory.setProtocolOptions(
            perMessageCompressionOffers=[PerMessageDeflateOffer()],
            perMessageCompressionAccept=_accept_deflate,
        )
