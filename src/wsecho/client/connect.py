"""
Where wsecho-client connects and how: the endpoint (straight, or through
an HTTP proxy with CONNECT), and the TLS options of wss:// (trusted CAs,
a client certificate).

Through a proxy, Autobahn's client speaks CONNECT itself (the factory's
C{proxy}) and starts TLS once the tunnel is up; the endpoint then only
reaches the proxy.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from OpenSSL import SSL, crypto
from twisted.internet import defer, endpoints, ssl

from wsecho.client.output import EXIT_USAGE, ClientError, Config


@dataclass
class Proxy:
    """
    An HTTP proxy to tunnel through: where it is, and its credentials.
    """

    host: str
    port: int
    authorization: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_proxy(url: str, origin: str = "--proxy") -> Proxy:
    """
    C{http://[USER:PASSWORD@]HOST[:PORT]} (or without the scheme) as a
    L{Proxy}; anything else is a usage error naming C{origin}.
    """
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        port = parts.port or 8080
    except ValueError:
        port = 0
    if parts.scheme != "http" or not parts.hostname or not port:
        raise ClientError(
            EXIT_USAGE, f"{origin} {url!r} is not http://HOST:PORT (an HTTP proxy)"
        )
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    return Proxy(parts.hostname, port, authorization)


def proxy_for(config: Config, secure: bool, host: str) -> Proxy | None:
    """
    The proxy for this run: C{--proxy}, else C{https_proxy} (wss://) or
    C{http_proxy} (ws://) from the environment unless C{no_proxy} names the
    host, as curl and Go read them.
    """
    if config.proxy is not None:
        return parse_proxy(config.proxy) if config.proxy else None
    from urllib.request import getproxies, proxy_bypass

    scheme = "https" if secure else "http"
    url = getproxies().get(scheme)
    if not url or proxy_bypass(host):
        return None
    if config.http2:
        raise ClientError(
            EXIT_USAGE,
            f"--http2 does not go through an HTTP proxy, and {scheme}_proxy "
            "names one: --proxy '' connects directly",
        )
    return parse_proxy(url, f"the environment's {scheme}_proxy")


def tls_options(config: Config, host: str, protocols: list[bytes] | None = None) -> Any:
    """
    The TLS options of wss://; C{protocols}, the ALPN protocols to offer
    (C{[b"h2"]} with --http2).
    """
    client = _client_certificate(config)
    if config.insecure:
        if client is None:
            return ssl.CertificateOptions(verify=False, acceptableProtocols=protocols)
        return ssl.CertificateOptions(
            verify=False,
            privateKey=client.privateKey.original,
            certificate=client.original,
            acceptableProtocols=protocols,
        )
    trust: Any = None
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
        trust = ssl.trustRootFromCertificates(roots)
    return ssl.optionsForClientTLS(
        host, trustRoot=trust, clientCertificate=client, acceptableProtocols=protocols
    )


def _client_certificate(config: Config) -> Any:
    """
    --cert (and --key, which defaults to the --cert file) as Twisted's
    C{PrivateCertificate}, or None.
    """
    if config.cert is None:
        if config.key is not None:
            raise ClientError(EXIT_USAGE, "--key needs --cert")
        return None
    key = config.key or config.cert
    try:
        with open(config.cert, "rb") as f:
            cert_pem = f.read()
        with open(key, "rb") as f:
            key_pem = f.read()
    except OSError as e:
        raise ClientError(EXIT_USAGE, f"--cert/--key: {e}") from None
    if b"PRIVATE KEY-----" not in key_pem:
        where = f"--key {key}" if config.key else f"--cert {key}"
        raise ClientError(
            EXIT_USAGE, f"{where}: no private key in it (--key names the key's file)"
        )
    try:
        return ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
    except (SSL.Error, crypto.Error, ValueError) as e:
        raise ClientError(
            EXIT_USAGE, f"--cert {config.cert}: not a certificate and its key ({e})"
        ) from None


def _pem_blocks(pem: bytes) -> list[bytes]:
    end = b"-----END CERTIFICATE-----"
    return [
        block + end
        for block in pem.split(end)
        if b"-----BEGIN CERTIFICATE-----" in block
    ]


def connect(reactor: Any, config: Config, factory: Any) -> defer.Deferred[Any]:
    """
    Open a connection for C{factory} to C{config.url}, through the factory's
    proxy (L{Proxy}) when it has one.
    """
    from autobahn.websocket.util import parse_url

    secure, host, port, _, _, _ = parse_url(config.url)
    if config.http2:
        return _connect_http2(reactor, config, factory, secure, host, port)
    proxy: Proxy | None = getattr(factory, "wsecho_proxy", None)
    if proxy is not None:
        endpoint: Any = endpoints.HostnameEndpoint(
            reactor, proxy.host, proxy.port, timeout=config.timeout
        )
    else:
        endpoint = endpoints.HostnameEndpoint(
            reactor, host, port, timeout=config.timeout
        )
        if secure:
            endpoint = endpoints.wrapClientTLS(tls_options(config, host), endpoint)
    result: defer.Deferred[Any] = endpoint.connect(factory)
    return result


def _connect_http2(
    reactor: Any, config: Config, factory: Any, secure: bool, host: str, port: int
) -> defer.Deferred[Any]:
    """
    --http2: one HTTP/2 connection (TLS offering ALPN h2 for wss://, prior
    knowledge for ws://) whose first stream carries the WebSocket.
    """
    from wsecho.client.http2 import open_http2

    name = f"[{host}]" if ":" in host else host
    authority = name if port == (443 if secure else 80) else f"{name}:{port}"
    endpoint: Any = endpoints.HostnameEndpoint(
        reactor, host, port, timeout=config.timeout
    )
    if secure:
        endpoint = endpoints.wrapClientTLS(
            tls_options(config, host, protocols=[b"h2"]), endpoint
        )
    return open_http2(endpoint, config, factory, secure, authority)
