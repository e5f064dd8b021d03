"""
Why a connection failed, in one line with a hint of what to do: what
Twisted, OpenSSL and Autobahn report turned into a L{ClientError}.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import error
from twisted.python.failure import Failure

from wsecho._compat.autobahn_closing import not_clean_reason
from wsecho.client.output import (
    EXIT_CLOSED,
    EXIT_CONNECT,
    EXIT_HANDSHAKE,
    EXIT_TIMEOUT,
    EXIT_TLS,
    ClientError,
    printable,
)

TLS_HINT = "; --cafile PEM trusts its CA, --insecure skips the check"
CERT_HINT = "; the server wants a client certificate it trusts: --cert PEM [--key PEM]"
SOCKET_HINT = " (not a WebSocket endpoint: wsecho's echo is at /socket)"


def where(url: str) -> str:
    from autobahn.websocket.util import parse_url

    _, host, port, _, _, _ = parse_url(url)
    return f"{host}:{port}"


def connect_error(reason: Failure, url: str, proxy: str | None = None) -> ClientError:
    place = f"the proxy {proxy}" if proxy else where(url)
    if isinstance(reason.value, ClientError):  # --http2 says why itself
        return reason.value
    if reason.check(SSL.Error, VerificationError):
        message = tls_message(reason)
        if " alert " in f" {message.lower()} ":
            return ClientError(EXIT_TLS, f"TLS failed: {message}{CERT_HINT}")
        if "certificate" in message.lower():
            return ClientError(EXIT_TLS, f"TLS failed: {message}{TLS_HINT}")
        if "wrong version number" in message or "unexpected eof" in message:
            return ClientError(
                EXIT_TLS, f"the server did not answer TLS at {place}: is it ws://?"
            )
        return ClientError(EXIT_TLS, f"TLS failed: {message}")
    if reason.check(error.DNSLookupError):
        return ClientError(EXIT_CONNECT, f"cannot resolve the host name: {place}")
    if reason.check(error.ConnectionRefusedError):
        return ClientError(EXIT_CONNECT, f"connection refused: {place}")
    if reason.check(error.TimeoutError):
        return ClientError(EXIT_TIMEOUT, "timed out connecting")
    return ClientError(EXIT_CONNECT, f"cannot connect: {reason.getErrorMessage()}")


def handshake_error(protocol: Any, url: str) -> ClientError:
    lost = protocol.lostReason
    received = bytes(getattr(protocol, "data", b"") or b"")
    if protocol.proxy_error is not None:
        return ClientError(EXIT_CONNECT, f"the proxy refused: {protocol.proxy_error}")
    tls_error = (
        tls_message(lost)
        if lost is not None and lost.check(SSL.Error, VerificationError)
        else None
    )
    if tls_error is not None and " alert " in f" {tls_error.lower()} ":
        # The server's alert: it refused us (no client certificate, or one
        # it does not trust), not the other way round.
        if "certificate" in tls_error.lower() or "unknown ca" in tls_error.lower():
            return ClientError(EXIT_TLS, f"TLS failed: {tls_error}{CERT_HINT}")
    elif tls_error is not None and "certificate" in tls_error.lower():
        return ClientError(EXIT_TLS, f"TLS failed: {tls_error}{TLS_HINT}")
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
        code = status.split()[1:2]
        body = received.partition(b"\r\n\r\n")[2].split(b"\n", 1)[0].strip()
        message = f"handshake refused: {printable(status)}"
        if body:
            message += f": {printable(body.decode('utf-8', 'replace')[:200])}"
        headers = getattr(protocol, "http_headers", None) or {}
        wsecho = str(headers.get("server", "")).startswith("wsecho")
        if code == ["200"] or (code == ["404"] and wsecho):
            message += SOCKET_HINT
        return ClientError(EXIT_HANDSHAKE, message)
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
