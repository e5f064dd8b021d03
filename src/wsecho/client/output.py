"""
What wsecho-client says: its exit codes, the messages it sends and how
they are shown, what a run measured, and the one-line errors it ends with.
"""

from __future__ import annotations

import base64
import math
import time
from dataclasses import dataclass, field
from typing import Any

from autobahn.websocket.util import parse_url
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import error
from twisted.python.failure import Failure

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
            return f"binary ({plural(len(self.payload), 'byte')}): {shown}{more}"
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


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def where(url: str) -> str:
    _, host, port, _, _, _ = parse_url(url)
    return f"{host}:{port}"


def connect_error(reason: Failure, url: str) -> ClientError:
    if reason.check(error.DNSLookupError):
        return ClientError(EXIT_CONNECT, f"cannot resolve the host name: {where(url)}")
    if reason.check(error.ConnectionRefusedError):
        return ClientError(EXIT_CONNECT, f"connection refused: {where(url)}")
    if reason.check(error.TimeoutError):
        return ClientError(EXIT_TIMEOUT, "timed out connecting")
    return ClientError(EXIT_CONNECT, f"cannot connect: {reason.getErrorMessage()}")


def handshake_error(protocol: Any, url: str) -> ClientError:
    lost = protocol.lostReason
    received = bytes(getattr(protocol, "data", b"") or b"")
    tls_error = (
        tls_message(lost)
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
            f"the server did not answer TLS at {where(url)}: is it ws://?",
        )
    if tls_error is not None:
        return ClientError(EXIT_TLS, f"TLS failed: {tls_error}")
    if url.startswith("ws:") and (not received or received[:1] == b"\x15"):
        # A TLS server closes (or sends an alert) on a plain request.
        return ClientError(
            EXIT_HANDSHAKE,
            f"the server at {where(url)} closed without answering the "
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
    from wsecho._compat.autobahn import not_clean_reason

    why = not_clean_reason(protocol) or "connection lost"
    return ClientError(EXIT_CLOSED, f"connection closed during the handshake: {why}")


def tls_message(reason: Failure) -> str:
    if reason.check(VerificationError):
        return f"certificate does not match the host name ({reason.value})"
    args = reason.value.args if reason.value is not None else ()
    errors = args[0] if args else []
    if isinstance(errors, list) and errors and isinstance(errors[0], tuple):
        return str(errors[0][-1])
    return reason.getErrorMessage()
