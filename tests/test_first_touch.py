"""
What a new user touches first: starting the daemon (with and without
C{-n}), TLS from two options, the examples of C{--help}, the environment,
and the one-line answers when something is wrong.
"""

from __future__ import annotations

import http.client
import itertools
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import reactor
from twisted.internet.testing import MemoryReactor
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.usage import UsageError
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import TestCase
from websockets.sync.client import connect

from support import BIN, DEADLINE, poll_until
from support.certs import make_certificates
from support.daemon import Daemon, start_daemon
from wsecho.daemon import parse as config
from wsecho.daemon.options import Options
from wsecho.daemon.process import announce
from wsecho.daemon.tap import makeService, startup_line
from wsecho.daemon.workers import pool

# What the brief of a listen or TLS error allows: a few seconds, not forever.
PROMPTLY = 10.0


def parse(*argv: str, environ: dict[str, str] | None = None) -> Options:
    """
    Parse C{argv} with C{environ} (none by default), not the tests' own.
    """
    options = Options(environ=environ or {})
    options.parseOptions(list(argv))
    return options


def under_twistd(*argv: str) -> Options:
    """
    Parse C{argv} as twistd does: as the options of its C{wsecho} command,
    with twistd's own options as their parent.
    """
    options = Options(environ={})
    options.parent = ServerOptions()
    options.parseOptions(list(argv))
    return options


@pytest.fixture
def certificates(tmp_path: Path) -> dict[str, Path]:
    """
    A CA, and a key and certificate it signed, as cert.pem and key.pem in
    the test's directory (the names the examples use).
    """
    paths = make_certificates(tmp_path)
    shutil.copy(paths["cert"], tmp_path / "cert.pem")
    shutil.copy(paths["key"], tmp_path / "key.pem")
    return {**paths, "cert": tmp_path / "cert.pem", "key": tmp_path / "key.pem"}


def taken_port() -> socket.socket:
    """
    A socket listening on a port of 127.0.0.1, which nothing else can take.
    """
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder


# Listening before twistd forks ----------------------------------------------


def test_listens_before_twistd_forks() -> None:
    """
    Under twistd, makeService listens at once (before twistd writes its
    pidfile and forks), and twistd's own start then listens no second time.
    """
    memory = MemoryReactor()
    service = makeService(under_twistd("--port", "9000"), reactor=memory)
    assert [(s[0], s[3]) for s in memory.tcpServers] == [(9000, "127.0.0.1")]
    service.privilegedStartService()
    assert len(memory.tcpServers) == 1


def test_twistd_moves_before_it_listens() -> None:
    """
    With twistd's --rundir or --chroot, makeService leaves listening to
    twistd, after it has moved: a UNIX socket's path depends on where it is.
    """
    for option in ("--rundir=elsewhere", "--chroot=/srv"):
        options = Options(environ={})
        options.parent = ServerOptions()
        options.parent.parseOptions([option, "-n", "wsecho"])
        options.parseOptions(["--port", "9000"])
        memory = MemoryReactor()
        makeService(options, reactor=memory)
        assert memory.tcpServers == [], option


def test_port_in_use_stops_makeService() -> None:
    """
    Under twistd, a port in use ends makeService with one line and status
    1, before twistd has a pidfile or a child to leave behind.
    """
    with taken_port() as holder:
        port = holder.getsockname()[1]
        with pytest.raises(SystemExit) as raised:
            makeService(under_twistd("--port", str(port)), reactor=reactor)
    message = str(raised.value.code)
    assert message.startswith(f"wsecho: cannot listen on 127.0.0.1:{port}: ")
    assert "\n" not in message


