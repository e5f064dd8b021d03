"""
wsecho-client: send messages to a WebSocket echo server, print the echoes
with their type, and exit 0 only when every echo matched what was sent.

The seed's client, with what users of wscat and websocat expect.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from autobahn.websocket.util import parse_url
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import defer, endpoints, error, ssl, task
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from . import __version__

DEFAULT_URL = "ws://localhost:8181/socket"
DEFAULT_MESSAGE = "Hello, world!"

# Exit codes, documented in the README and in --help.
EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_TLS = 4
EXIT_HANDSHAKE = 5
EXIT_TIMEOUT = 6
EXIT_CLOSED = 7

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}  every echo matched what was sent
  {EXIT_MISMATCH}  an echo differed from what was sent (content or type)
  {EXIT_USAGE}  bad arguments
  {EXIT_CONNECT}  could not connect (refused, unknown host, unreachable)
  {EXIT_TLS}  TLS failed (certificate or host name not verified)
  {EXIT_HANDSHAKE}  the server refused the WebSocket handshake (HTTP status)
  {EXIT_TIMEOUT}  no connection or no echo within --timeout
  {EXIT_CLOSED}  the connection closed before every echo came back
"""

# Binary echoes are shown as hex, up to this many bytes.
HEX_PREVIEW = 32
# Seconds between progress lines of a --count run.
PROGRESS_EVERY = 1.0


