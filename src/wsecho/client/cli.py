"""
wsecho-client: send messages to a WebSocket echo server, print the echoes
with their type, and exit 0 only when every echo matched what was sent.

The seed's client, with what users of wscat and websocat expect. Parsing
the command line imports nothing heavy, so that --version, --help and usage
errors answer at once; Twisted, Autobahn and OpenSSL are imported by L{run}.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from wsecho import __version__
from wsecho.client.output import (
    DEFAULT_MESSAGE,
    DEFAULT_URL,
    EXIT_CODES,
    EXIT_USAGE,
    ClientError,
    Config,
    Message,
    Output,
)

if TYPE_CHECKING:
    from twisted.internet import defer

# HOST:PORT[/PATH] without a scheme: a host name or address (not digits
# alone, so that "10:30" stays a message), a port, maybe a path.
_HOST_PORT = re.compile(
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*[A-Za-z.-][A-Za-z0-9.-]*):\d{1,5}(/\S*)?"
)


def is_url(argument: str) -> bool:
    return "://" in argument or _HOST_PORT.fullmatch(argument) is not None


def normal_url(argument: str) -> str:
    """
    C{HOST:PORT[/PATH]} as C{ws://HOST:PORT/PATH}, the path /socket when
    none is given; a URL with a scheme as it is.
    """
    if "://" in argument:
        return argument
    match = _HOST_PORT.fullmatch(argument)
    assert match is not None
    return f"ws://{argument}" + ("" if match.group(2) else "/socket")


def url_problem(url: str) -> str | None:
    """
    What is wrong with a WebSocket URL, as Autobahn would refuse it, or
    None.
    """
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        return f"is not a WebSocket URL: use {parts.scheme.replace('http', 'ws')}://"
    if parts.scheme not in ("ws", "wss"):
        return "is not a ws:// or wss:// URL"
    try:
        parts.port  # noqa: B018 (it checks the port)
    except ValueError as e:
        return str(e)
    if not parts.hostname:
        return "has no host"
    if parts.fragment:
        return "has a fragment (#...), which a WebSocket URL may not"
    return None


class _Parser(argparse.ArgumentParser):
    """
    argparse, whose errors are also a JSON object on stdout with --json.
    """

    json_errors = False

    def error(self, message: str) -> NoReturn:
        if self.json_errors:
            record = {"event": "error", "exit": EXIT_USAGE, "message": message}
            print(json.dumps(record), flush=True)
        super().error(message)


def make_parser() -> _Parser:
    parser = _Parser(
        prog="wsecho-client",
        usage="%(prog)s [options] [URL] [MESSAGE ...]",
        description="Send messages to a WebSocket echo server and check the echoes.\n"
        "URL: ws://..., wss://..., or HOST:PORT[/PATH] (ws://, the path /socket);\n"
        f"without one, {DEFAULT_URL}.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add(
        "arguments",
        nargs="*",
        metavar="[URL] MESSAGE",
        help=f"messages to send, in order (default {DEFAULT_MESSAGE!r}); "
        "- reads one from stdin",
    )
    add("-b", "--binary", action="store_true", help="send the messages as binary")
    add(
        "-n",
        "--count",
        type=int,
        default=1,
        metavar="N",
        help="send every message N times (default 1)",
    )
    add(
        "-i",
        "--interactive",
        action="store_true",
        help="send each line read from stdin (as binary with --binary); "
        "/help lists the commands (/ping, /close); on a terminal, line "
        "editing and a history kept between runs",
    )
    add(
        "--no-check",
        action="store_true",
        help="a client for any server: print what arrives, compare nothing "
        "(without --interactive, wait for as many messages as were sent); "
        "exit 0 on a clean close",
    )
    add(
        "-s",
        "--subprotocol",
        action="append",
        default=[],
        metavar="NAME",
        help="offer this subprotocol (repeatable)",
    )
    add("-o", "--origin", help="send this Origin header")
    add(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="send an extra header (repeatable)",
    )
    add(
        "--cafile",
        metavar="PEM",
        help="trust the CA certificates in this PEM file for wss://",
    )
    add(
        "-k",
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate for wss://",
    )
    add(
        "--cert",
        metavar="PEM",
        help="a client certificate for wss:// (with its key, or see --key)",
    )
    add("--key", metavar="PEM", help="the private key of --cert, if not in its file")
    add(
        "--proxy",
        metavar="URL",
        help="connect through this HTTP proxy (http://[USER:PASS@]HOST:PORT, "
        "CONNECT); default: https_proxy (wss) or http_proxy (ws), unless "
        "no_proxy names the host; '' for none",
    )
    add(
        "-t",
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="for connecting, each echo and each pong (default 10)",
    )
    add(
        "--http2",
        action="store_true",
        help="open the WebSocket over HTTP/2 (RFC 8441: ALPN h2 on wss://, "
        "prior knowledge on ws://)",
    )
    add("--no-compression", action="store_true", help="do not offer permessage-deflate")
    add(
        "--ping-interval",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="ping the server this often and show each round trip",
    )
    add(
        "--show-ping",
        action="store_true",
        help="show the server's pings and the pongs sent back",
    )
    add(
        "--reconnect",
        action="store_true",
        help="after a lost connection, connect again (waiting 0.5 s, then twice as "
        "long each time, up to 8 s) and resend what was not echoed",
    )
    add(
        "--reconnect-tries",
        type=int,
        default=5,
        metavar="N",
        help="with --reconnect, give up after N failed attempts in a row (default 5)",
    )
    add(
        "--raw",
        action="store_true",
        help="print text as it came, control characters too (escaped by default)",
    )
    add(
        "--json",
        action="store_true",
        help="print each event (connected, echo, ping, pong, summary, closed, error) as a JSON object per line",
    )
    add(
        "-q",
        "--quiet",
        action="store_true",
        help="do not print each echo, only the summary (with --count or --json)",
    )
    add("--version", action="version", version=f"wsecho-client {__version__}")
    return parser


def parse_args(argv: Sequence[str], stdin: IO[bytes]) -> Config:
    """
    Turn the command line into a L{Config}; argparse exits with status 2 on
    bad arguments.
    """
    parser = make_parser()
    parser.json_errors = "--json" in argv
    args = parser.parse_intermixed_args(argv)
    arguments: list[str] = args.arguments
    url = DEFAULT_URL
    if arguments and is_url(arguments[0]):
        url = normal_url(arguments.pop(0))
    problem = url_problem(url)
    if problem:
        parser.error(f"URL {url!r} {problem}")
    if args.count < 1:
        parser.error("--count must be at least 1")
    if not args.timeout > 0:
        parser.error("--timeout must be more than 0 seconds")
    if args.ping_interval < 0:
        parser.error("--ping-interval must be more than 0 seconds")
    if args.reconnect_tries < 1:
        parser.error("--reconnect-tries must be at least 1")
    if args.key is not None and args.cert is None:
        parser.error("--key needs --cert")
    if args.http2 and args.proxy:
        parser.error("--http2 does not go through an HTTP proxy (--proxy)")
    if args.interactive and arguments:
        parser.error("--interactive reads its messages from stdin; give no MESSAGE")
    headers = {}
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            parser.error(f"--header {header!r} is not 'NAME: VALUE'")
        headers[name.strip()] = value.strip()
    messages = []
    for text in arguments or ([] if args.interactive else [DEFAULT_MESSAGE]):
        payload = (
            stdin.read() if text == "-" else text.encode("utf-8", "surrogateescape")
        )
        if not args.binary:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                parser.error("stdin is not UTF-8 text; use --binary")
        messages.append(Message(payload, args.binary))
    return Config(
        url=url,
        messages=messages,
        count=args.count,
        interactive=args.interactive,
        subprotocols=args.subprotocol,
        origin=args.origin,
        headers=headers,
        cafile=args.cafile,
        insecure=args.insecure,
        cert=args.cert,
        key=args.key,
        proxy=args.proxy,
        timeout=args.timeout,
        compression=not args.no_compression,
        json=args.json,
        quiet=args.quiet,
        binary=args.binary,
        check=not args.no_check,
        raw=args.raw,
        show_ping=args.show_ping,
        ping_interval=args.ping_interval,
        reconnect=args.reconnect_tries if args.reconnect else 0,
        http2=args.http2,
    )


def run(
    reactor: Any,
    config: Config,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    *,
    interrupt: bool = False,
) -> defer.Deferred[int]:
    """
    Connect, exchange the messages and close; the Deferred fires with the
    exit code or fails with L{ClientError}. With C{config.interactive} the
    messages are read from stdin; with C{interrupt}, SIGINT (Ctrl-C) closes
    the connection cleanly (L{Session.interrupt}).
    """
    from autobahn.websocket.util import parse_url
    from twisted.internet import defer

    from wsecho.client.connect import connect, proxy_for
    from wsecho.client.protocol import client_factory
    from wsecho.client.session import Session

    output = Output(
        config,
        out if out is not None else sys.stdout,
        err if err is not None else sys.stderr,
    )
    secure, host, _, _, _, _ = parse_url(config.url)
    session = Session(config, reactor, output)
    try:
        proxy = proxy_for(config, secure, host)
        factory = client_factory(config, session, proxy)
    except ClientError as e:
        session.timer.cancel()
        return defer.fail(e)
    session.proxy_address = proxy.address if proxy else None
    session.connect = lambda: connect(reactor, config, factory)
    if interrupt:
        import signal

        signal.signal(
            signal.SIGINT, lambda *_: reactor.callFromThread(session.interrupt)
        )
    session.start()
    if config.interactive:
        from wsecho.client.console import start_console

        stop_console = start_console(reactor, session, output)

        def stop(result: Any) -> Any:
            stop_console()
            return result

        session.done.addBoth(stop)
    return session.done


def main(argv: Sequence[str] | None = None) -> None:
    """
    The C{wsecho-client} console script.
    """
    config = parse_args(sys.argv[1:] if argv is None else argv, sys.stdin.buffer)

    from twisted.internet import defer, task

    async def _main(reactor: Any) -> None:
        try:
            code = await run(reactor, config, interrupt=True)
        except ClientError as e:
            Output(config, sys.stdout, sys.stderr).error(e)
            code = e.code
        if code:
            raise SystemExit(code)

    task.react(lambda reactor: defer.Deferred.fromCoroutine(_main(reactor)))