class ListenNowTests(TestCase):
    """
    makeService under twistd, on real sockets of 127.0.0.1.
    """

    def directory(self) -> Path:
        # Not trial's mktemp: pytest runs these in the source tree.
        made = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, made)
        return made

    async def test_workers_listen_before_twistd_forks(self) -> None:
        """
        The parent of --workers listens in makeService too, once.
        """
        service = makeService(
            under_twistd("--workers", "2", "--port", "0"), reactor=reactor
        )
        assert isinstance(service, pool.WorkerPool)
        try:
            self.assertEqual(len(service.ports), 1)
            service.privilegedStartService()
            self.assertEqual(len(service.ports), 1)
        finally:
            await service.stopService()

    async def test_tls_listener_binds_where_it_says(self) -> None:
        """
        The TLS listener of --certificate binds 127.0.0.1, and says so as
        bound: the port the system chose, marked TLS.
        """
        paths = make_certificates(self.directory())
        service = makeService(
            under_twistd(
                "--port",
                "0",
                "--certificate",
                str(paths["cert"]),
                "--privkey",
                str(paths["key"]),
            ),
            reactor=reactor,
        )
        try:
            [listening] = service.listening
            found = re.fullmatch(r"127\.0\.0\.1:(\d+) \(TLS\)", listening)
            self.assertTrue(found and int(found.group(1)) > 0, listening)
        finally:
            await service.stopService()

    async def test_listen_examples_start(self) -> None:
        """
        Every --listen example of --help parses as printed, and listens (on
        port 0, its UNIX socket in the test's directory) where it says; the
        systemd one, under systemd (test_systemd_example).
        """
        sock = self.directory() / "wsecho.sock"
        bound = []
        for example in config.LISTEN_EXAMPLES:
            shown(example)
            if example.startswith("systemd:"):
                continue
            parse("--listen", example)
            here = example.replace("8181", "0").replace("/run/wsecho.sock", str(sock))
            service = makeService(under_twistd("--listen", here), reactor=reactor)
            try:
                bound += service.listening
            finally:
                await service.stopService()
        self.assertRegex(bound[0], r"^\[::1\]:[1-9]\d*$")
        self.assertEqual(bound[1], f"unix:{sock}")


# TLS from --certificate and --privkey -----------------------------------------


def test_certificate_and_privkey_serve_tls_on_port(certificates) -> None:
    """
    --certificate and --privkey make --port and --interface a TLS listener,
    on 127.0.0.1 unless told otherwise, naming the files by absolute path
    (SIGHUP reads them again, maybe from another directory).
    """
    cert, key = str(certificates["cert"]), str(certificates["key"])
    options = parse("--port", "8443", "--certificate", cert, "--privkey", key)
    assert options["listen"] == [
        f"ssl:8443:interface=127.0.0.1:privateKey={key}:certKey={cert}"
    ]
    options = parse("-i", "::1", "--certificate", cert, "--privkey", key)
    assert options["listen"][0].startswith(r"ssl:8181:interface=\:\:1:")


def other_key(path: Path) -> Path:
    """
    A PEM private key that belongs to no certificate here.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def encrypted_key(path: Path) -> Path:
    """
    A PEM private key under a passphrase.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return path


def test_bad_tls_files_are_named(tmp_path, certificates) -> None:
    """
    A bad --certificate or --privkey is a usage error that names the option,
    the file and what is wrong with it.
    """
    cert, key = str(certificates["cert"]), str(certificates["key"])
    (tmp_path / "junk.pem").write_text("not a key\n")
    junk = str(tmp_path / "junk.pem")
    wrong = str(other_key(tmp_path / "wrong.pem"))
    locked = str(encrypted_key(tmp_path / "locked.pem"))
    missing = str(tmp_path / "missing.pem")
    for argv, expected in (
        ((cert, junk), f"--privkey {junk}: not a PEM private key"),
        ((cert, cert), f"--privkey {cert}: not a PEM private key"),
        ((key, key), f"--certificate {key}: not a PEM certificate"),
        ((missing, key), f"--certificate {missing}: no such file"),
        ((cert, missing), f"--privkey {missing}: no such file"),
        ((str(tmp_path), key), f"--certificate {tmp_path}: a directory"),
        ((cert, wrong), f"--privkey {wrong}: does not match the certificate in {cert}"),
        ((cert, locked), f"--privkey {locked}: encrypted with a passphrase"),
    ):
        with pytest.raises(UsageError) as raised:
            parse("--certificate", argv[0], "--privkey", argv[1])
        assert str(raised.value).startswith(expected), str(raised.value)


