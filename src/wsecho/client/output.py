"""
What wsecho-client says: its exit codes, the messages it sends and how
they are shown, what a run measured, and every line it prints, as text or
as one JSON object a line (C{--json}).

It imports nothing of Twisted, Autobahn or OpenSSL: C{--version}, C{--help}
and usage errors go through here and must start as fast as Python does.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

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
EXIT_INTERRUPTED = 130

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}  every echo matched what was sent (or -i ended by /close, Ctrl-D, Ctrl-C)
  {EXIT_MISMATCH}  an echo differed from what was sent (content or type)
  {EXIT_USAGE}  bad arguments
  {EXIT_CONNECT}  could not connect (refused, unknown host, unreachable, proxy)
  {EXIT_TLS}  TLS failed (certificate or host name not verified)
  {EXIT_HANDSHAKE}  the server refused the WebSocket handshake (HTTP status)
  {EXIT_TIMEOUT}  no connection, echo or pong within --timeout
  {EXIT_CLOSED}  the connection closed before every echo came back
  {EXIT_INTERRUPTED}  Ctrl-C before every echo came back (without -i)
"""

# Binary echoes are shown as hex, up to this many bytes.
HEX_PREVIEW = 32
# Seconds between progress lines of a --count run.
PROGRESS_EVERY = 1.0

# What a server could drive a terminal with: C0 controls but tab and
# newline, DEL, and C1 controls (U+009B is a one-character CSI).
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """
    C{text} with its terminal controls escaped (C{\\x1b}), for showing what
    a server sent.
    """
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


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

    def describe(self, raw: bool = False) -> str:
        if self.binary:
            shown = self.payload[:HEX_PREVIEW].hex()
            more = "..." if len(self.payload) > HEX_PREVIEW else ""
            return f"binary ({plural(len(self.payload), 'byte')}): {shown}{more}"
        text = self.payload.decode("utf-8")
        return f"text: {text if raw else printable(text)}"

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
        ms = sorted(x * 1000 for x in self.latencies)

        def percentile(p: float) -> float | None:
            # Nearest rank: the smallest value with p % of them at or below;
            # none at all without a message (0.0 would be a measurement).
            if not ms:
                return None
            return round(ms[max(0, math.ceil(p / 100 * len(ms)) - 1)], 3)

        return {
            "messages": self.messages,
            "bytes": self.bytes,
            "seconds": round(time.perf_counter() - self._began, 6),
            "rate": round(self.rate(), 1),
            "latency_ms": {
                "p50": percentile(50),
                "p99": percentile(99),
                "max": percentile(100),
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
    cert: str | None = None
    key: str | None = None
    proxy: str | None = None
    timeout: float = 10.0
    compression: bool = True
    json: bool = False
    quiet: bool = False
    binary: bool = False
    check: bool = True
    raw: bool = False
    show_ping: bool = False
    ping_interval: float = 0.0
    reconnect: int = 0
    # --http2: the WebSocket over HTTP/2 (RFC 8441).
    http2: bool = False


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class Output:
    """
    Every line a run prints, in one place, as text or (C{--json}) as one
    JSON object a line on stdout, in the order things happened.

    C{before} and C{after} run around each line: a terminal console clears
    the line being typed and writes it back (L{wsecho.client.console}).
    """

    def __init__(self, config: Config, out: IO[str], err: IO[str]) -> None:
        self.config = config
        self.out = out
        self.err = err
        self.before: Callable[[], None] = lambda: None
        self.after: Callable[[], None] = lambda: None

    def _emit(self, stream: IO[str], text: str) -> None:
        self.before()
        print(text, file=stream, flush=True)
        self.after()

    def _event(self, event: str, **fields: Any) -> None:
        self._emit(self.out, json.dumps({"event": event, **fields}))

    def notice(self, text: str) -> None:
        """
        A line for the user on stderr, never part of --json's stream.
        """
        self._emit(self.err, text)

    def connected(
        self, url: str, subprotocol: str | None, extensions: list[str]
    ) -> None:
        if self.config.json:
            self._event(
                "connected", url=url, subprotocol=subprotocol, extensions=extensions
            )
        elif self.config.interactive:
            agreed = ", ".join([subprotocol or "no subprotocol", *extensions])
            self.notice(f"connected to {url} ({agreed})")

    def echo(self, message: Message, latency: float) -> None:
        if self.config.quiet:
            return
        if self.config.json:
            self._emit(self.out, json.dumps(message.as_json(latency)))
        else:
            self._emit(self.out, message.describe(self.config.raw))

    def pong(self, size: int, rtt: float) -> None:
        if self.config.json:
            self._event("pong", size=size, rtt_ms=round(rtt * 1000, 3))
        else:
            self._emit(self.out, f"pong {rtt * 1000:.2f} ms")

    def server_ping(self, payload: bytes) -> None:
        """
        --show-ping: a ping from the server, and the pong sent back.
        """
        if self.config.json:
            data = payload.decode("utf-8", "replace")
            self._event("ping", size=len(payload), data=data)
            self._event("pong_sent", size=len(payload), data=data)
        else:
            data = self._payload(payload)
            self._emit(self.out, f"ping from the server{data}")
            self._emit(self.out, f"pong sent{data}")

    def _payload(self, payload: bytes) -> str:
        if not payload:
            return ""
        text = payload.decode("utf-8", "replace")
        return f": {text if self.config.raw else printable(text)}"

    def summary(self, summary: dict[str, Any]) -> None:
        if self.config.json:
            self._event("summary", **summary)
        elif self.config.count > 1 or self.config.quiet:
            latency = {k: v or 0.0 for k, v in summary["latency_ms"].items()}
            self.notice(
                f"wsecho-client: {plural(summary['messages'], 'message')} "
                f"({plural(summary['bytes'], 'byte')}) in {summary['seconds']:.2f} s: "
                f"{summary['rate']:.0f} messages/s; latency p50 "
                f"{latency['p50']:.3f} ms, p99 {latency['p99']:.3f} ms, "
                f"max {latency['max']:.3f} ms"
            )

    def closed(
        self, code: int | None, reason: str | None, by: str, clean: bool, why: str
    ) -> None:
        """
        How the connection closed: its code and reason, who closed it
        (C{client} or C{server}), and, for a user's Ctrl-C, C{why}.
        """
        if self.config.json:
            extra = {"why": why} if why else {}
            self._event("closed", code=code, reason=reason, by=by, clean=clean, **extra)
        elif self.config.interactive:
            said = f"closed {code}"
            if reason:
                said += f" {printable(reason)}"
            said += f" (by the {by}{': ' + why if why else ''})"
            self.notice(said)

    def reconnecting(self, why: str, delay: float, attempt: int, attempts: int) -> None:
        if self.config.json:
            self._event(
                "reconnecting", why=why, delay=delay, attempt=attempt, of=attempts
            )
        self.notice(
            f"wsecho-client: {why}; reconnecting in {delay:g} s "
            f"(attempt {attempt} of {attempts})"
        )

    def error(self, error: ClientError) -> None:
        if self.config.json:
            self._event("error", exit=error.code, message=str(error))
        self.notice(f"wsecho-client: {error}")
