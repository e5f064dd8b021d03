"""
The twistd plugin's options and the service they make.
"""

import shutil
import tempfile
from pathlib import Path

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase, TestCase

from wsecho.daemon.tap import Options, makeService
from wsecho.settings import MiB
from wsecho.ws.protocol import EchoServerProtocol
from wsecho.ws.verbose import VerboseEchoServerProtocol


def _tmp(test: SynchronousTestCase) -> Path:
    directory = Path(tempfile.mkdtemp())
    test.addCleanup(shutil.rmtree, directory)
    return directory


def parse(*argv: str, environ: dict[str, str] | None = None) -> Options:
    """
    Parse C{argv} as twistd would, with C{environ} (none by default) as the
    environment: not the one the tests run in.
    """
    options = Options(environ=environ or {})
    options.parseOptions(list(argv))
    return options


class OptionsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        With no options wsecho listens on 127.0.0.1:8181 with the secure
        defaults: same-origin only, compression on, 16 MiB limits, pings on.
        """
        options = parse()
        self.assertEqual(options["listen"], ["tcp:8181:interface=127.0.0.1"])
        settings = options.settings()
        self.assertEqual(settings.allowed_origins, ())
        self.assertTrue(settings.compression)
        self.assertEqual(settings.max_message_size, 16 * MiB)
        self.assertEqual(settings.max_frame_size, 16 * MiB)
        self.assertEqual((settings.ping_interval, settings.ping_timeout), (20.0, 20.0))
        self.assertFalse(settings.verbose)

    def test_port_and_interface(self) -> None:
        """
        --port and --interface make the TCP endpoint, IPv6 addresses quoted.
        """
        self.assertEqual(
            parse("--port", "9000")["listen"], ["tcp:9000:interface=127.0.0.1"]
        )
        self.assertEqual(
            parse("-p", "9000", "--interface", "::")["listen"],
            [r"tcp:9000:interface=\:\:"],
        )

    def test_listen_replaces_port(self) -> None:
        """
        --listen is repeatable and replaces --port and --interface.
        """
        options = parse(
            "--port", "9000", "--listen", "tcp:1234", "--listen", "unix:/tmp/x.sock"
        )
        self.assertEqual(options["listen"], ["tcp:1234", "unix:/tmp/x.sock"])

    def test_repeatable(self) -> None:
        """
        --allowed-origin and --subprotocol keep every value, in order.
        """
        settings = parse(
            "--allowed-origin",
            "https://*.example.com",
            "--allowed-origin",
            "*",
            "--subprotocol",
            "chat",
            "--subprotocol",
            "superchat",
        ).settings()
        self.assertEqual(settings.allowed_origins, ("https://*.example.com", "*"))
        self.assertEqual(settings.subprotocols, ("chat", "superchat"))

    def test_sizes_and_times(self) -> None:
        """
        Sizes are whole bytes and times seconds, coerced to their types.
        """
        settings = parse(
            "--max-message-size",
            "1024",
            "--max-frame-size",
            "512",
            "--ping-interval",
            "0",
            "--open-handshake-timeout",
            "2.5",
            "--no-compression",
            "--verbose",
        ).settings()
        self.assertEqual(
            (settings.max_message_size, settings.max_frame_size), (1024, 512)
        )
        self.assertEqual(settings.ping_interval, 0.0)
        self.assertEqual(settings.open_handshake_timeout, 2.5)
        self.assertFalse(settings.compression)
        self.assertTrue(settings.verbose)

    def assertUsageError(self, argv: list[str], *fragments: str) -> None:
        with self.assertRaises(UsageError) as raised:
            parse(*argv)
        for fragment in fragments:
            self.assertIn(fragment, str(raised.exception))

    def test_bad_values_name_the_option(self) -> None:
        """
        A bad value is a usage error that names the option and what it takes.
        """
        self.assertUsageError(["--port", "99999"], "--port", "0 to 65535")
        self.assertUsageError(["--port", "http"], "--port")
        self.assertUsageError(
            ["--max-message-size", "0"], "--max-message-size", "at least 1"
        )
        self.assertUsageError(["--max-frame-size", "1.5"], "--max-frame-size")
        self.assertUsageError(["--ping-interval", "-1"], "--ping-interval", "seconds")
        self.assertUsageError(
            ["--close-handshake-timeout", "inf"], "--close-handshake-timeout"
        )
        self.assertUsageError(["--ping-timeout", "0"], "--ping-timeout")
        self.assertUsageError(
            ["--ping-interval", "0.5"], "--ping-interval", "at least 1"
        )
        self.assertUsageError(["--subprotocol", "a b"], "--subprotocol")
        self.assertUsageError(["--allowed-origin", " "], "--allowed-origin")

    def test_limits_and_proxies(self) -> None:
        """
        Connection limits are counts (0: none); --trust-proxy takes one hop
        count or networks, repeated or comma-separated.
        """
        defaults = parse().settings()
        self.assertEqual(defaults.max_connections, 10_000)
        self.assertEqual(defaults.max_connections_per_ip, 0)
        self.assertEqual(defaults.slow_client_timeout, 60.0)
        self.assertIsNone(defaults.trusted_proxies)
        settings = parse(
            "--max-connections",
            "0",
            "--max-connections-per-ip",
            "5",
            "--slow-client-timeout",
            "3",
            "--trust-proxy",
            "2",
            "--forwarded-header",
            "Forwarded",
        ).settings()
        self.assertEqual(
            (settings.max_connections, settings.max_connections_per_ip), (0, 5)
        )
        self.assertEqual(settings.slow_client_timeout, 3.0)
        self.assertEqual(settings.trusted_proxies.hops, 2)
        self.assertEqual(settings.trusted_proxies.header, "forwarded")
        networks = (
            parse("--trust-proxy", "10.0.0.0/8,::1", "--trust-proxy", "192.0.2.7")
            .settings()
            .trusted_proxies
        )
        self.assertEqual(
            [str(n) for n in networks.networks],
            ["10.0.0.0/8", "::1/128", "192.0.2.7/32"],
        )

    def test_memory_budget(self) -> None:
        """
        --memory-budget is a byte count (default 256 MiB, 0: none), shared
        out among --workers; anything else is a usage error naming it.
        """
        self.assertEqual(parse().settings().memory_budget, 256 * 1024 * 1024)
        self.assertEqual(parse("--memory-budget", "0").settings().memory_budget, 0)
        shared = parse("--memory-budget", "1000", "--workers", "3").settings()
        self.assertEqual(shared.memory_budget, 333)
        self.assertUsageError(["--memory-budget", "-1"], "--memory-budget")
        self.assertUsageError(["--memory-budget", "lots"], "--memory-budget")

    def test_message_progress(self) -> None:
        """
        --message-min-rate (bytes a second, default 1024, 0: off) and
        --message-window (seconds, default 30) set the progress deadline,
        from WSECHO_ variables too; bad values are usage errors naming them.
        """
        settings = parse().settings()
        self.assertEqual(
            (settings.message_min_rate, settings.message_window), (1024, 30)
        )
        given = parse("--message-min-rate", "0", "--message-window", "5").settings()
        self.assertEqual((given.message_min_rate, given.message_window), (0, 5))
        environ = {"WSECHO_MESSAGE_MIN_RATE": "10", "WSECHO_MESSAGE_WINDOW": "2"}
        from_env = parse(environ=environ).settings()
        self.assertEqual((from_env.message_min_rate, from_env.message_window), (10, 2))
        self.assertUsageError(["--message-min-rate", "fast"], "--message-min-rate")
        self.assertUsageError(["--message-window", "-1"], "--message-window")

    def test_bad_limits_and_proxies(self) -> None:
        """
        Bad limits and proxy settings are usage errors naming the option.
        """
        self.assertUsageError(["--max-connections", "-1"], "--max-connections")
        self.assertUsageError(
            ["--max-connections-per-ip", "many"], "--max-connections-per-ip"
        )
        self.assertUsageError(["--slow-client-timeout", "0.1"], "--slow-client-timeout")
        self.assertUsageError(["--trust-proxy", "0"], "--trust-proxy", "'0'")
        self.assertUsageError(
            ["--trust-proxy", "10.0.0.0/8,proxy.example"],
            "--trust-proxy",
            "proxy.example",
        )
        self.assertUsageError(
            ["--trust-proxy", "1", "--trust-proxy", "10.0.0.0/8"], "--trust-proxy"
        )
        self.assertUsageError(["--forwarded-header", "x-real-ip"], "--forwarded-header")

    def test_environment(self) -> None:
        """
        WSECHO_* variables set options; the command line wins, and a
        repeatable option given there replaces the variable's values.
        """
        environ = {
            "WSECHO_PORT": "9000",
            "WSECHO_NO_COMPRESSION": "yes",
            "WSECHO_VERBOSE": "0",
            "WSECHO_ALLOWED_ORIGIN": "https://a.example  https://b.example",
            "WSECHO_SUBPROTOCOL": "chat",
            "WSECHO_MAX_CONNECTIONS_PER_IP": "7",
            "WSECHO_SOAK_SECONDS": "not an option: ignored",
        }
        options = Options(environ=environ)
        options.parseOptions(["--subprotocol", "superchat"])
        settings = options.settings()
        self.assertEqual(options["listen"], ["tcp:9000:interface=127.0.0.1"])
        self.assertFalse(settings.compression)
        self.assertFalse(settings.verbose)
        self.assertEqual(
            settings.allowed_origins, ("https://a.example", "https://b.example")
        )
        self.assertEqual(settings.subprotocols, ("superchat",))
        self.assertEqual(settings.max_connections_per_ip, 7)

        options = Options(environ=environ)
        options.parseOptions(["--port", "9001"])
        self.assertEqual(options["listen"], ["tcp:9001:interface=127.0.0.1"])

        options = Options(environ={"WSECHO_LISTEN": "tcp:1 tcp:2"})
        options.parseOptions([])
        self.assertEqual(options["listen"], ["tcp:1", "tcp:2"])
        options = Options(environ={"WSECHO_LISTEN": "tcp:1 tcp:2"})
        options.parseOptions(["--listen", "tcp:3"])
        self.assertEqual(options["listen"], ["tcp:3"])

    def test_bad_environment(self) -> None:
        """
        A bad value in a WSECHO_* variable is a usage error naming the
        variable and the option.
        """
        for environ, fragments in (
            ({"WSECHO_PORT": "http"}, ["WSECHO_PORT", "--port"]),
            ({"WSECHO_NO_COMPRESSION": "maybe"}, ["WSECHO_NO_COMPRESSION", "1"]),
            (
                {"WSECHO_LISTEN": "tcp:1 carrier-pigeon:2"},
                ["WSECHO_LISTEN", "carrier-pigeon"],
            ),
            ({"WSECHO_TRUST_PROXY": "0"}, ["WSECHO_TRUST_PROXY", "--trust-proxy"]),
        ):
            options = Options(environ=environ)
            with self.assertRaises(UsageError) as raised:
                options.parseOptions([])
            for fragment in fragments:
                self.assertIn(fragment, str(raised.exception))

    def test_bad_listen(self) -> None:
        """
        An unusable endpoint string is a usage error naming --listen.
        """
        self.assertUsageError(
            ["--listen", "carrier-pigeon:1"], "--listen", "carrier-pigeon"
        )
        self.assertUsageError(
            ["--listen", "ssl:8443:privateKey=/nonexistent/key.pem"],
            "--listen",
            "nonexistent",
        )

    def test_unknown_option(self) -> None:
        """
        An unknown option is a usage error naming it.
        """
        self.assertUsageError(["--bogus"], "bogus")

    def test_help(self) -> None:
        """
        --help lists every option (flags, parameters, repeatable ones), each
        parameter with its default.
        """
        options = Options(environ={})
        help_text = str(options)
        names = [f[0] for f in options.optFlags] + [p[0] for p in options.optParameters]
        names += list(options.repeatable)
        self.assertGreaterEqual(len(names), 21)
        for name in names:
            self.assertIn(f"--{name}", help_text)
        for name, _, default, *_ in options.optParameters:
            self.assertIn(f"--{name}", help_text)
            if default is not None:
                line = help_text[help_text.index(f"--{name}") :].split("\n--")[0]
                self.assertIn("[default:", " ".join(line.split()), name)
        self.assertIn("[default: 8181]", help_text)
        self.assertIn("[default: 127.0.0.1]", help_text)


class MakeServiceTests(SynchronousTestCase):
    def start(self, *argv: str) -> MemoryReactor:
        reactor = MemoryReactor()
        service = makeService(parse(*argv), reactor=reactor)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        return reactor

    def test_default_listener(self) -> None:
        """
        The default service listens on 127.0.0.1:8181 and nothing else.
        """
        reactor = self.start()
        [(port, _, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (8181, "127.0.0.1"))

    def test_one_listener_per_endpoint(self) -> None:
        """
        Each --listen is its own listener, sharing one site.
        """
        reactor = self.start(
            "--listen", "tcp:8181", "--listen", r"tcp6:8182:interface=\:\:1"
        )
        self.assertEqual(
            [(s[0], s[3]) for s in reactor.tcpServers], [(8181, ""), (8182, "::1")]
        )
        self.assertIs(reactor.tcpServers[0][1], reactor.tcpServers[1][1])

    def test_unix_and_tls_listeners(self) -> None:
        """
        unix: and ssl: endpoints listen where they say, for ws and wss.
        """
        from support.certs import make_certificates

        paths = make_certificates(_tmp(self))
        reactor = self.start(
            "--listen",
            "unix:/tmp/wsecho-test.sock",
            "--listen",
            f"ssl:8443:privateKey={paths['key']}:certKey={paths['cert']}",
        )
        self.assertEqual(reactor.unixServers[0][0], "/tmp/wsecho-test.sock")
        self.assertEqual(reactor.sslServers[0][0], 8443)

    def test_services_are_endpoint_services(self) -> None:
        """
        makeService returns a parent of one endpoint service per listener.
        """
        service = makeService(
            parse("--listen", "tcp:1", "--listen", "tcp:2"), reactor=MemoryReactor()
        )
        children = list(service)
        self.assertEqual(len(children), 2)
        for child in children:
            self.assertIsInstance(child, StreamServerEndpointService)

    def test_verbose_selects_the_logging_echo(self) -> None:
        """
        --verbose swaps in the echo that logs messages (and counts them),
        --no-metrics stops the counting; the default counts and does not log.
        """
        for argv, expected, counted in (
            ((), EchoServerProtocol, True),
            (("--verbose",), VerboseEchoServerProtocol, True),
            (("--no-metrics",), EchoServerProtocol, False),
            (("--no-metrics", "--verbose"), VerboseEchoServerProtocol, True),
        ):
            reactor = self.start(*argv)
            site = reactor.tcpServers[0][1]
            factory = site.resource.children[b"socket"].factory
            self.assertIs(factory.protocol, expected)
            self.assertIs(factory.tally is not None, counted)

    def test_workers_make_a_pool(self) -> None:
        """
        --workers 2 makes the parent of two workers, which passes them the
        command line as given and listens where it says; --workers 1 (the
        default) is the plain service.
        """
        from wsecho.daemon.workers.pool import WorkerPool

        options = parse("--workers", "2", "--port", "9000")
        pool = makeService(options, reactor=MemoryReactor())
        self.assertIsInstance(pool, WorkerPool)
        self.assertEqual(pool.count, 2)
        self.assertEqual(pool.arguments, ["--workers", "2", "--port", "9000"])
        self.assertEqual(pool.descriptions, ["tcp:9000:interface=127.0.0.1"])
        self.assertNotIsInstance(makeService(parse(), MemoryReactor()), WorkerPool)
        from_environment = Options(environ={"WSECHO_WORKERS": "3"})
        from_environment.parseOptions([])
        self.assertEqual(from_environment["workers"], 3)


class PortInUseTests(TestCase):
    async def test_port_in_use(self) -> None:
        """
        A listener that cannot listen stops start-up with a one-line reason.
        """
        taken = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        port = taken.getHost().port
        service = makeService(parse("--port", str(port)), reactor=reactor)
        with self.assertRaises(SystemExit) as raised:
            service.privilegedStartService()
        message = str(raised.exception.code)
        self.assertTrue(
            message.startswith(f"wsecho: cannot listen on 127.0.0.1:{port}: "), message
        )
        self.assertNotIn("\n", message)