def test_certificate_and_privkey_go_together(certificates) -> None:
    """
    One of the two files alone, or either with --listen, is a usage error.
    """
    cert, key = str(certificates["cert"]), str(certificates["key"])
    for argv, expected in (
        (("--certificate", cert), "--certificate needs --privkey"),
        (("--privkey", key), "--privkey needs --certificate"),
        (
            ("--certificate", cert, "--privkey", key, "--listen", "tcp:0"),
            "with --listen, name the files in an ssl: endpoint",
        ),
    ):
        with pytest.raises(UsageError) as raised:
            parse(*argv)
        assert expected in str(raised.value)


def test_bad_key_of_an_ssl_endpoint_is_named(tmp_path, certificates) -> None:
    """
    An ssl: endpoint whose key is no key names the file, not OpenSSL's
    DECODER routines.
    """
    (tmp_path / "junk.pem").write_text("not a key\n")
    description = (
        f"ssl:0:privateKey={tmp_path / 'junk.pem'}:certKey={certificates['cert']}"
    )
    with pytest.raises(UsageError) as raised:
        parse("--listen", description)
    assert str(raised.value).endswith(
        f"privateKey={tmp_path / 'junk.pem'}: not a PEM private key"
    )
    assert "DECODER" not in str(raised.value)


# The start-up line and its warnings ------------------------------------------


def test_startup_line_names_every_address_as_bound() -> None:
    """
    The start-up line gives where it listens as bound, then a warning for
    each listener on every address and each misspelt variable.
    """
    options = parse(
        "--listen",
        "tcp:0",
        "--listen",
        "tcp:0:interface=127.0.0.1",
        environ={"WSECHO_PROT": "9000"},
    )
    with capturedLogs() as events:
        announce(startup_line(options), ["0.0.0.0:41000", "127.0.0.1:41001 (TLS)"])
    [line, *warnings] = events
    assert line["log_level"] == LogLevel.info
    assert "listening on 0.0.0.0:41000, 127.0.0.1:41001 (TLS), 1 worker(s)" in (
        formatEvent(line)
    )
    assert [w["warning"] for w in warnings] == [
        "WSECHO_PROT is not a wsecho variable, ignored: did you mean WSECHO_PORT?",
        "--listen 'tcp:0' listens on every address, reachable from other hosts; "
        "add :interface=127.0.0.1 to listen on this host only",
    ]
    assert {w["log_level"] for w in warnings} == {LogLevel.warn}


def test_every_address_warning() -> None:
    """
    Only a TCP or TLS endpoint that names no interface is warned of.
    """
    assert config.every_address_warning("tcp:8181")
    assert config.every_address_warning("tcp6:8181")
    assert config.every_address_warning("ssl:8443:privateKey=k.pem")
    for description in (
        "tcp:8181:interface=127.0.0.1",
        r"tcp6:8181:interface=\:\:1",
        "tcp:8181:127.0.0.1",
        "unix:/run/wsecho.sock",
        "systemd:domain=INET:index=0",
    ):
        assert config.every_address_warning(description) is None, description


# --help: its examples work, and it says each thing once -----------------------


def help_text() -> str:
    return str(Options(environ={}))


def shown(example: str) -> None:
    """
    Assert that C{--help} shows C{example} as it is, no word of it broken
    across lines.
    """
    text = help_text()
    for word in example.split():
        assert word in text, f"{word!r} is not in --help whole"
    assert example in " ".join(text.split())


def test_value_examples_parse() -> None:
    """
    The examples of --allowed-origin, --subprotocol and --trust-proxy in
    --help are taken as printed.
    """
    for example in config.ORIGIN_EXAMPLES:
        shown(example)
        assert parse("--allowed-origin", example).settings().allowed_origins == (
            example,
        )
    for example in config.SUBPROTOCOL_EXAMPLES:
        shown(example)
        assert parse("--subprotocol", example).settings().subprotocols == (example,)
    for example in config.PROXY_EXAMPLES:
        shown(example)
        assert parse("--trust-proxy", example)["trust-proxy"] == [example]


