"""
What a browser sees: the index page and its console (script, style sheet,
icon), and the site's own pages for errors, all served from the package
and nothing loaded from elsewhere (the Content-Security-Policy says so).
"""

from __future__ import annotations

from html import escape
from importlib.resources import files
from typing import Any, cast

from twisted.logger import Logger
from twisted.web import server
from twisted.web.error import UnsupportedMethod
from twisted.web.resource import Resource

from wsecho.text import printable
from wsecho.ws.registry import Registry

# Only this site's own scripts, style sheet and icon, and WebSockets to it.
# Trusted Types with no policy: the console writes text only (textContent,
# never innerHTML), so no string can ever become markup or script.
CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    b"connect-src 'self'; base-uri 'none'; form-action 'none'; "
    b"frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
)

ASSETS = {
    b"": ("index.html", b"text/html; charset=utf-8"),
    b"console.js": ("console.js", b"text/javascript; charset=utf-8"),
    # The console's modules, which console.js imports.
    b"bytes.js": ("bytes.js", b"text/javascript; charset=utf-8"),
    b"chart.js": ("chart.js", b"text/javascript; charset=utf-8"),
    b"console.css": ("console.css", b"text/css; charset=utf-8"),
    b"favicon.svg": ("favicon.svg", b"image/svg+xml"),
    # What browsers ask for unprompted.
    b"favicon.ico": ("favicon.svg", b"image/svg+xml"),
}

# twisted.web answers 405 for the methods it knows, 501 for others.
_KNOWN_METHODS = (b"GET", b"HEAD", b"POST")


def error_page(request: server.Request, code: int, phrase: str, text: str) -> bytes:
    """
    Answer C{request} with the site's page for an error.
    """
    request.setResponseCode(code, phrase.encode("ascii"))
    request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
    request.setHeader(b"Content-Security-Policy", CSP)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{code} {escape(phrase)} - wsecho</title>\n"
        '<link rel="icon" href="/favicon.svg" type="image/svg+xml">\n'
        '<link rel="stylesheet" href="/console.css">\n</head>\n'
        f'<body class="error"><main>\n<h1>{code} {escape(phrase)}</h1>\n'
        f"<p>{escape(text)}</p>\n"
        '<p><a href="/">wsecho</a>: the echo console, and what this service is.</p>\n'
        "</main></body>\n</html>\n"
    ).encode()


class Styled(Resource):
    """
    A resource whose unsupported methods get the site's pages: 405 with
    C{Allow}, or 501 for methods twisted.web does not know either.
    """

    def render(self, request: server.Request) -> Any:
        try:
            return super().render(request)
        except UnsupportedMethod as e:
            if request.method == b"HEAD" and hasattr(self, "render_GET"):
                # The GET answer's headers; no body, so that twisted.web
                # does not log that it ate one.
                body = self.render_GET(request)
                request.setHeader(b"Content-Length", b"%d" % len(body))
                return b""
            method = request.method.decode("latin-1", "replace")
            if request.method not in _KNOWN_METHODS:
                return error_page(
                    request, 501, "Not Implemented", f"{method} is not a method here."
                )
            allowed = b", ".join(e.allowedMethods)
            request.setHeader(b"Allow", allowed)
            return error_page(
                request,
                405,
                "Method Not Allowed",
                f"{method} is not allowed here; {allowed.decode()} are.",
            )


class Asset(Styled):
    """
    One of the files of the page, from the package.
    """

    isLeaf = True

    def __init__(self, name: str, content_type: bytes) -> None:
        super().__init__()
        self._body = files("wsecho.http").joinpath("static", name).read_bytes()
        self._type = content_type

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"Content-Type", self._type)
        request.setHeader(b"Content-Security-Policy", CSP)
        request.setHeader(b"Cache-Control", b"no-cache")
        return self._body


class NotFound(Styled):
    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        return error_page(request, 404, "Not Found", "There is nothing at this path.")


class Root(Styled):
    """
    The site's root: the page's files, and the site's 404 for what is not
    there.
    """

    def __init__(self) -> None:
        super().__init__()
        for path, (name, content_type) in ASSETS.items():
            self.putChild(path, Asset(name, content_type))

    def getChild(self, path: bytes, request: server.Request) -> Resource:
        return NotFound()


def text_page(request: server.Request, code: int, phrase: bytes, body: str) -> bytes:
    """
    A plain-text answer with C{code}.
    """
    request.setResponseCode(code, phrase)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return body.encode("utf-8")


class Misdirected(Resource):
    """
    What a request gets on every path but the health checks when its Host
    is not a name this daemon answers to (L{wsecho.http.policy.HostPolicy}):
    421, and the connection closed.
    """

    _log = Logger()
    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        site: Any = cast(Any, request.channel).site
        site.context.metrics.refusals.labels("host").inc()
        peer = request.getClientAddress()
        self._log.info(
            "refused {client}: Host {host!r} is not served here",
            client=getattr(peer, "host", None) or str(peer),
            host=printable(host[:256]),
        )
        request.setHeader(b"Connection", b"close")
        request.channel.persistent = False
        return text_page(
            request,
            421,
            b"Misdirected Request",
            f"This server does not answer to {printable(host[:256])!r} here: "
            "ask for it as localhost, 127.0.0.1 or [::1], or start it with "
            "--allowed-host for this name.\n",
        )


class Health(Styled):
    """
    C{/healthz}: the process is alive. C{/readyz}: it takes new connections
    (503 once it has begun shutting down, for load balancers).
    """

    isLeaf = True

    def __init__(self, registry: Registry, readiness: bool) -> None:
        super().__init__()
        self._registry = registry
        self._readiness = readiness

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"Cache-Control", b"no-store")
        if self._readiness and not self._registry.ready:
            return text_page(request, 503, b"Service Unavailable", "shutting down\n")
        return text_page(request, 200, b"OK", "ready\n" if self._readiness else "ok\n")
