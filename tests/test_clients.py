"""
Real clients this project did not write, against a real C{twistd -n wsecho}:
the seed's own library (gorilla/websocket, Go), Node's ws (under wscat) and
the websockets library, with and without compression. Each sends text and
binary, small and 1 MiB, checks every echo, and closes with 4000 "bye",
which an echo sends back.
"""

import os
import subprocess
from pathlib import Path

import pytest
from websockets.sync.client import connect

from support import DEADLINE, require
from support.daemon import start_daemon
from support.wire import RawClient, frame

# Each test starts real processes: deselected by -m "not system".
pytestmark = pytest.mark.system

CLIENTS = Path(__file__).parent / "clients"
GOCODE = Path("/usr/share/gocode")
NODE_PATH = Path("/usr/share/nodejs")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    daemon = start_daemon(
        tmp_path_factory.mktemp("clients"),
    )
    port = daemon.port
    daemon.url = f"ws://127.0.0.1:{port}/socket"
    yield daemon
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.whole_log()


@pytest.fixture(scope="module")
def gorilla(tmp_path_factory) -> str:
    """
    The gorilla/websocket client, built offline from Debian's packages.
    """
    go = require("go")
    if not (GOCODE / "src/github.com/gorilla/websocket").is_dir():
        require("gorilla-websocket (golang-github-gorilla-websocket-dev)")
    build = tmp_path_factory.mktemp("gorilla")
    binary = build / "client"
    env = dict(os.environ, GOPATH=str(GOCODE), GO111MODULE="off")
    env["GOCACHE"] = str(build / "cache")
    subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=CLIENTS / "gorilla",
        env=env,
        check=True,
        timeout=300,
    )
    return str(binary)


def _check(output: str, compress: bool) -> None:
    lines = output.splitlines()
    assert "echoed 4" in lines, output
    assert lines[-1] == "closed 4000 bye", output
    offered = next(line for line in lines if line.startswith("extensions "))
    assert ("permessage-deflate" in offered) == compress, output


@pytest.mark.parametrize("compress", [False, True])
def test_gorilla(daemon, gorilla, compress) -> None:
    """
    The seed's own client library, compression on (it offers and requires
    client_no_context_takeover) and off.
    """
    done = subprocess.run(
        [gorilla, "-url", daemon.url, f"-compress={str(compress).lower()}"],
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    _check(done.stdout, compress)


@pytest.mark.parametrize("compress", [False, True])
def test_node_ws(daemon, compress) -> None:
    """
    Node's ws, compression on and off.
    """
    node = require("node")
    if not (NODE_PATH / "ws").is_dir():
        require("ws for Node (node-ws)")
    done = subprocess.run(
        [node, str(CLIENTS / "ws_client.js"), daemon.url, "1" if compress else "0"],
        capture_output=True,
        text=True,
        timeout=DEADLINE * 2,
        env=dict(os.environ, NODE_PATH=str(NODE_PATH)),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    _check(done.stdout, compress)


@pytest.mark.parametrize("compress", [False, True])
def test_websockets(daemon, compress) -> None:
    """
    The websockets library, compression on and off.
    """
    big = os.urandom(1 << 20)
    messages = ["Hello, world!", b"\x00\x01\x02\xff", "\u00e9" * (1 << 19), big]
    with connect(
        daemon.url,
        compression="deflate" if compress else None,
        open_timeout=DEADLINE,
        max_size=2 << 20,
    ) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert ("permessage-deflate" in extensions) == compress
        for message in messages:
            ws.send(message)
            assert ws.recv(timeout=DEADLINE) == message
        ws.close(4000, "bye")
    closed = ws.protocol.close_rcvd
    assert (closed.code, closed.reason) == (4000, "bye")


def test_close_without_a_code_gets_none(daemon) -> None:
    """
    A close frame without a code is answered with one without a code.
    """
    port = int(daemon.url.rsplit(":", 1)[1].split("/")[0])
    with RawClient(port) as client:
        client.send(frame(8))
        received = client.read_frame()
    assert received == (8, b""), received