def test_environment_examples_parse() -> None:
    """
    The variables --help shows as examples are taken as printed (after the
    shell has removed its quotes).
    """
    environ = {}
    for example in config.ENVIRONMENT_EXAMPLES:
        shown(example)
        [assignment] = shlex.split(example)
        name, value = assignment.split("=", 1)
        environ[name] = value
    options = parse(environ=environ)
    assert options.warnings == []
    assert options["listen"] == [
        "tcp:8181:interface=127.0.0.1",
        "unix:/run/wsecho.sock",
    ]
    assert options["no-compression"]


def option_helps() -> dict[str, str]:
    """
    Each option's help in --help, its lines joined.
    """
    helps: dict[str, str] = {}
    name = None
    for line in help_text().split("\n\n")[0].splitlines()[2:]:
        found = re.match(r"\s*(?:-\w, )?--([\w-]+)=?\s+(.*)", line)
        if found:
            name = found.group(1)
            helps[name] = found.group(2)
        elif name is not None:
            helps[name] += " " + line.strip()
    return helps


def test_help_says_each_thing_once() -> None:
    """
    No option's help says the same two words twice (as "0: no limit.
    [default: 0]. a whole number, 0 for no limit." did).
    """
    helps = option_helps()
    assert len(helps) >= 25, helps.keys()
    for name, text in helps.items():
        words = re.findall(r"\w[\w.-]*\w|\w", text.lower().replace("[default:", ""))
        pairs = list(itertools.pairwise(words))
        repeated = {p for p in pairs if pairs.count(p) > 1}
        assert not repeated, f"--{name} repeats {repeated}: {text}"


# The environment --------------------------------------------------------------


def test_command_line_wins_over_a_bad_variable() -> None:
    """
    A variable whose option the command line gives is not read, even bad:
    the command line wins, in any of its spellings.
    """
    bad = {"WSECHO_PORT": "abc", "WSECHO_NO_COMPRESSION": "maybe"}
    for argv in (
        ["--port", "9000", "--no-compression"],
        ["-p", "9000", "--no-compression"],
        ["-p9000", "--no-comp"],
        ["--po=9000", "--no-compression"],
    ):
        options = parse(*argv, environ=bad)
        assert options["listen"] == ["tcp:9000:interface=127.0.0.1"], argv
        assert options["no-compression"]
    with pytest.raises(UsageError, match=r"WSECHO_PORT: .*--port 'abc'"):
        parse(environ={"WSECHO_PORT": "abc"})
    listen = {"WSECHO_LISTEN": "carrier-pigeon:1"}
    assert parse("--listen", "tcp:1", environ=listen)["listen"] == ["tcp:1"]


def test_listen_and_port_replace_each_others_variables(certificates) -> None:
    """
    --listen on the command line replaces WSECHO_PORT and the TLS files'
    variables; --port (or the TLS files) replaces WSECHO_LISTEN.
    """
    cert, key = str(certificates["cert"]), str(certificates["key"])
    tls = {"WSECHO_CERTIFICATE": cert, "WSECHO_PRIVKEY": key, "WSECHO_PORT": "1"}
    assert parse("--listen", "tcp:2", environ=tls)["listen"] == ["tcp:2"]
    listen = {"WSECHO_LISTEN": "tcp:2"}
    assert parse("--port", "3", environ=listen)["listen"] == [
        "tcp:3:interface=127.0.0.1"
    ]
    options = parse("--certificate", cert, "--privkey", key, environ=listen)
    assert options["listen"][0].startswith("ssl:8181:interface=127.0.0.1:")
    # Both from the environment: which one was meant is not known.
    with pytest.raises(UsageError, match="with --listen"):
        parse(environ={**tls, **listen})


def test_misspelt_variable_is_warned_of() -> None:
    """
    A WSECHO_ variable that names no option is warned of, with the closest
    known one; the variables the parent of --workers sets for its workers
    are not.
    """
    assert parse(environ={"WSECHO_PROT": "9000"}).warnings == [
        "WSECHO_PROT is not a wsecho variable, ignored: did you mean WSECHO_PORT?"
    ]
    assert parse(environ={"WSECHO_CERT": "c.pem"}).warnings == [
        "WSECHO_CERT is not a wsecho variable, ignored: see --help"
    ]
    workers = {
        name: "1"
        for name in (pool.FDS_VARIABLE, pool.NUMBER_VARIABLE, pool.CONTROL_VARIABLE)
    }
    assert parse(environ={**workers, "WSECHO_WORKERS": "1", "PROT": "1"}).warnings == []


