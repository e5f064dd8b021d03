"""
The HTTP side, in memory: the index page, the answers /socket gives before
a WebSocket upgrade, the origin policy and the trust in proxies.
"""

import pytest
from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http_headers import Headers

from wsecho.http.policy import OriginPolicy, ProxyTrust
from wsecho.http.site import make_site
from wsecho.settings import EchoSettings

UPGRADE = {
    b"Upgrade": [b"websocket"],
    b"Connection": [b"Upgrade"],
    b"Sec-WebSocket-Key": [b"dGhlIHNhbXBsZSBub25jZQ=="],
    b"Sec-WebSocket-Version": [b"13"],
}


class SiteTests(TestCase):
    def setUp(self) -> None:
        self.treq = StubTreq(make_site(EchoSettings()).resource)

    async def test_index(self) -> None:
        """
        / answers an HTML page that explains the service; its console script
        connects to /socket, over wss: when the page came over https.
        """
        response = await self.treq.get("http://localhost:8181/")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"),
            [b"text/html; charset=utf-8"],
        )
        body = await response.text()
        self.assertIn("WebSocket echo", body)
        self.assertIn('src="/console.js"', body)
        script = await (await self.treq.get("http://localhost:8181/console.js")).text()
        self.assertIn('"/socket"', script)
        self.assertIn('"wss://"', script)

    async def test_nothing_from_elsewhere(self) -> None:
        """
        The page, its script, style sheet and icon come from the site, with
        a Content-Security-Policy that allows nothing else.
        """
        for path, kind in (
            ("/", b"text/html; charset=utf-8"),
            ("/console.js", b"text/javascript; charset=utf-8"),
            ("/console.css", b"text/css; charset=utf-8"),
            ("/favicon.svg", b"image/svg+xml"),
            ("/favicon.ico", b"image/svg+xml"),
        ):
            response = await self.treq.get(f"http://localhost:8181{path}")
            self.assertEqual(response.code, 200, path)
            self.assertEqual(response.headers.getRawHeaders(b"content-type"), [kind])
            (policy,) = response.headers.getRawHeaders(b"content-security-policy")
            self.assertIn(b"default-src 'none'", policy)
            self.assertIn(b"script-src 'self'", policy)
            body = await response.text()
            self.assertNotRegex(body, r"(src|href)=\"(https?:)?//", path)

    async def test_unknown_path(self) -> None:
        """
        Other paths answer the site's own 404 page.
        """
        for path in ("/nope", "/socket/child", "/socket/", "/index.html"):
            response = await self.treq.get(f"http://localhost:8181{path}")
            self.assertEqual(response.code, 404, path)
            body = await response.text()
            self.assertIn("<h1>404 Not Found</h1>", body)
            self.assertIn('href="/console.css"', body)

    async def test_methods(self) -> None:
        """
        A method a resource does not take answers the site's 405 page with
        Allow, one twisted.web does not know its 501 page; HEAD works where
        GET does.
        """
        response = await self.treq.post("http://localhost:8181/healthz")
        self.assertEqual(response.code, 405)
        allowed = response.headers.getRawHeaders(b"allow")[0]
        self.assertIn(b"GET", allowed)
        self.assertIn("<h1>405 Method Not Allowed</h1>", await response.text())
        response = await self.treq.request("PUT", "http://localhost:8181/")
        self.assertEqual(response.code, 501)
        self.assertIn("<h1>501 Not Implemented</h1>", await response.text())
        response = await self.treq.head("http://localhost:8181/")
        self.assertEqual(response.code, 200)

    async def test_socket_without_upgrade(self) -> None:
        """
        GET /socket without an upgrade answers the site's 426 page.
        """
        response = await self.treq.get("http://localhost:8181/socket")
        self.assertEqual(response.code, 426)
        body = await response.text()
        self.assertIn("<h1>426 Upgrade Required</h1>", body)
        self.assertIn("WebSocket endpoint", body)

    async def test_cross_origin_refused(self) -> None:
        """
        A browser upgrade from another origin answers 403 before any
        WebSocket work.
        """
        response = await self.treq.get(
            "http://localhost:8181/socket",
            headers={**UPGRADE, b"Origin": [b"https://evil.example"]},
        )
        self.assertEqual(response.code, 403)
        self.assertIn("Origin not allowed", await response.text())


class OriginPolicyTests(SynchronousTestCase):
    def test_no_origin(self) -> None:
        """
        Clients that send no Origin (not browsers) are accepted.
        """
        self.assertTrue(OriginPolicy().allows(None, "localhost:8181"))

    def assertDecisions(self, policy, allowed, refused, host="ws.test"):
        """
        C{policy} allows each origin in C{allowed} and refuses each in
        C{refused}, for requests to C{host}.
        """
        for origin in allowed:
            self.assertTrue(policy.allows(origin, host), origin)
        for origin in refused:
            self.assertFalse(policy.allows(origin, host), origin)

    def test_same_origin(self) -> None:
        """
        By default only a page from the host and port being connected to may
        connect, whatever the case of the names and however the default
        port is written.
        """
        policy = OriginPolicy()
        self.assertDecisions(
            policy,
            ["http://localhost:8181", "http://LocalHost:8181"],
            [
                "http://localhost:8182",
                "http://evil.com",
                "http://localhost.evil.com:8181",
            ],
            host="localhost:8181",
        )
        self.assertTrue(policy.allows("https://example.com", "example.com"))
        self.assertTrue(policy.allows("http://example.com", "example.com:80"))
        self.assertTrue(policy.allows("http://[::1]:8181", "[::1]:8181"))
        self.assertFalse(policy.allows("http://localhost:8181", None))

    def test_null_and_garbage(self) -> None:
        """
        The null origin and malformed origins are refused by default.
        """
        self.assertDecisions(
            OriginPolicy(),
            [],
            [
                "null",
                "",
                "not a url",
                "http://",
                "http://host:port",
                "http://localhost:8181/path",
            ],
            host="localhost:8181",
        )

    def test_patterns(self) -> None:
        """
        --allowed-origin patterns match with or without the default port.
        """
        self.assertDecisions(
            OriginPolicy(["https://*.example.com", "http://localhost:*"]),
            [
                "https://a.example.com",
                "https://a.example.com:443",
                "http://localhost:3000",
            ],
            ["https://example.com.evil.com", "http://a.example.com", "null"],
        )

    def test_wildcard_and_null(self) -> None:
        """
        '*' accepts every origin, null included; 'null' accepts null only.
        """
        self.assertTrue(OriginPolicy(["*"]).allows("https://evil.com", "ws.test"))
        self.assertTrue(OriginPolicy(["*"]).allows("null", "ws.test"))
        self.assertTrue(OriginPolicy(["null"]).allows("null", "ws.test"))
        self.assertFalse(OriginPolicy(["null"]).allows("https://evil.com", "ws.test"))


