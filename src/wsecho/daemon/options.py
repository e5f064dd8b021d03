"""
The daemon's options (C{twistd wsecho --help}): parsed from the command line
and the C{WSECHO_*} environment into L{wsecho.settings.EchoSettings}. Light
to import: the health check reads them too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet import endpoints
from twisted.python import usage

from wsecho import build_info
from wsecho.daemon import parse as config
from wsecho.http.policy import ProxyTrust
from wsecho.settings import DEFAULT_BUDGET, EchoSettings, MiB

DEFAULT_PORT = 8181
DEFAULT_INTERFACE = "127.0.0.1"
# What --listen replaces.
_TCP_SIDE = {"port", "interface", "certificate", "privkey"}


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serve a WebSocket echo at /socket and an index page with an echo "
        "console at /. Every message is sent back with its type. By default "
        "it listens on 127.0.0.1:8181, accepts browsers from its own origin "
        "only, negotiates permessage-deflate and pings idle peers; with "
        "--certificate and --privkey it serves wss:// and https://. Every "
        "option can also come from the environment, as WSECHO_ and its name "
        f"({', '.join(config.ENVIRONMENT_EXAMPLES)}); the command line wins. twistd's "
        "own options (-n, --pidfile, --logfile) go before wsecho."
    )

    optFlags: list[list[str | None]] = [
        ["no-compression", None, "Do not negotiate permessage-deflate."],
        [
            "no-http2",
            None,
            "Speak HTTP/1.1 only: no HTTP/2 (ALPN h2, prior knowledge), nor "
            "WebSockets over it (RFC 8441).",
        ],
        [
            "no-metrics",
            None,
            "Do not count messages, nor serve Prometheus metrics at /metrics.",
        ],
        ["verbose", "v", "Log every message received (truncated); slow."],
    ]

    optParameters: list[list[Any]] = [
        [
            "port",
            "p",
            DEFAULT_PORT,
            "TCP port to listen on, 0 to 65535 (0: one the system chooses, "
            "named by the start-up line).",
            config.coercer(
                "port", usage.portCoerce, "a port number, 0 to 65535.", shown=""
            ),
        ],
        [
            "interface",
            "i",
            DEFAULT_INTERFACE,
            "Address to listen on (:: or 0.0.0.0 for every address).",
        ],
        [
            "certificate",
            None,
            None,
            "PEM file of the server certificate (its chain may follow): "
            "--port and --interface then serve TLS (wss://, https://). "
            "Read again on SIGHUP.",
        ],
        [
            "privkey",
            None,
            None,
            "PEM file of the certificate's private key, without a passphrase. "
            "Read again on SIGHUP.",
        ],
        [
            "max-message-size",
            None,
            16 * MiB,
            "Largest message accepted, in bytes after decompression; "
            "larger ones are closed with 1009.",
            config.size("max-message-size"),
        ],
        [
            "max-frame-size",
            None,
            16 * MiB,
            "Largest frame payload accepted, in bytes; larger ones are closed "
            "with 1009.",
            config.size("max-frame-size"),
        ],
        [
            "open-handshake-timeout",
            None,
            10.0,
            "Seconds a client has to send its whole request, however slowly (408 otherwise), and complete the opening handshake; a kept-alive HTTP connection has as long for its next request.",
            config.timeout("open-handshake-timeout"),
        ],
        [
            "close-handshake-timeout",
            None,
            5.0,
            "Seconds to wait for the peer's close frame before dropping it.",
            config.timeout("close-handshake-timeout"),
        ],
        [
            "ping-interval",
            None,
            20.0,
            "Seconds of silence after which the server pings the peer.",
            config.timeout("ping-interval"),
        ],
        [
            "ping-timeout",
            None,
            20.0,
            "Seconds to wait for the pong before dropping the peer.",
            config.timeout("ping-timeout"),
        ],
        [
            "slow-client-timeout",
            None,
            60.0,
            "Seconds a client may leave its echoes unread (the server has stopped reading from it) before it is closed with 1008.",
            config.timeout("slow-client-timeout"),
        ],
        [
            "max-connections",
            None,
            10_000,
            "Most WebSocket connections open at once; more are answered 503.",
            config.count("max-connections"),
        ],
        [
            "max-connections-per-ip",
            None,
            0,
            "Most WebSocket connections open at once from one client address (see --trust-proxy); more are answered 503.",
            config.count("max-connections-per-ip"),
        ],
        [
            "forwarded-header",
            None,
            "x-forwarded-for",
            "The header trusted proxies put the client's address in: x-forwarded-for or forwarded (RFC 7239).",
            config.coercer(
                "forwarded-header",
                config.forwarded_header,
                "x-forwarded-for or forwarded.",
                shown="",
            ),
        ],
        [
            "memory-budget",
            None,
            DEFAULT_BUDGET,
            "Bytes the whole daemon may hold for clients (unfinished messages after inflation, frames waiting to be whole, unread echoes and HTTP answers); past it the largest holder is closed with 1013. Shared out among --workers.",
            config.count("memory-budget"),
        ],
        [
            "workers",
            None,
            1,
            "Worker processes accepting on the same listeners, for as many "
            "cores; a worker that dies is started again.",
            config.count("workers", minimum=1),
        ],
        [
            "shutdown-timeout",
            None,
            10.0,
            "On SIGTERM or SIGINT, seconds to wait for clients to complete the closing handshake (code 1001) before dropping them.",
            config.timeout("shutdown-timeout"),
        ],
        [
            "drain-delay",
            None,
            0.0,
            "On SIGTERM, seconds during which /readyz answers 503 while clients are still accepted and echoed (for load balancers and Kubernetes to stop sending new ones), before the shutdown proper.",
            config.timeout("drain-delay"),
        ],
        [
            "shutdown-close-code",
            None,
            1001,
            "The close code clients get on shutdown: 1001 (going away) or 1012 (service restart: reconnect).",
            config.coercer(
                "shutdown-close-code", config.shutdown_code, "1001 or 1012.", shown=""
            ),
        ],
    ]

    # Options that may be given more than once; from the environment, as
    # whitespace-separated values.
    repeatable = (
        "listen",
        "allowed-origin",
        "allowed-host",
        "subprotocol",
        "trust-proxy",
    )

    def __init__(
        self, environ: Mapping[str, str] | None = None, check_listen: bool = True
    ) -> None:
        super().__init__()
        self._environ = os.environ if environ is None else environ
        self._check_listen = check_listen
        for name in self.repeatable:
            self[name] = []
        # The command line as given, for the workers of --workers.
        self.arguments: list[str] = []
        # What the start-up line warns of (misspelt variables, listeners on
        # every address): not errors, but likely not what was meant.
        self.warnings: list[str] = []

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        if options is None:
            options = sys.argv[1:]
        options = list(options)
        self.arguments = options
        try:
            super().parseOptions(self._from_environment(options) + options)
        except usage.UsageError as e:
            parent = getattr(self, "parent", None)
            if parent is None:
                raise
            # Under twistd (or twist): one line naming the option, not
            # twistd's eighty lines of help with the error last.
            command = f"{os.path.basename(sys.argv[0])} wsecho"
            message = str(e).replace("Parameter type enforcement failed: ", "")
            message += config.twistd_option_hint(parent, message)
            print(f"{command}: {message}\nSee: {command} --help", file=sys.stderr)
            raise SystemExit(2) from None

    def opt_version(self) -> None:
        "Print wsecho's version, and those of Python, Twisted and Autobahn."
        print(version_line())
        raise SystemExit(0)

    def _from_environment(self, given: list[str]) -> list[str]:
        """
        The arguments that WSECHO_* variables stand for, each checked on its
        own so that an error names the variable.
        """
        flags = [str(f[0]) for f in self.optFlags]
        names = flags + [str(p[0]) for p in self.optParameters] + list(self.repeatable)
        self.warnings += config.unknown_variables(self._environ, names)

        def check(arguments: list[str]) -> None:
            probe = Options(environ={}, check_listen=self._check_listen)
            probe.postOptions = lambda: None  # type: ignore[method-assign]
            probe.parseOptions(arguments)

        # --listen replaces --port, --interface and the TLS files: a
        # variable of either side yields to the other side given here.
        on_command_line = config.given_options(self, given)
        if on_command_line & _TCP_SIDE:
            on_command_line.add("listen")
        if "listen" in on_command_line:
            on_command_line |= _TCP_SIDE
        return config.from_environment(
            self._environ, names, flags, self.repeatable, on_command_line, check
        )

    def opt_listen(self, description: str) -> None:
        from twisted.internet import reactor

        try:
            if self._check_listen:
                endpoints.serverFromString(reactor, description)
        except Exception as e:
            # A bad string, an unknown type, an unreadable certificate or a
            # systemd socket that was not passed: all are the user's to fix.
            problem = config.tls_problem(description) or e
            raise usage.UsageError(
                f"--listen {description!r} is not a usable server endpoint: {problem}"
            ) from None
        warning = config.every_address_warning(description)
        if warning is not None:
            self.warnings.append(warning)
        self["listen"].append(description)

    opt_listen.__doc__ = (
        "A Twisted server endpoint to listen on, its colons in values "
        f"escaped ({', '.join(config.LISTEN_EXAMPLES)}; ssl: for TLS with settings "
        "of its own, see the README). Repeatable; replaces --port, --interface, "
        "--certificate and --privkey."
    )

    def opt_allowed_origin(self, pattern: str) -> None:
        if not pattern.strip():
            raise usage.UsageError("--allowed-origin needs a pattern, or '*'")
        self["allowed-origin"].append(pattern.strip())

    opt_allowed_origin.__doc__ = (
        "Also accept browsers from origins matching this pattern "
        f"({', '.join(config.ORIGIN_EXAMPLES)}); '*' accepts every origin. Repeatable. "
        "Without it only same-origin pages (and clients that send no Origin) "
        "may connect."
    )

    def opt_allowed_host(self, name: str) -> None:
        self["allowed-host"].append(config.host_name(name))

    opt_allowed_host.__doc__ = (
        "Also answer to this name in Host, with any port "
        f"(e.g. {config.HOST_EXAMPLES[0]}). Repeatable. On a loopback address "
        "only localhost, 127.0.0.1 and [::1] are served otherwise (others get "
        "421: DNS rebinding); on other addresses every name is, unless this is "
        "given."
    )

    def opt_subprotocol(self, name: str) -> None:
        if not name or any(c in name for c in ' \t,;"()/<>@[]?={}\\'):
            raise usage.UsageError(
                f"--subprotocol {name!r} is not a valid subprotocol token"
            )
        self["subprotocol"].append(name)

    opt_subprotocol.__doc__ = (
        f"A subprotocol the server accepts (e.g. {config.SUBPROTOCOL_EXAMPLES[0]}); "
        "repeatable. The first of the client's offers that is listed here is "
        "selected."
    )

    def opt_trust_proxy(self, value: str) -> None:
        try:
            ProxyTrust.parse([value], "x-forwarded-for")
        except ValueError as e:
            raise usage.UsageError(
                f"--trust-proxy {e.args[0]!r} is neither a number of proxies "
                "(1 or more) nor a network (10.0.0.0/8, 2001:db8::/32, ::1)"
            ) from None
        self["trust-proxy"].append(value)

    opt_trust_proxy.__doc__ = (
        "Believe the client address that proxies forward (see "
        "--forwarded-header), for logs and --max-connections-per-ip: a number "
        f"of proxies in front of wsecho ({config.PROXY_EXAMPLES[0]}), or the networks "
        f"they connect from ({config.PROXY_EXAMPLES[1]}; repeatable)."
    )

    def postOptions(self) -> None:
        if self["ping-interval"] and not self["ping-timeout"]:
            raise usage.UsageError(
                "--ping-timeout must be more than 0 while --ping-interval is on"
            )
        self["listen"] = config.listeners(
            self["listen"],
            self["port"],
            self["interface"],
            self["certificate"],
            self["privkey"],
        )
        hops = [v for v in self["trust-proxy"] if v.strip().isdigit()]
        if hops and len(self["trust-proxy"]) > 1:
            raise usage.UsageError(
                "--trust-proxy takes either one number of proxies or networks, not both"
            )

    def changed(self) -> list[str]:
        """
        The options that differ from their defaults, as given (for the
        start-up line); where it listens is said apart.
        """
        given = []
        for flag, *_ in self.optFlags:
            if flag is not None and self[flag]:
                given.append(f"--{flag}")
        for name, _, default, *_ in self.optParameters:
            if name not in ("port", "interface") and self[name] != default:
                given.append(f"--{name} {self[name]}")
        for name in self.repeatable:
            if name != "listen":
                given += [f"--{name} {value}" for value in self[name]]
        return given

    def settings(self) -> EchoSettings:
        return EchoSettings(
            max_message_size=self["max-message-size"],
            max_frame_size=self["max-frame-size"],
            compression=not self["no-compression"],
            http2=not self["no-http2"],
            subprotocols=tuple(self["subprotocol"]),
            open_handshake_timeout=self["open-handshake-timeout"],
            close_handshake_timeout=self["close-handshake-timeout"],
            ping_interval=self["ping-interval"],
            ping_timeout=self["ping-timeout"],
            verbose=bool(self["verbose"]),
            allowed_origins=tuple(self["allowed-origin"]),
            allowed_hosts=tuple(self["allowed-host"]),
            slow_client_timeout=self["slow-client-timeout"],
            metrics=not self["no-metrics"],
            max_connections=self["max-connections"],
            max_connections_per_ip=self["max-connections-per-ip"],
            trusted_proxies=ProxyTrust.parse(
                self["trust-proxy"], self["forwarded-header"]
            ),
            # With --workers, each worker has its share: the budget is the
            # daemon's.
            memory_budget=self["memory-budget"] // self["workers"],
        )


def version_line() -> str:
    info = build_info()
    return (
        f"wsecho {info['version']} (Python {info['python']}, Twisted "
        f"{info['twisted']}, Autobahn {info['autobahn']})"
    )