class ClientError(Exception):
    """
    The run failed in a way the user should be told about in one line.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Message:
    payload: bytes
    binary: bool

    def describe(self) -> str:
        if self.binary:
            shown = self.payload[:HEX_PREVIEW].hex()
            more = "..." if len(self.payload) > HEX_PREVIEW else ""
            return f"binary ({_plural(len(self.payload), 'byte')}): {shown}{more}"
        return f"text: {self.payload.decode('utf-8')}"

    def as_json(self, latency: float) -> dict[str, Any]:
        record: dict[str, Any] = {
            "event": "echo",
            "type": "binary" if self.binary else "text",
            "size": len(self.payload),
        }
        if self.binary:
            record["base64"] = base64.b64encode(self.payload).decode("ascii")
        else:
            record["text"] = self.payload.decode("utf-8")
        record["latency_ms"] = round(latency * 1000, 3)
        return record


@dataclass
class Ping:
    data: bytes


class Stats:
    """
    What a run measured: messages and bytes echoed, and the round trip of
    each message.
    """

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.latencies: list[float] = []
        self._began = self._sent = time.perf_counter()

    def start(self) -> None:
        self._began = time.perf_counter()

    def sent(self) -> None:
        self._sent = time.perf_counter()

    def echoed(self, size: int) -> float:
        latency = time.perf_counter() - self._sent
        self.messages += 1
        self.bytes += size
        self.latencies.append(latency)
        return latency

    def rate(self) -> float:
        elapsed = time.perf_counter() - self._began
        return self.messages / elapsed if elapsed > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        ms = sorted(x * 1000 for x in self.latencies) or [0.0]

        def percentile(p: float) -> float:
            # Nearest rank: the smallest value with p % of them at or below.
            return ms[max(0, math.ceil(p / 100 * len(ms)) - 1)]

        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "seconds": round(time.perf_counter() - self._began, 6),
            "rate": round(self.rate(), 1),
            "latency_ms": {
                "p50": round(percentile(50), 3),
                "p99": round(percentile(99), 3),
                "max": round(ms[-1], 3),
            },
        }


@dataclass
class Config:
    url: str = DEFAULT_URL
    messages: list[Message] = field(default_factory=list)
    count: int = 1
    interactive: bool = False
    subprotocols: list[str] = field(default_factory=list)
    origin: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    cafile: str | None = None
    insecure: bool = False
    timeout: float = 10.0
    compression: bool = True
    json: bool = False
    quiet: bool = False
    binary: bool = False
    check: bool = True


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsecho-client",
        description="Send messages to a WebSocket echo server and check the echoes.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "url",
        nargs="?",
        default=DEFAULT_URL,
        help=f"ws:// or wss:// URL (default {DEFAULT_URL})",
    )
    parser.add_argument(
        "message",
        nargs="*",
        help=f"messages to send, in order (default {DEFAULT_MESSAGE!r}); - reads one from stdin",
    )
    parser.add_argument(
        "-b", "--binary", action="store_true", help="send the messages as binary"
    )
    parser.add_argument(
        "-n",
        "--count",
        type=int,
        default=1,
        metavar="N",
        help="send every message N times (default 1)",
    )
    parser.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="send each line read from stdin (as binary with --binary); "
        "/ping [DATA] sends a ping and prints the pong's round trip, "
        "/close [CODE [REASON]] closes",
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="a client for any server: print what arrives, compare nothing "
        "(without --interactive, wait for as many messages as were sent); "
        "exit 0 on a clean close",
    )
    parser.add_argument(
        "-s",
        "--subprotocol",
        action="append",
        default=[],
        metavar="NAME",
        help="offer this subprotocol (repeatable)",
    )
    parser.add_argument("-o", "--origin", help="send this Origin header")
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="send an extra header (repeatable)",
    )
    parser.add_argument(
        "--cafile", help="trust the CA certificates in this PEM file for wss://"
    )
    parser.add_argument(
        "-k",
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate for wss://",
    )
    parser.add_argument(
        "-t",
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="for connecting and for each echo (default 10)",
    )
    parser.add_argument(
        "--no-compression", action="store_true", help="do not offer permessage-deflate"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print each echo, the summary and any error as a JSON object per line",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="do not print each echo, only the summary (with --count or --json)",
    )
    parser.add_argument(
        "--version", action="version", version=f"wsecho-client {__version__}"
    )
    return parser


def parse_args(argv: Sequence[str], stdin: IO[bytes]) -> Config:
    """
    Turn the command line into a L{Config}; argparse exits with status 2 on
    bad arguments.
    """
    parser = _parser()
    args = parser.parse_intermixed_args(argv)
    try:
        parse_url(args.url)
    except Exception as e:
        parser.error(f"URL {args.url!r}: {e}")
    if args.count < 1:
        parser.error("--count must be at least 1")
    if not args.timeout > 0:
        parser.error("--timeout must be more than 0 seconds")
    if args.interactive and args.message:
        parser.error("--interactive reads its messages from stdin; give no MESSAGE")
    headers = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            parser.error(f"--header {header!r} is not 'NAME: VALUE'")
        headers[name.strip()] = value.strip()
    messages = []
    for text in args.message or ([] if args.interactive else [DEFAULT_MESSAGE]):
        payload = stdin.read() if text == "-" else text.encode("utf-8")
        if not args.binary:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                parser.error("stdin is not UTF-8 text; use --binary")
        messages.append(Message(payload, args.binary))
    return Config(
        url=args.url,
        messages=messages,
        count=args.count,
        interactive=args.interactive,
        subprotocols=args.subprotocol,
        origin=args.origin,
        headers=headers,
        cafile=args.cafile,
        insecure=args.insecure,
        timeout=args.timeout,
        compression=not args.no_compression,
        json=args.json,
        quiet=args.quiet,
        binary=args.binary,
        check=not args.no_check,
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
                f"wsecho-client: {_plural(summary['messages'], 'message')} "
                f"({_plural(summary['bytes'], 'byte')}) in {summary['seconds']:.2f} s: "
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
            self.protocol.dropConnection(abort=True)

    def _fail(self, reason: Exception) -> None:
        self._stop_progress()
        if not self.done.called:
            self.done.errback(reason)

    def connect_failed(self, reason: Failure) -> None:
        if self.timer.active():
            self.timer.cancel()
        self._fail(_connect_error(reason, self.config.url))

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
            self._fail(_handshake_error(protocol, self.config.url))
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


def _where(url: str) -> str:
    _, host, port, _, _, _ = parse_url(url)
    return f"{host}:{port}"


def _connect_error(reason: Failure, url: str) -> ClientError:
    if reason.check(error.DNSLookupError):
        return ClientError(EXIT_CONNECT, f"cannot resolve the host name: {_where(url)}")
    if reason.check(error.ConnectionRefusedError):
        return ClientError(EXIT_CONNECT, f"connection refused: {_where(url)}")
    if reason.check(error.TimeoutError):
        return ClientError(EXIT_TIMEOUT, "timed out connecting")
    return ClientError(EXIT_CONNECT, f"cannot connect: {reason.getErrorMessage()}")


def _handshake_error(protocol: EchoClientProtocol, url: str) -> ClientError:
    lost = protocol.lostReason
    received = bytes(getattr(protocol, "data", b"") or b"")
    tls_error = (
        _tls_message(lost)
        if lost is not None and lost.check(SSL.Error, VerificationError)
        else None
    )
    if tls_error is not None and "certificate" in tls_error.lower():
        return ClientError(EXIT_TLS, f"TLS failed: {tls_error}")
    if url.startswith("wss:") and lost is not None and not protocol.tls_done:
        # A plain HTTP server does not answer a ClientHello (wsecho closes
        # at once), or answers it in plain text.
        return ClientError(
            EXIT_TLS,
            f"the server did not answer TLS at {_where(url)}: is it ws://?",
        )
    if tls_error is not None:
        return ClientError(EXIT_TLS, f"TLS failed: {tls_error}")
    if url.startswith("ws:") and (not received or received[:1] == b"\x15"):
        # A TLS server closes (or sends an alert) on a plain request.
        return ClientError(
            EXIT_HANDSHAKE,
            f"the server at {_where(url)} closed without answering the "
            "handshake: if it is a TLS port, use wss://",
        )
    status = getattr(protocol, "http_status_line", None)
    if status and not status.split()[1:2] == ["101"]:
        body = received.partition(b"\r\n\r\n")[2].split(b"\n", 1)[0].strip()
        message = f"handshake refused: {status}"
        if body:
            message += f": {body.decode('utf-8', 'replace')[:200]}"
        if status.split()[1:2] == ["200"]:
            message += " (not a WebSocket endpoint: wsecho's echo is at /socket)"
        return ClientError(EXIT_HANDSHAKE, message)
    why = protocol.wasNotCleanReason or "connection lost"
    return ClientError(EXIT_CLOSED, f"connection closed during the handshake: {why}")


def _tls_message(reason: Failure) -> str:
    if reason.check(VerificationError):
        return f"certificate does not match the host name ({reason.value})"
    args = reason.value.args if reason.value is not None else ()
    errors = args[0] if args else []
    if isinstance(errors, list) and errors and isinstance(errors[0], tuple):
        return str(errors[0][-1])
    return reason.getErrorMessage()


def _tls_options(config: Config, host: str) -> Any:
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


def _factory(config: Config, session: Session) -> WebSocketClientFactory:
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
    the TestSuite testee (L{wsecho.testee}).
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


class _Console(LineOnlyReceiver):
    """
    --interactive: a message per line of stdin; /ping and /close.
    """

    delimiter = b"\n"

    def __init__(self, session: Session) -> None:
        self.session = session

    def lineReceived(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        command, _, rest = line.partition(b" ")
        if command == b"/close":
            code_text, _, reason = rest.partition(b" ")
            try:
                code = int(code_text) if code_text else 1000
                if not (code == 1000 or 3000 <= code <= 4999):
                    raise ValueError(code)
            except ValueError:
                print(
                    "wsecho-client: /close takes 1000 or a code from 3000 to "
                    "4999, then a reason",
                    file=self.session.err,
                )
                return
            self.session.end_of_input(code, reason.decode("utf-8", "replace") or None)
        elif command == b"/ping":
            self.session.ping(rest[:125])
        else:
            binary = self.session.config.binary
            if not binary:
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    print(
                        "wsecho-client: not UTF-8; use --binary", file=self.session.err
                    )
                    return
            self.session.submit(Message(line, binary))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # End of stdin: close as if /close had been typed, once the echoes
        # of what was sent are back.
        self.session.end_of_input()


def run(
    reactor: Any,
    config: Config,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> defer.Deferred[int]:
    """
    Connect, exchange the messages and close; the Deferred fires with the
    exit code or fails with L{ClientError}. With C{config.interactive} the
    messages are read from stdin.
    """
    isSecure, host, port, _, _, _ = parse_url(config.url)
    endpoint: Any = endpoints.HostnameEndpoint(
        reactor, host, port, timeout=config.timeout
    )
    if isSecure:
        endpoint = endpoints.wrapClientTLS(_tls_options(config, host), endpoint)
    session = Session(
        config,
        reactor,
        out if out is not None else sys.stdout,
        err if err is not None else sys.stderr,
    )
    endpoint.connect(_factory(config, session)).addErrback(session.connect_failed)
    if config.interactive:
        from twisted.internet.stdio import StandardIO

        console = StandardIO(_Console(session), reactor=reactor)

        def stop_console(result: Any) -> Any:
            console.loseConnection()
            return result

        session.done.addBoth(stop_console)
    return session.done


def main(argv: Sequence[str] | None = None) -> None:
    """
    The C{wsecho-client} console script.
    """
    config = parse_args(sys.argv[1:] if argv is None else argv, sys.stdin.buffer)

    async def _main(reactor: Any) -> None:
        try:
            code = await run(reactor, config)
        except ClientError as e:
            print(f"wsecho-client: {e}", file=sys.stderr)
            code = e.code
            if config.json:
                print(json.dumps({"event": "error", "exit": code, "message": str(e)}))
        if code:
            raise SystemExit(code)

    task.react(lambda reactor: defer.Deferred.fromCoroutine(_main(reactor)))


if __name__ == "__main__":
    main()
