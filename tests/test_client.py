"""
wsecho-client as users run it, against the real daemon and against servers
that misbehave on purpose.
"""

import io
import json
import re
import socket
import subprocess
import threading

import pytest
from websockets.sync.server import serve

from support import BIN, DEADLINE
from support.certs import make_certificates
from support.daemon import free_port, start_daemon

# Each test starts real processes: deselected by -m "not system".
pytestmark = pytest.mark.system


def client(*args: str, stdin: str | bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "wsecho-client"), *args],
        input=stdin.encode() if isinstance(stdin, str) else stdin,
        capture_output=True,
        timeout=DEADLINE * 2,
    )


def text(result) -> tuple[int, str, str]:
    return result.returncode, result.stdout.decode(), result.stderr.decode()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    daemon = start_daemon(
        tmp_path_factory.mktemp("ws"),
        "--subprotocol",
        "chat",
    )
    port = daemon.port
    yield f"ws://127.0.0.1:{port}/socket"
    assert daemon.stop() == 0


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    paths = make_certificates(directory, names=("example.test",))
    daemon = start_daemon(
        directory,
        "--listen",
        f"ssl:0:interface=127.0.0.1:privateKey={paths['key']}:certKey={paths['cert']}",
    )
    yield daemon.port, paths["ca"]
    assert daemon.stop() == 0


