"""
The daemon as users run it: a real C{twistd -n wsecho} process, driven by
clients this project did not write.
"""

import os
import platform
import subprocess
import urllib.error
import urllib.request

import pytest
from websockets.sync.client import connect

import wsecho
from support import BIN, DEADLINE
from support.daemon import Daemon, start_daemon

# Each test starts real processes: deselected by -m "not system".
pytestmark = pytest.mark.system


@pytest.fixture
def daemon(tmp_path):
    daemon = start_daemon(
        tmp_path,
    )
    port = daemon.port
    daemon.port = port
    yield daemon
    # wsecho shuts down gracefully on SIGTERM and exits 0.
    assert daemon.stop() == 0, "".join(daemon.log)


def test_echo_text_and_binary(daemon) -> None:
    """
    twistd -n wsecho --port N echoes text and binary to a websockets
    client, with and without compression, and logs each close with its
    code and reason.
    """
    url = f"ws://127.0.0.1:{daemon.port}/socket"
    for compression in ("deflate", None):
        with connect(url, compression=compression, open_timeout=DEADLINE) as ws:
            ws.send("Hello, world!")
            assert ws.recv(timeout=DEADLINE) == "Hello, world!"
            ws.send(b"\x00\xff" * 50_000)
            assert ws.recv(timeout=DEADLINE) == b"\x00\xff" * 50_000
            assert (
                "permessage-deflate"
                in ws.response.headers.get("Sec-WebSocket-Extensions", "")
            ) == bool(compression)
            ws.close(4000, "done here")
        line = daemon.wait_for("close tcp4:127.0.0.1:")
        assert "code=4000 reason='done here' clean=True" in line


def test_index_and_headers(daemon) -> None:
    """
    / serves the index page; the Server header has no version in it.
    """
    with urllib.request.urlopen(
        f"http://127.0.0.1:{daemon.port}/", timeout=DEADLINE
    ) as response:
        assert response.status == 200
        assert response.headers["Server"] == "wsecho"
        assert b"/socket" in response.read()
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(
            f"http://127.0.0.1:{daemon.port}/socket", timeout=DEADLINE
        )
    assert raised.value.code == 426


def test_wsecho_client(daemon) -> None:
    """
    The seed's exchange: wsecho-client sends Hello, world! and prints the
    echo with its type.
    """
    result = subprocess.run(
        [str(BIN / "wsecho-client"), f"ws://127.0.0.1:{daemon.port}/socket"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "text: Hello, world!\n",
        "",
    )


def test_port_in_use(tmp_path, daemon) -> None:
    """
    A second daemon on a port in use exits non-zero with a one-line reason.
    """
    second = Daemon(tmp_path, "--port", str(daemon.port))
    assert second.process.wait(timeout=DEADLINE) != 0
    second.wait_for(f"wsecho: cannot listen on 127.0.0.1:{daemon.port}: ")
    assert "Traceback" not in second.whole_log()


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (
            ["--max-message-size", "lots"],
            {},
            "--max-message-size 'lots': a whole number of bytes, at least 1.",
        ),
        (["--no-such-option"], {}, "option --no-such-option not recognized"),
        (
            ["--pidfile=x.pid"],
            {},
            "option --pidfile not recognized (--pidfile is twistd's: give it "
            "before wsecho, as in twistd --pidfile ... wsecho ...)",
        ),
        (
            [],
            {"WSECHO_PORT": "x"},
            "WSECHO_PORT: --port 'x': a port number, 0 to 65535.",
        ),
    ],
)
def test_bad_option(tmp_path, argv, environ, message) -> None:
    """
    A bad option (or WSECHO_* variable) exits 2 with one line on stderr
    naming it, then where the help is: not twistd's whole help.
    """
    result = subprocess.run(
        [str(BIN / "twistd"), "-n", "--pidfile=", "wsecho", *argv],
        cwd=tmp_path,
        env={**os.environ, **environ},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"twistd wsecho: {message}",
        "See: twistd wsecho --help",
    ]


