"""
wsecho-client (L{wsecho.client.cli.main}), in three parts: C{output} (exit
codes, messages, statistics, errors), C{session} (one run over one
connection) and C{cli} (the command line and the console).
"""

from wsecho.client.cli import main, parse_args, run
from wsecho.client.output import ClientError, Config, Message
from wsecho.client.session import EchoClientProtocol, Session, configure_client_factory

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
