"""
wsecho-client (L{wsecho.client.cli.main}): C{output} (exit codes, what is
printed, statistics), C{cli} (the command line), C{session} (one run over
its connections), C{protocol} (Autobahn's client and its factory),
C{connect} (endpoints, proxies, TLS), C{diagnose} (why a connection
failed) and C{console} (--interactive).

The names from C{session} and C{protocol} are imported when first used:
the command line (--version, --help, usage errors) must not pay for
Twisted and Autobahn.
"""

from typing import Any

from wsecho.client.cli import main, parse_args, run
from wsecho.client.output import ClientError, Config, Message

__all__ = [
    "ClientError",
    "Config",
    "EchoClientProtocol",
    "Message",
    "Session",
    "configure_client_factory",
    "main",
    "parse_args",
    "run",
]


def __getattr__(name: str) -> Any:
    if name == "Session":
        from wsecho.client.session import Session

        return Session
    if name in ("EchoClientProtocol", "configure_client_factory"):
        from wsecho.client import protocol

        return getattr(protocol, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
