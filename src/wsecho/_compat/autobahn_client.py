"""
Autobahn's client protocol's internals that wsecho-client uses (its proxy's
CONNECT, TLS inside the tunnel, the close bookkeeping), each with why, read
and written here and nowhere else; the server's are in
L{wsecho._compat.autobahn}.
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import WebSocketClientProtocol


class ClientProtocol(WebSocketClientProtocol):
    """
    Autobahn's client protocol with its proxy and TLS steps given
    wsecho-client's meaning: the proxy's credentials sent, the proxy's
    refusal kept, and whether TLS has answered (the base of
    L{wsecho.client.protocol.EchoClientProtocol}).
    """

    # Whether a TLS handshake completed (wss:), for the diagnosis.
    tls_done = False
    # Why an HTTP proxy refused the tunnel (CONNECT), if it did.
    proxy_error: str | None = None

    def dataReceived(self, data: bytes) -> None:
        # Decrypted data came, so TLS (if any) was answered.
        self.tls_done = True
        super().dataReceived(data)

    def startTLS(self) -> None:
        # Through a proxy, TLS starts after the proxy's plain answer.
        self.tls_done = False
        super().startTLS()

    def startProxyConnect(self) -> None:
        # Autobahn's own request, with the proxy's credentials if the
        # factory has any (its proxy_authorization).
        factory: Any = self.factory
        host, port = factory.host, factory.port
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        authorization = getattr(factory, "proxy_authorization", None)
        if authorization:
            request += f"Proxy-Authorization: {authorization}\r\n"
        self.sendData((request + "\r\n").encode("utf-8"))

    def failProxyConnect(self, reason: str) -> None:
        self.proxy_error = reason
        super().failProxyConnect(reason)


def is_secure(factory: Any) -> bool:
    # A client factory's URL is wss: (Autobahn's parse of it).
    return bool(factory.isSecure)


def closed_by_me(protocol: Any) -> bool:
    # This end sent the first close frame.
    return bool(protocol.closedByMe)
