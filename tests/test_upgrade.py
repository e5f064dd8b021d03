"""
The upgrade answered at once (L{wsecho.http.site.EchoResource.upgrade_at_once}):
a whole upgrade request in a connection's first read goes to Autobahn as
read, and is answered exactly as twisted.web's request path answers it.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from support.site import connect_in_memory
from support.wire import KEY, frame, upgrade
from wsecho._compat import autobahn
from wsecho.http.policy import ProxyTrust
from wsecho.http.site import make_site
from wsecho.settings import EchoSettings

HELLO = frame(1, b"Hello, world!", mask=b"\x01\x02\x03\x04")

SETTINGS = [
    EchoSettings(),
    EchoSettings(allowed_origins=("https://*.example",), subprotocols=("chat",)),
    EchoSettings(trusted_proxies=ProxyTrust(hops=1), compression=False),
    EchoSettings(allowed_hosts=("ws.test",)),
]

_FIELDS = {
    "Host": [
        "127.0.0.1:8181",
        "ws.test",
        None,
        "localhost:8181",
        "[::1]:8181",
        "evil.example:8181",
        "evil.example@localhost",
    ],
    "Upgrade": ["websocket", "WebSocket", "h2c", None],
    "Connection": ["Upgrade", "keep-alive, Upgrade", "close"],
    "Sec-WebSocket-Key": [KEY, "c2hvcnQ=", None],
    "Sec-WebSocket-Version": ["13", "8", "7", "13, 8", None],
    "Sec-WebSocket-Origin": [None, "http://evil.example:8181"],
    "Origin": [
        None,
        "http://127.0.0.1:8181",
        "https://evil.example",
        "https://other.test",
        "null",
        "http://[oops",
        "http://evil.example:8181",
    ],
    "Sec-WebSocket-Extensions": [
        None,
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; bogus=1, permessage-deflate",
        "x-webkit-deflate-frame",
        "",
    ],
    "Sec-WebSocket-Protocol": [None, "chat, superchat", "superchat"],
    "X-Forwarded-For": [None, "203.0.113.7", "198.51.100.1, 203.0.113.7"],
    "Content-Length": [None, "0", "5"],
}


@st.composite
def requests(draw: Any) -> bytes:
    """
    Upgrade requests, valid but for one or two of their parts, each of which
    may make it one the server refuses or answers differently.
    """
    varied = draw(
        st.sets(st.sampled_from(["line", "dup", "origins", *_FIELDS]), max_size=2)
    )
    method, target, version = "GET", "/socket", "HTTP/1.1"
    if "line" in varied:
        method = draw(st.sampled_from(["GET", "HEAD", "POST"]))
        target = draw(
            st.sampled_from(
                [
                    "/socket",
                    "/socket?x=1",
                    "/socket/x",
                    "/",
                    # Not /metrics: its process figures (CPU time, memory)
                    # differ between any two answers.
                    "/readyz",
                    "/healthz",
                    # The absolute form: its authority must agree with Host.
                    "http://127.0.0.1:8181/socket",
                    "http://evil.example:8181/socket",
                ]
            )
        )
        version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
    lines = [f"{method} {target} {version}"]
    for name, values in _FIELDS.items():
        value = draw(st.sampled_from(values)) if name in varied else values[0]
        if value is not None:
            lines.append(f"{name}: {value}")
    if "origins" in varied:
        # Two Origin headers: which one would the check read?
        lines.append("Origin: http://127.0.0.1:8181")
    if "dup" in varied:
        # A header sent twice: twisted.web joins it for Autobahn.
        lines.append(draw(st.sampled_from(lines[1:] or ["Host: ws.test"])))
    tail = draw(st.sampled_from([b"", HELLO, HELLO + HELLO]))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + tail


def answer(site: Any, reads: list[bytes]) -> tuple[bytes, int, Any]:
    """
    What C{site} writes back to a connection that sends C{reads}, with no
    Date header (it names the second); how many twisted.web requests were
    built for it; and the protocol it ends with (the echo's, if upgraded).
    """
    built = []

    class Counted(site.requestFactory):  # type: ignore[misc, name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            built.append(self)
            super().__init__(*args, **kwargs)

    site.requestFactory = Counted
    _, transport = connect_in_memory(site)
    for data in reads:
        transport.protocol.dataReceived(data)
    written = re.sub(rb"\r\nDate: [^\r]*", b"", transport.value())
    protocol = transport.protocol
    protocol.connectionLost(Failure(ConnectionDone()))
    return written, len(built), protocol


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(request=requests(), configured=st.sampled_from(SETTINGS))
def test_answered_at_once_as_twisted_web_answers(
    request: bytes, configured: EchoSettings
) -> None:
    """
    An upgrade request in one read is answered as it is when it comes in
    two (which twisted.web reads): the same status, headers and body, the
    same echoes of the frames sent with it, and the same client address.
    """
    head = request.index(b"\r\n\r\n") + 3
    whole, _, at_once = answer(make_site(configured), [request])
    split, built, by_twisted_web = answer(
        make_site(configured), [request[:head], request[head:]]
    )
    assert whole == split
    assert built == 1
    assert getattr(at_once, "client_address", None) == getattr(
        by_twisted_web, "client_address", None
    )


def test_whole_upgrade_needs_no_twisted_web_request() -> None:
    """
    A whole upgrade request in the first read is upgraded without a
    twisted.web request, its early frames echoed; in two reads, twisted.web
    reads it, to the same answer.
    """
    request = (
        b"GET /socket HTTP/1.1\r\nHost: 127.0.0.1:8181\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + KEY.encode() + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n" + HELLO
    )
    whole, built, _ = answer(make_site(EchoSettings()), [request])
    assert whole.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert whole.endswith(b"\r\n\r\n\x81\x0dHello, world!")
    # Where Autobahn's parser is not strict (before 26.11.1), twisted.web
    # reads every request.
    assert built == (0 if autobahn.parse_head is not None else 1)
    split, built, _ = answer(make_site(EchoSettings()), [request[:20], request[20:]])
    assert split == whole
    assert built == 1


def _draining(site: Any) -> Any:
    site.context.registry.drain(5, Clock())
    return None


def _full(site: Any) -> Any:
    # One connection, upgraded and left open, takes the one place.
    channel, transport = connect_in_memory(site)
    channel.dataReceived(upgrade("127.0.0.1:8181"))
    assert transport.value().startswith(b"HTTP/1.1 101 ")
    return transport.protocol


@pytest.mark.parametrize(
    "configured, before, refusal",
    [
        (EchoSettings(), _draining, b"Not now: shutting down."),
        (EchoSettings(max_connections=1), _full, b"Not now: too many connections."),
        (
            EchoSettings(max_connections_per_ip=1),
            _full,
            b"Not now: too many connections from this address.",
        ),
    ],
)
def test_refused_at_once_as_by_twisted_web(
    configured: EchoSettings, before: Any, refusal: bytes
) -> None:
    """
    A whole upgrade request to a daemon that is shutting down, or that is
    at a connection limit, gets the 503 that twisted.web's path gives.
    """
    request = upgrade("127.0.0.1:8181") + HELLO
    answers = []
    for reads in ([request], [request[:20], request[20:]]):
        site = make_site(configured)
        held = before(site)
        answers.append(answer(site, reads)[0])
        if held is not None:
            held.connectionLost(Failure(ConnectionDone()))
    assert answers[0] == answers[1]
    assert answers[0].startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert answers[0].endswith(b"\r\n\r\n" + refusal + b"\n")


def test_without_autobahns_parser_twisted_web_reads_every_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    Where Autobahn has no strict head parser (one that accepts a bare LF,
    as before 26.11.1, or none), C{wsecho._compat.autobahn} says so, and every request is
    twisted.web's, answered as before.
    """
    from autobahn.websocket import protocol

    from wsecho.http import upgrade as web

    monkeypatch.setattr(protocol, "parseHttpHeader", lambda head: ("", {}, {}))
    assert autobahn._missing() == ["autobahn handshake"]
    monkeypatch.delattr(protocol, "parseHttpHeader")
    assert autobahn._missing() == ["autobahn handshake"]
    request = upgrade("127.0.0.1:8181") + HELLO
    before = answer(make_site(EchoSettings()), [request])[0]
    monkeypatch.setattr(web, "parse_head", None)
    written, built, _ = answer(make_site(EchoSettings()), [request])
    assert (written, built) == (before, 1)