class _Headers:
    """
    Just enough of a request for L{ProxyTrust.client_address}.
    """

    def __init__(self, name: str, values: list[str]) -> None:
        self.requestHeaders = Headers({name: values} if values else {})


@pytest.mark.parametrize(
    "trust, header, values, peer, client",
    [
        # One proxy: the address it appended, whatever the client wrote.
        ("1", "x-forwarded-for", ["6.6.6.6, 198.51.100.1"], "10.0.0.2", "198.51.100.1"),
        (
            "1",
            "x-forwarded-for",
            ["6.6.6.6", "198.51.100.1"],
            "10.0.0.2",
            "198.51.100.1",
        ),
        (
            "2",
            "x-forwarded-for",
            ["6.6.6.6, 198.51.100.1, 10.0.0.3"],
            "10.0.0.2",
            "198.51.100.1",
        ),
        # Fewer addresses than proxies: believe none.
        ("2", "x-forwarded-for", ["198.51.100.1"], "10.0.0.2", "10.0.0.2"),
        ("1", "x-forwarded-for", [], "10.0.0.2", "10.0.0.2"),
        # Networks: the rightmost address not in them.
        (
            "10.0.0.0/8",
            "x-forwarded-for",
            ["6.6.6.6, 198.51.100.1, 10.1.1.1"],
            "10.0.0.2",
            "198.51.100.1",
        ),
        ("10.0.0.0/8", "x-forwarded-for", ["10.1.1.1"], "10.0.0.2", "10.1.1.1"),
        # A peer outside them: the header proves nothing.
        (
            "10.0.0.0/8",
            "x-forwarded-for",
            ["198.51.100.1"],
            "203.0.113.9",
            "203.0.113.9",
        ),
        # Ports, brackets, IPv6 normalised; RFC 7239 for= elements.
        ("1", "x-forwarded-for", ["198.51.100.1:4711"], "::1", "198.51.100.1"),
        ("1", "x-forwarded-for", ["[2001:DB8::1]:4711"], "::1", "2001:db8::1"),
        (
            "1",
            "forwarded",
            ['for=6.6.6.6, for="[2001:db8::1]:80";proto=https'],
            "::1",
            "2001:db8::1",
        ),
        ("::1", "forwarded", ["For=198.51.100.1;by=10.0.0.1"], "::1", "198.51.100.1"),
        # X-Forwarded-For is not read when Forwarded is the header, and the other way round.
        ("1", "forwarded", [], "::1", "::1"),
        # Not an address: passed on as it is (obfuscated identifiers).
        ("1", "forwarded", ["for=_hidden"], "::1", "_hidden"),
    ],
)
def test_proxy_trust(trust, header, values, peer, client) -> None:
    """
    --trust-proxy picks the client's address from the forwarded chain.
    """
    proxies = ProxyTrust.parse([trust], header)
    other = "forwarded" if header == "x-forwarded-for" else "x-forwarded-for"
    request = _Headers(header, values)
    request.requestHeaders.setRawHeaders(other, ["203.0.113.66"])
    assert proxies.client_address(peer, request) == client


def test_idle_connection_is_closed_at_the_deadline() -> None:
    """
    A connection that stops halfway through its upgrade request gets 408
    and is closed once --open-handshake-timeout has passed, not before.
    """
    from twisted.internet.task import Clock

    from support.site import connect_in_memory

    clock = Clock()
    site = make_site(EchoSettings(open_handshake_timeout=10))
    channel, transport = connect_in_memory(site, clock)
    channel.dataReceived(b"GET /socket HTTP/1.1\r\n")
    clock.advance(9.9)
    assert transport.value() == b"" and not transport.disconnecting
    clock.advance(0.1)
    assert transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert transport.disconnecting
    site.context.stop()


def test_keep_alive_connection_has_a_deadline_too() -> None:
    """
    After a complete request, a kept-alive connection has
    --open-handshake-timeout for its next request: 408 and closed.
    """
    from twisted.internet.task import Clock

    from support.site import connect_in_memory

    clock = Clock()
    site = make_site(EchoSettings(open_handshake_timeout=10))
    channel, transport = connect_in_memory(site, clock)
    channel.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200 OK\r\n")
    clock.advance(9.9)
    assert b"408" not in transport.value()
    clock.advance(0.1)
    assert b"HTTP/1.1 408 Request Timeout" in transport.value()
    assert transport.disconnecting
    site.context.stop()
