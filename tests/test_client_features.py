"""
What wsecho-client offers beyond the exchange itself: pings (the server's,
and its own), reconnecting, client certificates, HTTP proxies, the short
forms of the command line, --json's whole stream and the hints of its
errors; against the real daemon, a real proxy (tinyproxy) and servers that
misbehave on purpose.
"""

import json
import os
import queue
import signal
import ssl
import subprocess
import threading

import pytest
from websockets.sync.server import serve

from support import BIN, DEADLINE, require
from support.certs import make_certificates
from support.client_certs import make_client_certificate
from support.daemon import Daemon, free_port, start_daemon

pytestmark = pytest.mark.system

# The client's environment: no proxy unless a test sets one.
PLAIN = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


def client(*args: str, stdin: bytes = b"", env=None) -> tuple[int, str, str]:
    result = subprocess.run(
        [str(BIN / "wsecho-client"), *args],
        input=stdin,
        capture_output=True,
        timeout=DEADLINE * 2,
        env=PLAIN if env is None else env,
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


def events(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    daemon = start_daemon(tmp_path_factory.mktemp("ws"))
    yield daemon
    assert daemon.stop() == 0


@pytest.fixture
def server():
    """
    A websockets server on loopback whose handler the test chooses (and,
    for wss, its SSL context).
    """
    servers = []

    def start(handler, context=None):
        server = serve(handler, "127.0.0.1", 0, ssl=context)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        scheme = "wss" if context else "ws"
        return f"{scheme}://127.0.0.1:{server.socket.getsockname()[1]}/"

    yield start
    for server in servers:
        server.shutdown()


def echo(ws):
    for message in ws:
        ws.send(message)


def test_short_forms(daemon) -> None:
    """
    HOST:PORT means ws://HOST:PORT/socket, HOST:PORT/PATH keeps the path,
    and a first argument that is no URL is a message to the default URL.
    """
    port = daemon.port
    assert client(f"127.0.0.1:{port}", "hi") == (0, "text: hi\n", "")
    code, _, err = client(f"127.0.0.1:{port}/", "hi")
    assert code == 5 and "404" not in err and "200 OK" in err, err
    code, out, _ = client(f"localhost:{port}", "--json", "x")
    assert events(out)[0]["url"] == f"ws://localhost:{port}/socket"


def test_show_ping(server) -> None:
    """
    --show-ping shows a ping from the server and the pong sent back, in
    the order they happened (text and JSON); without it they are not shown.
    """

    def ping_then_echo(ws):
        for message in ws:
            ws.ping(b"anyone?")
            ws.send(message)

    url = server(ping_then_echo)
    assert client(url, "--show-ping", "abc") == (
        0,
        "ping from the server: anyone?\npong sent: anyone?\ntext: abc\n",
        "",
    )
    assert client(url, "abc") == (0, "text: abc\n", "")
    code, out, _ = client(url, "--show-ping", "--json", "abc")
    assert code == 0
    kinds = [(e["event"], e.get("data")) for e in events(out)]
    assert kinds[1:4] == [("ping", "anyone?"), ("pong_sent", "anyone?"), ("echo", None)]


def test_ping_interval(daemon) -> None:
    """
    --ping-interval pings the server every so often and shows each pong's
    round trip, while the session stays open.
    """
    process = subprocess.Popen(
        [
            str(BIN / "wsecho-client"),
            *("-i", "--json", "--ping-interval", "0.1"),
            f"127.0.0.1:{daemon.port}",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=PLAIN,
    )
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout], daemon=True
    ).start()
    try:
        pongs = []
        while len(pongs) < 2:
            record = json.loads(lines.get(timeout=DEADLINE))
            if record["event"] == "pong":
                pongs.append(record)
        assert all(p["rtt_ms"] >= 0 and p["size"] > 0 for p in pongs)
        process.stdin.close()
        assert process.wait(timeout=DEADLINE) == 0
    finally:
        process.kill()
        process.wait()


def test_reconnect(server) -> None:
    """
    --reconnect: after the server closes a connection, the client says so,
    connects again after a wait and sends again what was not echoed.
    """
    connections = []

    def close_first(ws):
        connections.append(ws)
        if len(connections) == 1:
            ws.recv()
            ws.close(1012, "restarting")
            return
        echo(ws)

    url = server(close_first)
    code, out, err = client(url, "--reconnect", "abc")
    assert (code, out) == (0, "text: abc\n"), err
    assert err == (
        "wsecho-client: connection closed by the server (code 1012, "
        "restarting); reconnecting in 0.5 s (attempt 1 of 5)\n"
    )
    assert len(connections) == 2
    # Without --reconnect, the first close ends the run.
    connections.clear()
    code, _, err = client(url, "abc")
    assert code == 7 and "reconnecting" not in err, err
    assert len(connections) == 1


def test_reconnect_is_bounded(server) -> None:
    """
    A server that never echoes gets --reconnect-tries attempts, each after
    twice the wait, then the client gives up with the close's exit code.
    """

    def close_always(ws):
        ws.recv()
        ws.close(1012)

    url = server(close_always)
    code, _, err = client(url, "--reconnect", "--reconnect-tries", "2", "abc")
    assert code == 7, err
    lines = err.splitlines()
    assert [line.rpartition("; ")[2] for line in lines[:2]] == [
        "reconnecting in 0.5 s (attempt 1 of 2)",
        "reconnecting in 1 s (attempt 2 of 2)",
    ]
    assert lines[2:] == ["wsecho-client: connection closed by the server (code 1012)"]


@pytest.fixture(scope="module")
def mutual_tls(tmp_path_factory):
    """
    A wss server that requires a client certificate signed by its client
    CA, and the files: its CA, and the client's.
    """
    directory = tmp_path_factory.mktemp("mtls")
    server_files = make_certificates(directory)
    client_files = make_client_certificate(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server_files["cert"], server_files["key"])
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(client_files["ca"])
    return context, server_files["ca"], client_files


def test_client_certificate(server, mutual_tls) -> None:
    """
    --cert (with --key, or with the key in the same file) presents a client
    certificate; without one the server refuses and the client says to
    give one.
    """
    context, ca, files = mutual_tls
    url = server(echo, context)
    trust = ("--cafile", str(ca))
    with_key = ("--cert", str(files["cert"]), "--key", str(files["key"]))
    assert client(url, *trust, *with_key, "hi") == (0, "text: hi\n", "")
    assert client(url, *trust, "--cert", str(files["both"]), "hi")[0] == 0
    assert client(url, "--insecure", "--cert", str(files["both"]), "hi")[0] == 0
    code, _, err = client(url, *trust, "hi")
    assert code == 4 and "--cert" in err, err
    code, _, err = client(url, *trust, "--cert", str(files["cert"]), "hi")
    assert code == 2 and f"--cert {files['cert']}" in err, err
    code, _, err = client(url, "--key", str(files["key"]))
    assert code == 2 and "--key needs --cert" in err


@pytest.fixture
def proxy(tmp_path):
    """
    Start tinyproxy on loopback with a configuration of the test's; return
    its URL and its log.
    """
    tinyproxy = require("tinyproxy")
    started = []

    def start(*settings: str):
        port = free_port()
        config = tmp_path / f"tinyproxy-{port}.conf"
        lines = [f"Port {port}", "Listen 127.0.0.1", "Allow 127.0.0.1", "LogLevel Info"]
        config.write_text("\n".join([*lines, *settings]) + "\n")
        process = Daemon(tmp_path, command=[tinyproxy, "-d", "-c", str(config)])
        started.append(process)
        process.wait_for("Accepting connections")
        return f"http://127.0.0.1:{port}", process

    yield start
    for process in started:
        process.stop()


def test_proxy(daemon, proxy) -> None:
    """
    --proxy tunnels ws:// through an HTTP proxy with CONNECT.
    """
    url, log = proxy()
    target = f"ws://127.0.0.1:{daemon.port}/socket"
    assert client("--proxy", url, target, "through") == (0, "text: through\n", "")
    log.wait_for(f"Request (file descriptor 4): CONNECT 127.0.0.1:{daemon.port} ")


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    paths = make_certificates(directory, names=("example.test",))
    daemon = start_daemon(
        directory,
        "--listen",
        f"ssl:0:interface=127.0.0.1:privateKey={paths['key']}:certKey={paths['cert']}",
    )
    yield daemon.port, paths["ca"]
    assert daemon.stop() == 0


def test_proxy_from_the_environment(daemon, tls_daemon, proxy) -> None:
    """
    https_proxy carries wss:// (TLS inside the tunnel, verified as usual),
    http_proxy ws://, and no_proxy names hosts to reach directly.
    """
    url, log = proxy()
    port, ca = tls_daemon
    secure = f"wss://127.0.0.1:{port}/socket"
    env = {**PLAIN, "https_proxy": url}
    assert client(secure, "--cafile", str(ca), "tls", env=env) == (0, "text: tls\n", "")
    log.wait_for(f": CONNECT 127.0.0.1:{port} ")
    # Verified inside the tunnel: without the CA, the certificate is refused.
    code, _, err = client(secure, "tls", env=env)
    assert code == 4 and "--cafile" in err and "--insecure" in err, err

    closed = f"http://127.0.0.1:{free_port()}"
    plain = f"ws://127.0.0.1:{daemon.port}/socket"
    code, _, err = client(plain, env={**PLAIN, "http_proxy": closed})
    assert code == 3 and "connection refused: the proxy 127.0.0.1:" in err, err
    env = {**PLAIN, "http_proxy": closed, "no_proxy": "127.0.0.1"}
    assert client(plain, "direct", env=env) == (0, "text: direct\n", "")
    assert (
        client(plain, "--proxy", "", "direct", env={**PLAIN, "http_proxy": closed})[0]
        == 0
    )


def test_proxy_credentials(daemon, proxy) -> None:
    """
    A proxy that asks for credentials gets them from the proxy URL; without
    them the client says that the proxy refused, and why.
    """
    url, _ = proxy("BasicAuth alice s3cret")
    target = f"ws://127.0.0.1:{daemon.port}/socket"
    code, _, err = client("--proxy", url, target)
    assert code == 3 and "the proxy refused" in err and "407" in err, err
    with_password = url.replace("http://", "http://alice:s3cret@")
    assert client("--proxy", with_password, target, "ok") == (0, "text: ok\n", "")
    code, _, err = client("--proxy", "socks5://127.0.0.1:1080", target)
    assert code == 2 and "--proxy" in err, err


def test_json_stream(daemon, server) -> None:
    """
    --json: a pong comes before the summary, a run without echoes has no
    latency (null, not 0), a close by the server says so before the
    error, and a usage error is a JSON object too.
    """
    target = f"127.0.0.1:{daemon.port}"
    code, out, _ = client(target, "-i", "--json", stdin=b"/ping\n")
    assert code == 0
    records = events(out)
    assert [r["event"] for r in records] == ["connected", "pong", "summary", "closed"]
    assert records[2]["messages"] == 0
    assert records[2]["latency_ms"] == {"p50": None, "p99": None, "max": None}

    def close(ws):
        ws.recv()
        ws.close(4321, "not today")

    code, out, _ = client(server(close), "--json")
    records = events(out)
    assert code == 7
    assert [r["event"] for r in records] == ["connected", "summary", "closed", "error"]
    assert records[2] == {
        "event": "closed",
        "code": 4321,
        "reason": "not today",
        "by": "server",
        "clean": True,
    }
    assert records[3]["exit"] == 7

    code, out, err = client(target, "--json", "--count", "0")
    assert code == 2 and "--count" in err
    assert events(out) == [
        {"event": "error", "exit": 2, "message": "--count must be at least 1"}
    ]


def test_escaped_and_raw(daemon) -> None:
    """
    A control character in an echo is printed escaped unless --raw, and
    JSON carries it as JSON escapes it.
    """
    target = f"127.0.0.1:{daemon.port}"
    assert client(target, "a\x1b[2Jb\x07") == (0, "text: a\\x1b[2Jb\\x07\n", "")
    assert client(target, "--raw", "a\x1b[2Jb") == (0, "text: a\x1b[2Jb\n", "")
    code, out, _ = client(target, "--json", "a\x1bb")
    assert code == 0
    assert events(out)[1]["text"] == "a\x1bb"


def test_interrupted_run(tmp_path) -> None:
    """
    Ctrl-C (SIGINT) during a --count run closes with 1000, prints the
    summary so far, and exits 130 saying how far it got.
    """
    # A daemon of its own, whose only close line is this client's.
    daemon = start_daemon(tmp_path)
    process = subprocess.Popen(
        [
            str(BIN / "wsecho-client"),
            *(f"127.0.0.1:{daemon.port}", "--count", "10000000", "--quiet", "probe"),
        ],
        stderr=subprocess.PIPE,
        env=PLAIN,
    )
    try:
        # The first progress line: the run is under way.
        assert process.stderr.readline().endswith(b"/s\n")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=DEADLINE) == 130
        err = process.stderr.read().decode()
    finally:
        process.kill()
        process.wait()
    summary, error = err.splitlines()[-2:]
    assert summary.startswith("wsecho-client: ") and "messages/s" in summary, err
    assert error.startswith("wsecho-client: interrupted (Ctrl-C) after "), err
    assert error.endswith(" of 10000000 echoes"), err
    line = daemon.wait_for(" close ")
    assert daemon.stop() == 0
    assert "code=1000" in line and "closed_by=client" in line, line