@pytest.fixture
def misbehaving():
    """
    A websockets server on loopback whose handler the test chooses.
    """
    servers = []

    def start(handler):
        server = serve(handler, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"

    yield start
    for server in servers:
        server.shutdown()


def test_defaults(daemon) -> None:
    """
    With a URL only it sends Hello, world! and prints the echo and its type.
    """
    assert text(client(daemon)) == (0, "text: Hello, world!\n", "")


def test_binary_count_and_stdin(daemon) -> None:
    """
    --binary sends bytes, --count repeats, and - reads a message from stdin.
    """
    code, out, err = text(
        client(daemon, "--binary", "--count", "2", "ab", "-", stdin=b"\x00\xff")
    )
    assert code == 0
    assert out.splitlines() == [
        "binary (2 bytes): 6162",
        "binary (2 bytes): 6162",
        "binary (2 bytes): 00ff",
        "binary (2 bytes): 00ff",
    ]
    # A --count run ends with its summary, on stderr.
    assert err.startswith("wsecho-client: 4 messages (8 bytes) in "), err
    assert err.count("\n") == 1


def test_count_summary(daemon) -> None:
    """
    A quiet --count run prints only its summary: messages, rate and the
    latency percentiles, consistent with each other.
    """
    code, out, err = text(client(daemon, "--count", "300", "-q", "probe"))
    assert (code, out) == (0, "")
    match = re.fullmatch(
        r"wsecho-client: 300 messages \(1500 bytes\) in ([\d.]+) s: (\d+) "
        r"messages/s; latency p50 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms\n",
        err,
    )
    assert match, err
    seconds, rate, p50, p99, most = map(float, match.groups())
    assert 0 < p50 <= p99 <= most
    # The seconds are printed to 0.01 s, the rate to 1 message/s.
    assert abs(rate * seconds - 300) <= rate * 0.005 + seconds + 1


def test_json(daemon) -> None:
    """
    --json prints, in order, the connection (URL, subprotocol, extensions),
    each echo, the summary and the close (code, reason, by whom), as one
    JSON object a line.
    """
    code, out, err = text(client(daemon, "--json", "Hello, world!", "h\u00e9"))
    assert (code, err) == (0, "")
    records = [json.loads(line) for line in out.splitlines()]
    events = [r.pop("event") for r in records]
    assert events == ["connected", "echo", "echo", "summary", "closed"]
    assert records[0] == {
        "url": daemon,
        "subprotocol": None,
        "extensions": ["permessage-deflate"],
    }
    assert records[1]["type"] == "text" and records[1]["text"] == "Hello, world!"
    assert records[2]["size"] == 3 and records[2]["text"] == "h\u00e9"
    assert records[1]["latency_ms"] >= 0
    summary = records[3]
    assert (summary["messages"], summary["bytes"]) == (2, 16)
    assert set(summary["latency_ms"]) == {"p50", "p99", "max"}
    assert records[4] == {"code": 1000, "reason": None, "by": "client", "clean": True}

    code, out, _ = text(client(daemon, "--json", "--binary", "-", stdin=b"\x00\xff"))
    echo = json.loads(out.splitlines()[1])
    assert (echo["type"], echo["base64"]) == ("binary", "AP8=")


def test_json_error() -> None:
    """
    With --json a failure is also a JSON object on stdout, with the exit
    code; stderr keeps its one line.
    """
    port = free_port()
    code, out, err = text(client(f"ws://127.0.0.1:{port}/socket", "--json"))
    assert code == 3
    assert json.loads(out) == {
        "event": "error",
        "exit": 3,
        "message": f"connection refused: 127.0.0.1:{port}",
    }
    assert err == f"wsecho-client: connection refused: 127.0.0.1:{port}\n"


def test_progress_lines() -> None:
    """
    A --count run reports its progress on stderr every second.
    """
    from twisted.internet.task import Clock

    from wsecho.client import Config, Message, Session
    from wsecho.client.output import Output

    class Protocol:
        closed = None
        websocket_protocol_in_use = None
        websocket_extensions_in_use = ()

        def sendMessage(self, payload, binary):
            pass

        def sendClose(self, code, reason=None):
            self.closed = code

    clock, out, err = Clock(), io.StringIO(), io.StringIO()
    message = Message(b"x", False)
    config = Config(messages=[message], count=3, quiet=True)
    session = Session(config, clock, Output(config, out, err))
    protocol = Protocol()
    session.opened(protocol)
    session.received(message)
    clock.advance(1.0)
    assert err.getvalue().startswith("1/3 messages, ")
    session.received(message)
    clock.advance(1.0)
    assert err.getvalue().splitlines()[1].startswith("2/3 messages, ")
    session.received(message)
    assert protocol.closed == 1000
    assert err.getvalue().splitlines()[2].startswith("wsecho-client: 3 messages ")
    assert not session.progress.active()


def test_interactive(daemon) -> None:
    """
    --interactive sends a message per line of stdin, answers /ping with the
    pong's round trip, closes at /close, and says on stderr where it is
    connected and how it closed.
    """
    code, out, err = text(
        client(daemon, "--interactive", stdin="one\n/ping\ntwo\n/close\nnever sent\n")
    )
    assert code == 0, err
    assert re.fullmatch(r"text: one\npong \d+\.\d\d ms\ntext: two\n", out), out
    assert err.splitlines() == [
        f"connected to {daemon} (no subprotocol, permessage-deflate)",
        "closed 1000 (by the client)",
    ], err


def test_interactive_binary_ping_and_close_code(daemon) -> None:
    """
    -i -b sends each line as binary (shown as hex with its length), /ping
    DATA prints its pong, and /close CODE REASON closes with them: an echo
    server sends them back.
    """
    code, out, err = text(
        client(daemon, "-i", "-b", stdin="x\n/ping hello\n/close 4000 bye\n")
    )
    assert code == 0, err
    assert re.fullmatch(r"binary \(1 byte\): 78\npong \d+\.\d\d ms\n", out), out
    assert err.splitlines()[-1] == "closed 4000 bye (by the client)", err


def test_no_check(misbehaving) -> None:
    """
    --no-check is a client for any server: what arrives is printed, nothing
    is compared, and a clean close exits 0.
    """

    def reverse(ws):
        for message in ws:
            ws.send(message[::-1])

    url = misbehaving(reverse)
    assert text(client(url, "--no-check", "abc")) == (0, "text: cba\n", "")
    code, _, err = text(client(url, "-i", "--no-check", stdin="abc\n"))
    assert code == 0, err


def test_options_reach_the_server(daemon) -> None:
    """
    --subprotocol, --origin, --header and --no-compression are accepted by
    the daemon.
    """
    result = client(
        daemon,
        "--subprotocol",
        "chat",
        "--origin",
        "http://127.0.0.1:" + daemon.split(":")[2].split("/")[0],
        "-H",
        "X-Test: 1",
        "--no-compression",
        "hi",
    )
    assert text(result) == (0, "text: hi\n", "")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["ws://127.0.0.1:{free}/socket"], 3, "connection refused: 127.0.0.1:"),
        (["{base}/"], 5, "200 OK: <!DOCTYPE html> (not a WebSocket endpoint"),
        (["{wss}"], 4, "the server did not answer TLS at 127.0.0.1:"),
        (["ws://nonexistent.invalid/socket"], 3, "cannot resolve"),
        (["{url}", "--origin", "https://evil.example"], 5, "403"),
        (["{base}/nope"], 5, "404 Not Found: "),
        (["{base}/nope"], 5, "(not a WebSocket endpoint: wsecho's echo is at /socket)"),
        (["{url}/deeper"], 5, "404 Not Found: "),
        (["{url}/deeper"], 5, "wsecho's echo is at /socket"),
        (["http://127.0.0.1/"], 2, "URL"),
        (["{url}", "--count", "0"], 2, "--count"),
        (["{url}", "--header", "no colon"], 2, "--header"),
        (["{url}", "--interactive", "hi"], 2, "--interactive"),
        (["{url}", "-"], 2, "UTF-8"),
    ],
)
def test_failures(daemon, args, code, message) -> None:
    """
    Each failure gives its documented exit code and one line on stderr.
    """
    base = daemon.rsplit("/", 1)[0]
    wss = daemon.replace("ws://", "wss://")
    argv = [a.format(url=daemon, base=base, free=free_port(), wss=wss) for a in args]
    result = client(*argv, stdin=b"\xff\xfe")
    stderr = result.stderr.decode()
    assert result.returncode == code, stderr
    assert message in stderr
    assert "Traceback" not in stderr
    if code != 2:  # argparse prints its usage before the error line
        assert stderr.count("\n") == 1, stderr