def test_twistd_option_after_wsecho_gets_a_hint(capsys) -> None:
    """
    One of twistd's options given after wsecho is not recognised, with a
    hint that it goes before wsecho; an option of nobody's gets no hint.
    """
    for argv, hint in (
        (["--pidfile=x.pid"], "--pidfile is twistd's: give it before wsecho"),
        (["-n"], "-n is twistd's: give it before wsecho"),
        (["--logf", "x"], "--logf is twistd's"),
        (["--no-such-option"], None),
    ):
        with pytest.raises(SystemExit) as raised:
            under_twistd(*argv)
        assert raised.value.code == 2
        first = capsys.readouterr().err.splitlines()[0]
        assert "not recognized" in first
        assert (hint in first) if hint else ("twistd's" not in first), first


# Real twistd processes --------------------------------------------------------


def twistd(
    cwd: Path, *argv: str, timeout: float = PROMPTLY
) -> subprocess.CompletedProcess:
    """
    Run twistd as a user types it, and wait for it to exit (it must within
    C{timeout}: a daemon that hangs fails the test).
    """
    return subprocess.run(
        [str(BIN / "twistd"), *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.system
@pytest.mark.parametrize("foreground", [[], ["-n"]], ids=["daemonised", "-n"])
def test_port_in_use_is_one_line_and_exit_1(tmp_path, foreground) -> None:
    """
    A port in use: one line on the terminal and exit 1 within seconds,
    no pidfile left, with or without -n.
    """
    with taken_port() as holder:
        port = holder.getsockname()[1]
        result = twistd(
            tmp_path, *foreground, "--pidfile=x.pid", "wsecho", "--port", str(port)
        )
    assert result.returncode == 1, result
    assert result.stderr.splitlines() == [
        f"wsecho: cannot listen on 127.0.0.1:{port}: [Errno 98] Address already in use"
    ]
    assert not (tmp_path / "x.pid").exists()


@pytest.mark.system
@pytest.mark.parametrize("foreground", [[], ["-n"]], ids=["daemonised", "-n"])
def test_bad_certificate_is_one_line(tmp_path, certificates, foreground) -> None:
    """
    A bad certificate file: one line naming it on the terminal, a non-zero
    exit within seconds, no pidfile left, with or without -n.
    """
    (tmp_path / "bad.pem").write_text("-----BEGIN CERTIFICATE-----\nbad\n")
    result = twistd(
        tmp_path,
        *foreground,
        "--pidfile=x.pid",
        "wsecho",
        "--port",
        "0",
        "--certificate",
        "bad.pem",
        "--privkey",
        "key.pem",
    )
    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == (
        "twistd wsecho: --certificate bad.pem: not a PEM certificate"
    )
    assert not (tmp_path / "x.pid").exists()


@pytest.mark.system
def test_daemonised_start_and_stop(tmp_path) -> None:
    """
    Without -n, twistd returns 0 at once, the daemon it left listens where
    its log's start-up line says, and on SIGTERM it exits and removes its
    pidfile.
    """
    result = twistd(tmp_path, "--pidfile=x.pid", "wsecho", "--port", "0")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    pid = int((tmp_path / "x.pid").read_text())
    try:
        log = tmp_path / "twistd.log"
        poll_until(lambda: " listening on " in log.read_text())
        found = re.search(r"listening on 127\.0\.0\.1:(\d+), ", log.read_text())
        assert found, log.read_text()
        # An answer means the reactor runs, so its SIGTERM handler is in
        # place (the socket itself listens from before the fork).
        answer = http.client.HTTPConnection(
            "127.0.0.1", int(found.group(1)), timeout=DEADLINE
        )
        answer.request("GET", "/healthz")
        assert answer.getresponse().status == 200
        answer.close()
    finally:
        os.kill(pid, signal.SIGTERM)
    poll_until(lambda: not (tmp_path / "x.pid").exists())


@pytest.mark.system
def test_tls_from_two_options(tmp_path, certificates) -> None:
    """
    twistd -n wsecho --port 0 --certificate cert.pem --privkey key.pem
    listens on 127.0.0.1 only, says so with the real port, and echoes over
    wss; SIGHUP reads the two files again.
    """
    daemon = start_daemon(
        tmp_path, "--port", "0", "--certificate", "cert.pem", "--privkey", "key.pem"
    )
    try:
        line = daemon.wait_for(" listening on ")
        assert f" listening on 127.0.0.1:{daemon.port} (TLS), 1 worker(s)" in line
        trusting = ssl.create_default_context(cafile=str(certificates["ca"]))
        url = f"wss://127.0.0.1:{daemon.port}/socket"
        with connect(url, ssl=trusting, open_timeout=DEADLINE) as ws:
            ws.send("over TLS")
            assert ws.recv(timeout=DEADLINE) == "over TLS"
        # Another loopback address reaches the host, but not this listener.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", daemon.port), DEADLINE).close()

        (tmp_path / "new").mkdir()
        new = make_certificates(tmp_path / "new")
        shutil.copy(new["cert"], tmp_path / "cert.pem")
        shutil.copy(new["key"], tmp_path / "key.pem")
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for("reloaded")
        trusting = ssl.create_default_context(cafile=str(new["ca"]))
        with connect(url, ssl=trusting, open_timeout=DEADLINE) as ws:
            ws.send("new certificate")
            assert ws.recv(timeout=DEADLINE) == "new certificate"

        (tmp_path / "key.pem").write_text("not a key\n")
        daemon.process.send_signal(signal.SIGHUP)
        line = daemon.wait_for("not reloaded")
        assert f"privateKey={tmp_path / 'key.pem'}: not a PEM private key" in line
    finally:
        assert daemon.stop() == 0, "".join(daemon.log)


@pytest.mark.system
def test_command_line_wins_in_twistd(tmp_path) -> None:
    """
    twistd -n wsecho --port 0 starts although WSECHO_PORT is bad, and warns
    of a misspelt variable in its log.
    """
    env = {**os.environ, "WSECHO_PORT": "abc", "WSECHO_PROT": "1"}
    daemon = start_daemon(tmp_path, "--port", "0", env=env)
    try:
        daemon.wait_for("did you mean WSECHO_PORT?")
        # Served: the reactor runs, and has taken SIGTERM over.
        url = f"http://127.0.0.1:{daemon.port}/healthz"
        with urllib.request.urlopen(url, timeout=DEADLINE) as response:
            assert response.status == 200
    finally:
        assert daemon.stop() == 0, "".join(daemon.log)


@pytest.mark.system
def test_systemd_example(tmp_path) -> None:
    """
    The systemd example of --help listens on the socket systemd passes,
    as printed.
    """
    [example] = [e for e in config.LISTEN_EXAMPLES if e.startswith("systemd:")]
    with socket.socket() as passed:
        passed.bind(("127.0.0.1", 0))
        passed.listen()
        port = passed.getsockname()[1]
        # As systemd does: the socket at descriptor 3, LISTEN_PID naming
        # the process that execs twistd.
        program = (
            "import os, sys\n"
            f"os.dup2({passed.fileno()}, 3)\n"
            "os.environ.update(LISTEN_FDS='1', LISTEN_FDNAMES='wsecho.socket')\n"
            "os.environ['LISTEN_PID'] = str(os.getpid())\n"
            "os.execv(sys.argv[1], sys.argv[1:])\n"
        )
        daemon = Daemon(
            tmp_path,
            command=[
                *(sys.executable, "-c", program, str(BIN / "twistd"), "-n"),
                *("--pidfile=", "wsecho", "--listen", example),
            ],
            pass_fds=(passed.fileno(),),
        )
    try:
        line = daemon.wait_for(" listening on ")
        assert f" listening on 127.0.0.1:{port}, " in line
        url = f"http://127.0.0.1:{port}/healthz"
        with urllib.request.urlopen(url, timeout=DEADLINE) as response:
            assert response.status == 200
    finally:
        assert daemon.stop() == 0, "".join(daemon.log)
