"""
The deployment files in C{deploy/} and the C{Dockerfile}: their command
lines are checked against the real option parsers, and the systemd unit's
command runs under socket activation.
"""

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from websockets.sync.client import connect

from support import BIN, DEADLINE, require
from support.daemon import Daemon, free_port

# Each test starts real processes: deselected by -m "not system".
pytestmark = pytest.mark.system

ROOT = Path(__file__).parent.parent


def unit_command() -> list[str]:
    text = (ROOT / "deploy" / "wsecho.service").read_text()
    (line,) = re.findall(r"^ExecStart=(.*)$", text, re.MULTILINE)
    return shlex.split(line)


def parse_in_child(argv: list[str], environ: dict[str, str]) -> dict:
    """
    Parse a twistd command line in a new Python process with C{environ}
    set before Twisted is imported (it reads systemd's variables then), as
    one that systemd started; return what the wsecho plugin made of it.
    """
    program = (
        "import json, os, sys\n"
        "os.environ.update(json.loads(sys.argv[1]))\n"
        "os.environ['LISTEN_PID'] = str(os.getpid())\n"
        "from twisted.scripts.twistd import ServerOptions\n"
        "config = ServerOptions()\n"
        "config.parseOptions(sys.argv[2:])\n"
        "print(json.dumps({'nodaemon': bool(config['nodaemon']),\n"
        "    'logger': bool(config['logger']), 'command': config.subCommand,\n"
        "    'listen': config.subOptions['listen']}))\n"
    )
    result = subprocess.run(
        [str(BIN / "python"), "-c", program, json.dumps(environ), *argv],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def test_systemd_unit_command_line() -> None:
    """
    The unit's ExecStart is a valid twistd command line for the wsecho
    plugin, listening on the socket systemd passes, matching the socket
    unit's address family.
    """
    argv = unit_command()
    assert argv[0].endswith("/bin/twistd")
    # What systemd passes: one socket, at descriptor 3, named after its unit.
    parsed = parse_in_child(
        argv[1:], {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "wsecho.socket"}
    )
    assert parsed == {
        "nodaemon": True,
        "logger": True,
        "command": "wsecho",
        "listen": ["systemd:domain=INET:index=0"],
    }
    socket_unit = (ROOT / "deploy" / "wsecho.socket").read_text()
    (address,) = re.findall(r"^ListenStream=(.*)$", socket_unit, re.MULTILINE)
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+:\d+", address)  # INET


def test_systemd_socket_activation(tmp_path) -> None:
    """
    The unit's command, started the way systemd starts it (by
    systemd-socket-activate, which passes the listening socket), echoes.
    """
    activate = require("systemd-socket-activate")
    port = free_port()
    argv = [str(BIN / "twistd"), *unit_command()[1:]]
    # systemd names the socket after its unit; Twisted needs the name.
    command = [activate, "--listen", f"127.0.0.1:{port}", "--fdname=wsecho.socket"]
    daemon = Daemon(tmp_path, command=[*command, *argv])
    try:
        daemon.wait_for("Listening on 127.0.0.1")
        # The first connection starts twistd, which inherits the socket.
        with connect(f"ws://127.0.0.1:{port}/socket", open_timeout=DEADLINE) as ws:
            ws.send("activated")
            assert ws.recv(timeout=DEADLINE) == "activated"
        daemon.wait_for('"message": "close ')
    finally:
        assert daemon.stop() == 0, daemon.whole_log()


def test_dockerfile_command_line() -> None:
    """
    The Dockerfile's CMD, with its ENV, is a valid twistd command line that
    listens on every address at 8181 and logs JSON.
    """
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    (cmd,) = re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)
    argv = json.loads(cmd)
    (env,) = re.findall(r"^ENV (.*)$", text, re.MULTILINE)
    environ = dict(a.partition("=")[::2] for a in shlex.split(env))
    assert argv[0] == "twistd"
    assert parse_in_child(argv[1:], environ) == {
        "nodaemon": True,
        "logger": True,
        "command": "wsecho",
        "listen": ["tcp:8181:interface=0.0.0.0"],
    }


def test_haproxy_config_is_valid(tmp_path) -> None:
    """
    HAProxy accepts the shipped configuration (haproxy -c).
    """
    haproxy = require("haproxy")
    result = subprocess.run(
        [haproxy, "-c", "-f", str(ROOT / "deploy" / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_gives_the_shutdown_time_to_finish() -> None:
    """
    The unit stops wsecho with SIGTERM, on which it shuts down gracefully,
    and waits longer than --shutdown-timeout before killing it.
    """
    text = (ROOT / "deploy" / "wsecho.service").read_text()
    assert "\nKillSignal=SIGTERM\n" in text
    (stop,) = re.findall(r"^TimeoutStopSec=(\d+)$", text, re.MULTILINE)
    argv = unit_command()
    assert int(stop) > float(argv[argv.index("--shutdown-timeout") + 1])