def test_tls_verified(tls) -> None:
    """
    wss:// with --cafile verifies the certificate and its address.
    """
    port, ca = tls
    assert text(
        client(f"wss://127.0.0.1:{port}/socket", "--cafile", str(ca), "secure")
    ) == (
        0,
        "text: secure\n",
        "",
    )


def test_tls_failures(tls) -> None:
    """
    An untrusted certificate or one for another host name fails with exit
    code 4; --insecure skips the checks; ws:// to the TLS port says to use
    wss://.
    """
    port, ca = tls
    untrusted = client(f"wss://127.0.0.1:{port}/socket")
    assert untrusted.returncode == 4, untrusted.stderr
    assert b"TLS failed" in untrusted.stderr
    # And what to do about it.
    assert b"--cafile PEM trusts its CA, --insecure skips" in untrusted.stderr
    wrong_name = client(f"wss://localhost:{port}/socket", "--cafile", str(ca))
    assert wrong_name.returncode == 4, wrong_name.stderr
    assert b"host name" in wrong_name.stderr
    assert b"--insecure" in wrong_name.stderr
    assert client(f"wss://localhost:{port}/socket", "--insecure").returncode == 0
    plain = client(f"ws://127.0.0.1:{port}/socket")
    assert plain.returncode == 5, plain.stderr
    assert b"if it is a TLS port, use wss://" in plain.stderr


def test_bad_cafile(tls, tmp_path) -> None:
    """
    A --cafile that cannot be read or holds no certificate is a usage error.
    """
    port, _ = tls
    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here\n")
    for cafile in (str(tmp_path / "missing.pem"), str(empty)):
        result = client(f"wss://127.0.0.1:{port}/socket", "--cafile", cafile)
        assert result.returncode == 2
        assert b"--cafile" in result.stderr


def test_echo_mismatch(misbehaving) -> None:
    """
    An echo that differs from what was sent exits 1.
    """

    def reverse(ws):
        for message in ws:
            ws.send(message[::-1])

    result = client(misbehaving(reverse), "abc")
    assert result.returncode == 1
    assert b"echo mismatch" in result.stderr


def test_echo_type_mismatch(misbehaving) -> None:
    """
    An echo of the right bytes but the wrong type exits 1.
    """

    def as_binary(ws):
        for message in ws:
            ws.send(message.encode() if isinstance(message, str) else message)

    assert client(misbehaving(as_binary), "abc").returncode == 1


def test_closed_by_server(misbehaving) -> None:
    """
    A server that closes before echoing makes the client exit 7 with the
    close code.
    """

    def close(ws):
        ws.recv()
        ws.close(4321, "not today")

    result = client(misbehaving(close))
    assert result.returncode == 7
    assert b"4321" in result.stderr


def test_timeout() -> None:
    """
    A server that accepts the connection but never answers the handshake
    makes the client exit 6 after --timeout.
    """
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        result = client(
            f"ws://127.0.0.1:{silent.getsockname()[1]}/", "--timeout", "0.5"
        )
    assert result.returncode == 6
    assert b"timed out" in result.stderr
