"""
Scale-out behind a load balancer: Debian's HAProxy with the shipped
configuration in front of two real daemons, on loopback.
"""

import contextlib
import re
import subprocess
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from support import DEADLINE, require
from support.daemon import free_port, start_daemon

# Each test starts real processes: deselected by -m "not system".
pytestmark = pytest.mark.system

ROOT = Path(__file__).parent.parent


def proxied_config(front: int, first: int, second: int) -> str:
    """
    deploy/haproxy.cfg, on free ports, with a faster health check.
    """
    text = (ROOT / "deploy" / "haproxy.cfg").read_text()
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{front}")
    text = text.replace("127.0.0.1:8181", f"127.0.0.1:{first}")
    text = text.replace("127.0.0.1:8182", f"127.0.0.1:{second}")
    assert "inter 2s" in text
    return text.replace("inter 2s", "inter 200ms")


def echo(url: str, message: str) -> None:
    with connect(url, open_timeout=DEADLINE) as ws:
        ws.send(message)
        assert ws.recv(timeout=DEADLINE) == message


def opened(daemon) -> list[str]:
    """
    The clients of the connections a daemon has logged as opened so far.
    """
    found = []
    while not daemon.lines.empty():
        line = daemon.lines.get()
        daemon.log.append(line)
        if match := re.search(r" open tcp4:\S+ client=(\S+) ", line):
            found.append(match.group(1))
    return found


def test_haproxy_balances_and_drains(tmp_path) -> None:
    """
    HAProxy spreads connections over two daemons; when one is stopped
    gracefully, its clients get 1001 and every new connection goes to the
    other, without a failed echo.
    """
    haproxy = require("haproxy")
    front = free_port()  # HAProxy does not say where it listens
    daemons = [
        # --verbose: the daemons log each connection as it opens.
        start_daemon(tmp_path, "--trust-proxy", "1", "--verbose")
        for _ in range(2)
    ]
    first, second = (daemon.port for daemon in daemons)
    config = tmp_path / "haproxy.cfg"
    config.write_text(proxied_config(front, first, second))
    proxy = subprocess.Popen(
        [haproxy, "-db", "-f", str(config)],
        stdout=(tmp_path / "haproxy.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"ws://127.0.0.1:{front}/socket"
    connections = contextlib.ExitStack()
    try:
        # Held connections, until both daemons have some (leastconn); each
        # one attributed to the daemon that logged it.
        held: list[list] = [[], []]
        end = time.monotonic() + DEADLINE
        while not all(held):
            assert time.monotonic() < end, held
            assert proxy.poll() is None, "haproxy exited"
            try:
                ws = connections.enter_context(connect(url, open_timeout=DEADLINE))
            except OSError:
                time.sleep(0.05)  # HAProxy is still starting
                continue
            ws.send("hello")
            assert ws.recv(timeout=DEADLINE) == "hello"
            while not (new := [opened(d) for d in daemons]) or not any(new):
                assert time.monotonic() < end
                time.sleep(0.01)
            (which,) = [n for n, clients in enumerate(new) if clients]
            # Through HAProxy, with --trust-proxy 1, the client is loopback.
            assert new[which] == ["127.0.0.1"]
            held[which].append(ws)

        daemons[0].terminate()  # graceful
        for ws in held[0]:
            with pytest.raises(ConnectionClosed):
                while True:
                    ws.recv(timeout=DEADLINE)
            assert ws.close_code == 1001
        assert daemons[0].process.wait(timeout=DEADLINE) == 0
        for ws in held[1]:
            ws.send("still here")
            assert ws.recv(timeout=DEADLINE) == "still here"

        # New connections: all echoed, all by the second daemon.
        opened(daemons[1])
        for i in range(30):
            echo(url, f"message {i}")
        end = time.monotonic() + DEADLINE
        served = 0
        while served < 30:
            assert time.monotonic() < end, served
            served += len(opened(daemons[1]))
            time.sleep(0.01)
        assert served == 30
    finally:
        connections.close()
        proxy.terminate()
        proxy.wait(timeout=DEADLINE)
        for daemon in daemons:
            daemon.stop()


def nginx_config(directory: Path, front: int, first: int, second: int) -> str:
    """
    deploy/nginx.conf on free ports, with its pid and temporary files in
    C{directory} (a test runs without root's paths).
    """
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    for old, new in (
        ("127.0.0.1:8080", f"127.0.0.1:{front}"),
        ("127.0.0.1:8181", f"127.0.0.1:{first}"),
        ("127.0.0.1:8182", f"127.0.0.1:{second}"),
        ("/run/nginx-wsecho.pid", str(directory / "nginx.pid")),
    ):
        assert old in text
        text = text.replace(old, new)
    temporary = "".join(
        f"    {kind}_temp_path {directory / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return text.replace("http {\n", "http {\n" + temporary, 1)


def test_nginx_in_front_of_two_daemons(tmp_path) -> None:
    """
    nginx, with deploy/nginx.conf, proxies WebSocket to two daemons; while
    one drains (--drain-delay) and after it has exited, every new echo
    through nginx succeeds, and the held ones of the other carry on.
    """
    nginx = require("nginx")
    daemons = [
        start_daemon(tmp_path, "--trust-proxy", "1", "--drain-delay", "2")
        for _ in range(2)
    ]
    front = free_port()  # nginx does not say where it listens
    config = tmp_path / "nginx.conf"
    config.write_text(nginx_config(tmp_path, front, *(d.port for d in daemons)))
    check = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(config), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert check.returncode == 0, check.stderr
    proxy = subprocess.Popen(
        [
            nginx,
            "-p",
            str(tmp_path),
            "-c",
            str(config),
            "-e",
            "stderr",
            "-g",
            "daemon off;",
        ],
        stdout=(tmp_path / "nginx.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"ws://127.0.0.1:{front}/socket"
    try:
        end = time.monotonic() + DEADLINE
        while True:  # until nginx listens
            try:
                echo(url, "first")
                break
            except OSError:
                assert time.monotonic() < end and proxy.poll() is None
                time.sleep(0.05)
        with contextlib.ExitStack() as held:
            sockets = [
                held.enter_context(connect(url, open_timeout=DEADLINE))
                for _ in range(4)
            ]
            daemons[0].terminate()
            sent = 0
            while daemons[0].process.poll() is None:
                assert time.monotonic() < end, "the drained daemon did not exit"
                echo(url, f"during {sent}")
                sent += 1
            assert daemons[0].process.wait(timeout=DEADLINE) == 0
            for i in range(20):
                echo(url, f"after {i}")
            codes = []
            for ws in sockets:
                try:
                    ws.send("held")
                    assert ws.recv(timeout=DEADLINE) == "held"
                    codes.append(None)
                except ConnectionClosed:
                    codes.append(ws.close_code)
            # The drained daemon's held clients got 1001; the others echo.
            assert set(codes) <= {None, 1001}, codes
        assert sent > 0
    finally:
        proxy.terminate()
        proxy.wait(timeout=DEADLINE)
        for daemon in daemons:
            daemon.stop()
