"""
wss listeners whose certificate can be replaced while they run: on SIGHUP
wsecho reads the key and certificate files again. New connections get the
new certificate; open connections keep theirs and stay open.
"""

from __future__ import annotations

from typing import Any

from OpenSSL.SSL import Connection
from twisted.internet import endpoints
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from wsecho._compat.twisted import TLS_RELOAD, set_tls_context, tls_context
from wsecho.daemon.parse import tls_problem


def is_tls(description: str) -> bool:
    return description.split(":", 1)[0].strip().lower() == "ssl"


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """
    The TLS settings of one C{ssl:} listen description, built by Twisted's
    own endpoint parser from the files it names, and built again on
    L{reload}. Each new connection takes the settings current when it
    arrives; an open one keeps those it began with.
    """

    _log = Logger()

    def __init__(self, description: str, reactor: Any, endpoint: Any) -> None:
        """
        Take over the TLS settings of C{endpoint}, parsed from
        C{description}.
        """
        self.description = description
        self._reactor = reactor
        # Twisted keeps no public handle on an endpoint's certificate
        # options, and parsing the description ourselves would drift from
        # its syntax (escapes, extraCertChain, dhParameters, ...).
        self._current = tls_context(endpoint)
        set_tls_context(endpoint, self)

    def _load(self) -> Any:
        # Which file, and what is wrong with it, rather than OpenSSL's
        # [('DECODER routines', '', 'unsupported')].
        problem = tls_problem(self.description)
        if problem is not None:
            raise ValueError(problem)
        endpoint = endpoints.serverFromString(self._reactor, self.description)
        return tls_context(endpoint)

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
