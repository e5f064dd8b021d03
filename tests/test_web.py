"""
The HTTP side, in memory: the index page, the answers /socket gives before
a WebSocket upgrade, and the origin policy.
"""

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase, TestCase

from wsecho.echo import EchoSettings
from wsecho.web import OriginPolicy, make_site

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
        / answers an HTML page that explains the service and connects its
        echo console to /socket, over wss: when the page came over https.
        """
        response = await self.treq.get("http://localhost:8181/")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"),
            [b"text/html; charset=utf-8"],
        )
        body = await response.text()
        self.assertIn("WebSocket echo", body)
        self.assertIn('"/socket"', body)
        self.assertIn('"wss://"', body)

    async def test_unknown_path(self) -> None:
        """
        Other paths answer 404.
        """
        for path in ("/nope", "/socket/child", "/socket/", "/index.html"):
            response = await self.treq.get(f"http://localhost:8181{path}")
            self.assertEqual(response.code, 404, path)

    async def test_socket_without_upgrade(self) -> None:
        """
        GET /socket without an upgrade answers 426 with a short text body.
        """
        response = await self.treq.get("http://localhost:8181/socket")
        self.assertEqual(response.code, 426)
        self.assertIn("WebSocket endpoint", await response.text())

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
