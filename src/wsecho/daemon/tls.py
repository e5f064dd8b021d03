"""
wss listeners whose certificate can be replaced while they run: on SIGHUP
wsecho reads the key and certificate files again. New connections get the
new certificate; open connections keep theirs and stay open.
"""

from __future__ import annotations

from typing import Any

from OpenSSL.SSL import NO_OVERLAPPING_PROTOCOLS, Connection
from twisted.internet import endpoints
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from wsecho._compat.twisted import TLS_RELOAD, set_tls_context, tls_context
from wsecho.daemon.parse import tls_problem


def is_tls(description: str) -> bool:
    return description.split(":", 1)[0].strip().lower() == "ssl"


def alpn(http2: bool) -> tuple[bytes, ...]:
    # The ALPN protocols a listener chooses from, ours first (RFC 7301).
    return (b"h2", b"http/1.1") if http2 else (b"http/1.1",)


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """
    The TLS settings of one C{ssl:} listen description, built by Twisted's
    own endpoint parser from the files it names, and built again on
    L{reload}. Each new connection takes the settings current when it
    arrives; an open one keeps those it began with.
    """

    _log = Logger()

    def __init__(
        self,
        description: str,
        reactor: Any,
        endpoint: Any,
        protocols: tuple[bytes, ...] = (b"http/1.1",),
    ) -> None:
        """
        Take over the TLS settings of C{endpoint}, parsed from
        C{description}; C{protocols} are the ALPN protocols chosen from
        the client's offer, in our order of preference.
        """
        self.description = description
        self._reactor = reactor
        self._protocols = protocols
        # Twisted keeps no public handle on an endpoint's certificate
        # options, and parsing the description ourselves would drift from
        # its syntax (escapes, extraCertChain, dhParameters, ...).
        self._current = tls_context(endpoint)
        set_tls_context(endpoint, self)
        self._choose_protocols(self._current)

    def _choose_protocols(self, options: Any) -> None:
        # ALPN (RFC 7301) on the context the options make (Twisted's endpoint
        # description has no parameter for it).
        if options is None or not hasattr(options, "getContext"):
            return
        ours = self._protocols

        def select(connection: Connection, offered: list[bytes]) -> Any:
            for protocol in ours:
                if protocol in offered:
                    return protocol
            return NO_OVERLAPPING_PROTOCOLS

        options.getContext().set_alpn_select_callback(select)

    def _load(self) -> Any:
        # Which file, and what is wrong with it, rather than OpenSSL's
        # [('DECODER routines', '', 'unsupported')].
        problem = tls_problem(self.description)
        if problem is not None:
            raise ValueError(problem)
        endpoint = endpoints.serverFromString(self._reactor, self.description)
        options = tls_context(endpoint)
        self._choose_protocols(options)
        return options

    def reload(self) -> bool:
        """
        Read the key and certificate files again; keep the current ones, and
        say why, when the new ones do not load.
        """
        if not TLS_RELOAD:
            self._log.warn(
                "TLS files of {description} not reloaded: this Twisted keeps "
                "its endpoints' certificates where wsecho cannot reach them",
                description=self.description,
            )
            return False
        try:
            self._current = self._load()
        except Exception as e:
            self._log.error(
                "TLS files of {description} not reloaded, still serving the "
                "previous certificate: {error}",
                description=self.description,
                error=e,
            )
            return False
        self._log.info(
            "TLS files of {description} reloaded", description=self.description
        )
        return True

    def serverConnectionForTLS(self, tlsProtocol: Any) -> Connection:
        return self._current.serverConnectionForTLS(tlsProtocol)  # type: ignore[no-any-return]
