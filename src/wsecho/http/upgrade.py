"""
C{/socket}: the WebSocket upgrade, with the checks that deserve an HTTP
answer, and the hand-over of the connection to the echo protocol (at once
from the channel's first read, or from a twisted.web request).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from wsecho._compat.autobahn import parse_head
from wsecho._compat.h2stream import StreamTransport, upgrade_request
from wsecho._compat.twisted import read_ahead, take_over
from wsecho.http.channel import SERVER_NAME, Channel
from wsecho.http.pages import error_page, text_page
from wsecho.http.policy import OriginPolicy, ProxyTrust
from wsecho.wire.deflate import acceptable_offers
from wsecho.ws.factory import EchoServerFactory


def _header(request: server.Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1") if value is not None else None


class Refusal(NamedTuple):
    """
    Why an upgrade request is refused: the metric's label, the HTTP status,
    the answer's text, and the log's reason (the text if L{None}).
    """

    label: str
    code: int
    phrase: str
    text: str
    reason: str | None = None
    # Headers of a 426 answer besides Upgrade (RFC 6455 4.4).
    headers: tuple[tuple[bytes, bytes], ...] = ()


def _framing_refusal(
    version: bytes, header: Callable[[str], str | None]
) -> Refusal | None:
    # What an HTTP/1.1 upgrade request must be besides a WebSocket one.
    if version != b"HTTP/1.1":
        # Autobahn would check, but is handed the request as HTTP/1.1.
        return Refusal(
            "bad_handshake",
            400,
            "Bad Request",
            "a WebSocket handshake needs HTTP/1.1",
        )
    length = header("content-length")
    if header("transfer-encoding") is not None or (
        length is not None and length.strip() != "0"
    ):
        # twisted.web has read the body, which Autobahn would take for
        # frames the client sent.
        return Refusal(
            "bad_handshake", 400, "Bad Request", "a WebSocket handshake has no body"
        )
    return None


class EchoResource(Resource):
    """
    C{/socket}: hands WebSocket upgrades to Autobahn after the checks that
    deserve an HTTP answer of their own with a body.
    """

    _log = Logger()
    isLeaf = True

    def __init__(
        self,
        factory: EchoServerFactory,
        origins: OriginPolicy,
        proxies: ProxyTrust | None = None,
    ) -> None:
        super().__init__()
        self.factory = factory
        self._registry = factory.context.registry
        self._metrics = factory.context.metrics
        self._origins = origins
        self._proxies = proxies

    def _client_address(self, request: server.Request) -> str:
        peer = request.getClientAddress()
        host = getattr(peer, "host", None) or str(peer)
        if self._proxies is None:
            return host
        return self._proxies.client_address(host, request)

    def _refuse(
        self,
        request: server.Request,
        code: int,
        phrase: bytes,
        body: str,
        client: str,
        reason: str,
    ) -> bytes:
        self._log.info("refused {client}: {reason}", client=client, reason=reason)
        # The client came to switch protocols, not to keep talking HTTP.
        request.setHeader(b"Connection", b"close")
        request.channel.persistent = False
        return text_page(request, code, phrase, body)

    def _refusal(
        self, version: bytes, header: Callable[[str], str | None], origins: int = 1
    ) -> Refusal | None:
        """
        Why an upgrade request to C{/socket} is refused before the
        connection limits, if it is: C{version} is its HTTP version,
        C{header} gives its headers by lower-case name, and C{origins} says
        how many Origin headers it has. What L{render} answers, and what
        makes L{upgrade_at_once} leave a request to it.
        """
        if "websocket" not in (header("upgrade") or "").lower():
            return Refusal(
                "not_websocket",
                426,
                "Upgrade Required",
                "This is a WebSocket endpoint: connect with a WebSocket client "
                "(Upgrade: websocket), or try the echo console on the index page.",
            )
        return self.refusal(header, origins, lambda: _framing_refusal(version, header))

    def refusal(
        self,
        header: Callable[[str], str | None],
        origins: int,
        framing: Callable[[], Refusal | None] = lambda: None,
    ) -> Refusal | None:
        """
        Why a WebSocket opening handshake is refused before the connection
        limits, over HTTP/1.1 (L{_refusal}) and HTTP/2 (L{connect_h2})
        alike: the version, then C{framing} (what is wrong with the request
        as one of its HTTP version), the origin, the drain.
        """
        asked = header("sec-websocket-version")
        if asked is not None and asked.strip() != "13":
            # Autobahn would speak the drafts' versions (8: with the origin
            # in Sec-WebSocket-Origin, which the origin check never read).
            return Refusal(
                "bad_version",
                426,
                "Upgrade Required",
                "This server speaks WebSocket version 13 (RFC 6455) only.",
                headers=((b"Sec-WebSocket-Version", b"13"),),
            )
        framed = framing()
        if framed is not None:
            return framed
        if origins > 1:
            # Which one would the check read, and which one did the browser
            # send? Neither is to be trusted.
            return Refusal(
                "bad_handshake", 400, "Bad Request", "Origin sent more than once"
            )
        origin = header("origin")
        if not self._origins.allows(origin, header("host")):
            return Refusal(
                "origin",
                403,
                "Forbidden",
                "Origin not allowed.",
                f"origin {origin!r} not allowed",
            )
        if self._registry.draining:
            return Refusal("shutting_down", 503, "Service Unavailable", "shutting down")
        return None

    def render(self, request: server.Request) -> bytes | int:
        if request.postpath:
            # The resource is a leaf, so /socket/anything lands here too.
            return error_page(request, 404, "Not Found", "No such resource.")
        refusal = self._refusal(
            request.clientproto,
            lambda name: _header(request, name.encode()),
            len(request.requestHeaders.getRawHeaders(b"origin", [])),
        )
        if refusal is not None:
            self._metrics.refusals.labels(refusal.label).inc()
            if refusal.code == 426:
                request.setHeader(b"Upgrade", b"websocket")
                for name, value in refusal.headers:
                    request.setHeader(name, value)
                return error_page(request, 426, refusal.phrase, refusal.text)
            client = self._client_address(request)
            if refusal.code == 503:
                return self._unavailable(request, client, refusal.text)
            return self._refuse(
                request,
                refusal.code,
                refusal.phrase.encode("ascii"),
                refusal.text + "\n",
                client,
                refusal.reason or refusal.text,
            )
        offers = request.requestHeaders.getRawHeaders(b"sec-websocket-extensions")
        if offers:
            # Declined, not refused: see wsecho.wire.deflate.acceptable_offers.
            kept = acceptable_offers([v.decode("latin-1") for v in offers])
            if kept is None:
                request.requestHeaders.removeHeader(b"sec-websocket-extensions")
            else:
                request.requestHeaders.setRawHeaders(
                    b"sec-websocket-extensions", [kept.encode("latin-1")]
                )
        return self._upgrade_with_a_slot(request, self._client_address(request))

    def upgrade_at_once(self, channel: Channel, data: bytes) -> bool:
        """
        Upgrade C{channel} if C{data}, its first read, holds a whole upgrade
        request to C{/socket} that L{render} would upgrade, and the
        connection limits (when this process decides them) give it a place:
        Autobahn is given the request as read, without a twisted.web
        request built for it first and written out again for Autobahn to
        parse. L{False}, and nothing done: twisted.web reads C{data}, and
        L{render} answers, refusals included.
        """
        end = data.find(b"\r\n\r\n") + 4
        if end < 4 or end > channel.totalHeadersSize or parse_head is None:
            return False
        line = data[: data.find(b"\r\n")].split(b" ")
        if len(line) != 3:
            return False
        method, target, version = line
        if (
            method != b"GET"
            or (target != b"/socket" and not target.startswith(b"/socket?"))
            or self._registry.link is not None  # the parent gives the places
        ):
            return False
        try:
            _, headers, counts = parse_head(data[:end])
        except ValueError:
            return False
        if (
            # Repeated, a header is joined for Autobahn by _upgrade.
            len(counts) != sum(counts.values())
            or len(counts) > channel.maxHeaders
            # twisted.web's request answers 421 (wsecho.http.channel).
            or not channel.serves(headers.get("host"))
            or self._refusal(version, headers.get) is not None
        ):
            return False
        offers = headers.get("sec-websocket-extensions")
        if offers is not None and acceptable_offers([offers]) != offers:
            return False  # render declines the offers Autobahn would refuse
        assert channel.transport is not None
        peer = channel.transport.getPeer()
        client = getattr(peer, "host", None) or str(peer)
        if self._proxies is not None:
            forwarded = headers.get(self._proxies.header)
            client = self._proxies.client_of(client, [forwarded] if forwarded else [])
        if self._registry.would_exceed(client) is not None:
            return False
        self._hand_over(channel, peer, client, data)
        return True

    def connect_h2(
        self, stream: StreamTransport, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """
        An extended CONNECT on an HTTP/2 stream (RFC 8441): refused as
        L{render} refuses an upgrade (with HTTP/2's statuses: no 426, whose
        Upgrade means nothing there), or, once the connection limits give a
        slot, run by a new echo protocol, handed the HTTP/1.1 upgrade
        request it stands for (with the deflate offers wsecho takes).
        """
        fields: dict[str, list[str]] = {}
        for name, value in headers:
            fields.setdefault(name.decode("latin-1"), []).append(
                value.decode("latin-1")
            )

        def header(name: str) -> str | None:
            values = fields.get(":authority" if name == "host" else name)
            return ", ".join(values) if values else None

        peer = stream.getPeer()
        client = getattr(peer, "host", None) or str(peer)
        if self._proxies is not None:
            client = self._proxies.client_of(
                client, fields.get(self._proxies.header.lower(), [])
            )
        path = header(":path") or ""
        refusal: Refusal | None
        # RFC 8441's token is "websocket", but a proxy passes on the
        # client's Upgrade as written ("WebSocket": Autobahn, HAProxy), and
        # RFC 6455 4.2.1 reads it without regard to case.
        if (header(":protocol") or "").lower() != "websocket":
            refusal = Refusal(
                "not_websocket",
                501,
                "Not Implemented",
                "CONNECT :protocol websocket only",
            )
        elif path != "/socket" and not path.startswith("/socket?"):
            refusal = Refusal("not_found", 404, "Not Found", "No such resource.")
        elif not stream.connection.serves(header("host")):
            refusal = Refusal(
                "misdirected", 421, "Misdirected Request", "not served here"
            )
        else:
            refusal = self.refusal(header, len(fields.get("origin", [])))
        if refusal is not None:
            self._refuse_h2(stream, refusal, client)
            return
        offers = fields.get("sec-websocket-extensions")
        kept = acceptable_offers(offers) if offers else None
        request = upgrade_request(
            [(n, v) for n, v in headers if n != b"sec-websocket-extensions"]
            + ([(b"sec-websocket-extensions", kept.encode("latin-1"))] if kept else [])
        )

        def answered(why: str | None) -> None:
            if not stream.connected:
                if why is None:
                    self._registry.untake(client)
                return
            if why is not None:
                self._refuse_h2(
                    stream,
                    Refusal(why.replace(" ", "_"), 503, "Service Unavailable", why),
                    client,
                )
                return
            protocol = self.factory.buildProtocol(peer)
            protocol.client_address = client
            protocol.http_version = "2"
            stream.attach(protocol, request)

        def failed(reason: object) -> None:
            answered("shutting down")

        self._registry.take_slot(client).addCallbacks(answered, failed)

    def _refuse_h2(
        self, stream: StreamTransport, refusal: Refusal, client: str
    ) -> None:
        self._metrics.refusals.labels(refusal.label).inc()
        self._log.info(
            "refused {client} (HTTP/2): {reason}",
            client=client,
            reason=refusal.reason or refusal.text,
        )
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"server", SERVER_NAME),
        ]
        headers += [(name.lower(), value) for name, value in refusal.headers]
        code = refusal.code
        if code == 426:
            code = 400  # HTTP/2 has no upgrade (RFC 9113 8.6)
        elif code == 503:
            headers.append((b"retry-after", b"5"))
        stream.refuse(code, headers, (refusal.text + "\n").encode())

    def _upgrade_with_a_slot(self, request: server.Request, client: str) -> int:
        """
        Upgrade once the connection limits give a slot (at once, or with
        --workers when the parent, which counts every worker's connections,
        answers), or answer 503.
        """
        taken = self._registry.take_slot(client)
        lost: list[object] = []
        if not taken.called:
            # The client may leave while the parent answers.
            request.notifyFinish().addErrback(lost.append)

        def answered(refusal: str | None) -> None:
            if lost:
                if refusal is None:
                    self._registry.untake(client)
                return
            if refusal is None:
                self._upgrade(request, client)
                return
            self._metrics.refusals.labels(refusal.replace(" ", "_")).inc()
            self._answer(request, self._unavailable(request, client, refusal))

        def failed(reason: object) -> None:
            if not lost:
                self._answer(
                    request, self._unavailable(request, client, "shutting down")
                )

        taken.addCallbacks(answered, failed)
        return NOT_DONE_YET

    @staticmethod
    def _answer(request: server.Request, body: bytes) -> None:
        request.setHeader(b"Content-Length", b"%d" % len(body))
        request.write(body)
        request.finish()

    def _hand_over(self, channel: Any, peer: Any, client: str, data: bytes) -> Any:
        """
        Give C{channel}'s connection to a new echo protocol, with the
        client's address decided here, and C{data} (the upgrade request) as
        its first bytes, as Autobahn's C{WebSocketResource.render} does,
        less the factory-wide handover of the address it cannot pass.
        """
        protocol = self.factory.buildProtocol(peer)
        protocol.client_address = client
        take_over(channel, protocol)
        protocol.dataReceived(data)
        return protocol

    def _upgrade(self, request: server.Request, client: str) -> None:
        """
        Upgrade with the request twisted.web read, written out again for
        Autobahn to parse, and what the client sent after it.
        """
        head = [request.method + b" " + request.uri + b" HTTP/1.1"]
        for name, values in request.requestHeaders.getAllRawHeaders():
            head.append(name + b": " + b",".join(values))
        channel = request.channel
        protocol = self._hand_over(
            channel,
            request.getClientAddress(),
            client,
            b"\r\n".join(head) + b"\r\n\r\n",
        )
        if isinstance(channel, Channel):
            # Bytes read with the upgrade request go to the protocol.
            channel.upgraded_to = protocol
        # What the client sent after its request while it waited (for a slot
        # from the parent): its first frames.
        early = read_ahead(channel)
        if early:
            protocol.dataReceived(early)

    def _unavailable(self, request: server.Request, client: str, reason: str) -> bytes:
        request.setHeader(b"Retry-After", b"5")
        return self._refuse(
            request,
            503,
            b"Service Unavailable",
            f"Not now: {reason}.\n",
            client,
            reason,
        )
