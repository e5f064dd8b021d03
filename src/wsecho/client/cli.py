"""
wsecho-client: send messages to a WebSocket echo server, print the echoes
with their type, and exit 0 only when every echo matched what was sent.

The seed's client, with what users of wscat and websocat expect.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import IO, Any

from autobahn.websocket.util import parse_url
from twisted.internet import defer, endpoints, task
from twisted.internet.protocol import connectionDone
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from wsecho import __version__
from wsecho.client.output import (
    DEFAULT_MESSAGE,
    DEFAULT_URL,
    EXIT_CODES,
    ClientError,
    Config,
    Message,
)
from wsecho.client.session import Session, client_factory, tls_options


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsecho-client",
        description="Send messages to a WebSocket echo server and check the echoes.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "url",
        nargs="?",
        default=DEFAULT_URL,
        help=f"ws:// or wss:// URL (default {DEFAULT_URL})",
    )
    parser.add_argument(
        "message",
        nargs="*",
        help=f"messages to send, in order (default {DEFAULT_MESSAGE!r}); - reads one from stdin",
    )
    parser.add_argument(
        "-b", "--binary", action="store_true", help="send the messages as binary"
    )
    parser.add_argument(
        "-n",
        "--count",
        type=int,
        default=1,
        metavar="N",
        help="send every message N times (default 1)",
    )
    parser.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="send each line read from stdin (as binary with --binary); "
        "/ping [DATA] sends a ping and prints the pong's round trip, "
        "/close [CODE [REASON]] closes",
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="a client for any server: print what arrives, compare nothing "
        "(without --interactive, wait for as many messages as were sent); "
        "exit 0 on a clean close",
    )
    parser.add_argument(
        "-s",
        "--subprotocol",
        action="append",
        default=[],
        metavar="NAME",
        help="offer this subprotocol (repeatable)",
    )
    parser.add_argument("-o", "--origin", help="send this Origin header")
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="send an extra header (repeatable)",
    )
    parser.add_argument(
        "--cafile", help="trust the CA certificates in this PEM file for wss://"
    )
    parser.add_argument(
        "-k",
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate for wss://",
    )
    parser.add_argument(
        "-t",
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="for connecting and for each echo (default 10)",
    )
    parser.add_argument(
        "--no-compression", action="store_true", help="do not offer permessage-deflate"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print each echo, the summary and any error as a JSON object per line",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="do not print each echo, only the summary (with --count or --json)",
    )
    parser.add_argument(
        "--version", action="version", version=f"wsecho-client {__version__}"
    )
    return parser


def parse_args(argv: Sequence[str], stdin: IO[bytes]) -> Config:
    """
    Turn the command line into a L{Config}; argparse exits with status 2 on
    bad arguments.
    """
    parser = make_parser()
    args = parser.parse_intermixed_args(argv)
    try:
        parse_url(args.url)
    except Exception as e:
        parser.error(f"URL {args.url!r}: {e}")
    if args.count < 1:
        parser.error("--count must be at least 1")
    if not args.timeout > 0:
        parser.error("--timeout must be more than 0 seconds")
    if args.interactive and args.message:
        parser.error("--interactive reads its messages from stdin; give no MESSAGE")
    headers = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            parser.error(f"--header {header!r} is not 'NAME: VALUE'")
        headers[name.strip()] = value.strip()
    messages = []
    for text in args.message or ([] if args.interactive else [DEFAULT_MESSAGE]):
        payload = stdin.read() if text == "-" else text.encode("utf-8")
        if not args.binary:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                parser.error("stdin is not UTF-8 text; use --binary")
        messages.append(Message(payload, args.binary))
    return Config(
        url=args.url,
        messages=messages,
        count=args.count,
        interactive=args.interactive,
        subprotocols=args.subprotocol,
        origin=args.origin,
        headers=headers,
        cafile=args.cafile,
        insecure=args.insecure,
        timeout=args.timeout,
        compression=not args.no_compression,
        json=args.json,
        quiet=args.quiet,
        binary=args.binary,
        check=not args.no_check,
    )


class _Console(LineOnlyReceiver):
    """
    --interactive: a message per line of stdin; /ping and /close.
    """

    delimiter = b"\n"

    def __init__(self, session: Session) -> None:
        self.session = session

    def lineReceived(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        command, _, rest = line.partition(b" ")
        if command == b"/close":
            code_text, _, reason = rest.partition(b" ")
            try:
                code = int(code_text) if code_text else 1000
                if not (code == 1000 or 3000 <= code <= 4999):
                    raise ValueError(code)
            except ValueError:
                print(
                    "wsecho-client: /close takes 1000 or a code from 3000 to "
                    "4999, then a reason",
                    file=self.session.err,
                )
                return
            self.session.end_of_input(code, reason.decode("utf-8", "replace") or None)
        elif command == b"/ping":
            self.session.ping(rest[:125])
        else:
            binary = self.session.config.binary
            if not binary:
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    print(
                        "wsecho-client: not UTF-8; use --binary", file=self.session.err
                    )
                    return
            self.session.submit(Message(line, binary))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # End of stdin: close as if /close had been typed, once the echoes
        # of what was sent are back.
        self.session.end_of_input()


def run(
    reactor: Any,
    config: Config,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
) -> defer.Deferred[int]:
    """
    Connect, exchange the messages and close; the Deferred fires with the
    exit code or fails with L{ClientError}. With C{config.interactive} the
    messages are read from stdin.
    """
    isSecure, host, port, _, _, _ = parse_url(config.url)
    endpoint: Any = endpoints.HostnameEndpoint(
        reactor, host, port, timeout=config.timeout
    )
    if isSecure:
        endpoint = endpoints.wrapClientTLS(tls_options(config, host), endpoint)
    session = Session(
        config,
        reactor,
        out if out is not None else sys.stdout,
        err if err is not None else sys.stderr,
    )
    endpoint.connect(client_factory(config, session)).addErrback(session.connect_failed)
    if config.interactive:
        from twisted.internet.stdio import StandardIO

        console = StandardIO(_Console(session), reactor=reactor)

        def stop_console(result: Any) -> Any:
            console.loseConnection()
            return result

        session.done.addBoth(stop_console)
    return session.done


def main(argv: Sequence[str] | None = None) -> None:
    """
    The C{wsecho-client} console script.
    """
    config = parse_args(sys.argv[1:] if argv is None else argv, sys.stdin.buffer)

    async def _main(reactor: Any) -> None:
        try:
            code = await run(reactor, config)
        except ClientError as e:
            print(f"wsecho-client: {e}", file=sys.stderr)
            code = e.code
            if config.json:
                print(json.dumps({"event": "error", "exit": code, "message": str(e)}))
        if code:
            raise SystemExit(code)

    task.react(lambda reactor: defer.Deferred.fromCoroutine(_main(reactor)))