def test_version() -> None:
    """
    twistd wsecho --version names wsecho's version, and Python's, Twisted's
    and Autobahn's.
    """
    from importlib.metadata import version

    result = subprocess.run(
        [str(BIN / "twistd"), "-n", "wsecho", "--version"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 0
    assert result.stdout == (
        f"wsecho {wsecho.__version__} (Python {platform.python_version()}, "
        f"Twisted {version('twisted')}, Autobahn {version('autobahn')})\n"
    )


def test_sighup_reloads_the_certificate(tmp_path) -> None:
    """
    On SIGHUP a wss listener reads its key and certificate again: new
    connections get the new certificate, open ones stay open; files that
    do not load leave the previous certificate in place.
    """
    import shutil
    import signal
    import ssl

    from support.certs import make_certificates

    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    old = make_certificates(tmp_path / "old")
    new = make_certificates(tmp_path / "new")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    shutil.copy(old["key"], key)
    shutil.copy(old["cert"], cert)
    daemon = start_daemon(
        tmp_path,
        "--listen",
        f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}",
    )
    port = daemon.port
    url = f"wss://127.0.0.1:{port}/socket"

    def trusting(paths):
        return ssl.create_default_context(cafile=str(paths["ca"]))

    def echo(ws, message):
        ws.send(message)
        assert ws.recv(timeout=DEADLINE) == message

    try:
        with connect(url, ssl=trusting(old), open_timeout=DEADLINE) as before:
            echo(before, "before")
            shutil.copy(new["key"], key)
            shutil.copy(new["cert"], cert)
            daemon.process.send_signal(signal.SIGHUP)
            daemon.wait_for("reloaded")
            with connect(url, ssl=trusting(new), open_timeout=DEADLINE) as after:
                echo(after, "after")
            with pytest.raises(ssl.SSLCertVerificationError):
                connect(url, ssl=trusting(old), open_timeout=DEADLINE)
            # The connection made before the reload is still open.
            echo(before, "still open")

            key.write_text("not a key\n")
            daemon.process.send_signal(signal.SIGHUP)
            assert "previous certificate" in daemon.wait_for("not reloaded")
            with connect(url, ssl=trusting(new), open_timeout=DEADLINE) as later:
                echo(later, "later")
            echo(before, "still open")
    finally:
        assert daemon.stop() == 0, "".join(daemon.log)


def test_metrics_after_real_traffic(daemon) -> None:
    """
    /metrics counts, in Prometheus' text format, the messages and bytes
    echoed by type, connections open and closed by code, refusals by
    reason, compressed and plain bytes, and sizes and latencies.
    """
    from prometheus_client.parser import text_string_to_metric_families

    base = f"127.0.0.1:{daemon.port}"
    with connect(f"ws://{base}/socket", compression="deflate") as ws:
        for message in ("Hello, world!", "a" * 10_000, b"\x00" * 1000):
            ws.send(message)
            assert ws.recv(timeout=DEADLINE) == message
        ws.close(4000)
    with connect(f"ws://{base}/socket", compression=None) as held:
        for url, headers in (
            (f"http://{base}/socket", {}),
            (
                f"http://{base}/socket",
                {
                    "Upgrade": "websocket",
                    "Connection": "Upgrade",
                    "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                    "Origin": "https://elsewhere.example",
                },
            ),
        ):
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(
                    urllib.request.Request(url, headers=headers), timeout=DEADLINE
                )
        daemon.wait_for("close tcp4:127.0.0.1:")
        with urllib.request.urlopen(
            f"http://{base}/metrics", timeout=DEADLINE
        ) as response:
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            text = response.read().decode()
        held.send("held")
        assert held.recv(timeout=DEADLINE) == "held"

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def value(name, **labels):
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("wsecho_messages_total", type="text") == 2
    assert value("wsecho_messages_total", type="binary") == 1
    assert value("wsecho_message_bytes_total", type="text") == 10_013
    assert value("wsecho_message_bytes_total", type="binary") == 1000
    assert value("wsecho_message_size_bytes_count", type="text") == 2
    assert value("wsecho_message_size_bytes_bucket", type="text", le="64.0") == 1
    assert value("wsecho_echo_latency_seconds_count") == 3
    assert value("wsecho_connections_open") == 1
    assert value("wsecho_connections_closed_total", code="4xxx") == 1
    assert value("wsecho_handshake_refusals_total", reason="not_websocket") == 1
    assert value("wsecho_handshake_refusals_total", reason="origin") == 1
    plain = value("wsecho_deflate_bytes_total", direction="received", form="plain")
    compressed = value(
        "wsecho_deflate_bytes_total", direction="received", form="compressed"
    )
    assert plain == 11_013 and compressed < plain / 10
    assert value("process_open_fds") > 0
    from importlib.metadata import version

    build = {name: labels for name, labels in samples if name == "wsecho_build_info"}
    assert dict(build["wsecho_build_info"]) == {
        "version": wsecho.__version__,
        "python": platform.python_version(),
        "twisted": version("twisted"),
        "autobahn": version("autobahn"),
    }
    # No *_created twin of any family.
    assert not [name for name, _ in samples if name.endswith("_created")]


def test_json_log(tmp_path) -> None:
    """
    twistd --logger wsecho.daemon.logs.json writes one JSON object per line, with
    an event per connection open and close carrying named fields.
    """
    import json

    daemon = start_daemon(tmp_path, twistd=("--logger", "wsecho.daemon.logs.json"))
    port = daemon.port
    with connect(
        f"ws://127.0.0.1:{port}/socket", origin="http://127.0.0.1:" + str(port)
    ) as ws:
        ws.send("Hello, world!")
        assert ws.recv(timeout=DEADLINE) == "Hello, world!"
        ws.close(4000, "bye")
    daemon.wait_for('"message": "close ')
    assert daemon.stop() == 0
    records = [json.loads(line) for line in daemon.whole_log().splitlines()]
    closed = next(r for r in records if r["message"].startswith("close "))
    assert closed["namespace"] == "wsecho.ws.protocol.EchoServerProtocol"
    assert closed["level"] == "info"
    assert closed["peer"].startswith("tcp4:127.0.0.1:")
    assert closed["client"] == "127.0.0.1"
    assert closed["origin"] == f"http://127.0.0.1:{port}"
    assert closed["extensions"] == "permessage-deflate"
    assert (closed["code"], closed["reason"], closed["clean"]) == (4000, "bye", True)
    assert closed["closed_by"] == "client"
    assert 0 <= closed["duration"] < DEADLINE
    assert closed["received"] > 13 and closed["sent"] > 13
    assert closed["messages_received"] == 1
    assert records[-1]["message"] == "Server Shut Down."


def test_configured_from_the_environment(tmp_path) -> None:
    """
    twistd -n wsecho takes its options from WSECHO_* variables, as in a
    container; a bad one stops it with a usage error that names it.
    """
    import os

    environ = {**os.environ, "WSECHO_PORT": "0", "WSECHO_SUBPROTOCOL": "chat"}
    daemon = start_daemon(tmp_path, env=environ)
    try:
        url = f"ws://127.0.0.1:{daemon.port}/socket"
        with connect(url, subprotocols=["superchat", "chat"]) as ws:
            assert ws.subprotocol == "chat"
    finally:
        assert daemon.stop() == 0
    result = subprocess.run(
        [str(BIN / "twistd"), "-n", "--pidfile=", "wsecho"],
        env={**os.environ, "WSECHO_MAX_MESSAGE_SIZE": "lots"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=DEADLINE,
    )
    assert "WSECHO_MAX_MESSAGE_SIZE" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
