"""
wsecho-client --interactive on a terminal (a pty), against the real
daemon: line editing and history, /help, what a server sends shown
escaped, Ctrl-C as a clean close by the user.
"""

import os
import re
import subprocess

import pytest

from support import BIN, DEADLINE
from support.daemon import start_daemon
from support.terminal import Terminal

pytestmark = pytest.mark.system

# The console's line editing is Python's readline module.
pytest.importorskip("readline")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    daemon = start_daemon(tmp_path_factory.mktemp("ws"))
    yield daemon
    assert daemon.stop() == 0


@pytest.fixture
def environment(tmp_path):
    """
    A user's environment with its own home and state directory, and no
    proxy.
    """
    return {
        "PATH": os.environ["PATH"],
        "TERM": "xterm",
        "HOME": str(tmp_path),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }


@pytest.fixture
def terminal(daemon, environment):
    """
    Start C{wsecho-client -i} to the daemon on a pty; each is closed at the
    end of the test.
    """
    started = []

    def start(*args: str) -> Terminal:
        url = f"ws://127.0.0.1:{daemon.port}/socket"
        argv = [str(BIN / "wsecho-client"), "-i", url, *args]
        term = Terminal(argv, environment)
        started.append(term)
        term.expect(b"connected to ")
        return term

    yield start
    for term in started:
        term.close()


def test_history_between_runs(terminal, environment) -> None:
    """
    A line typed in one run is in the history file, and Up recalls it in
    the next run, where Enter sends it again.
    """
    first = terminal()
    first.send(b"remember me\r")
    first.expect(b"text: remember me\r\n")
    first.send(b"\x04")  # Ctrl-D: end of input, a clean close
    assert first.wait() == 0
    history = os.path.join(environment["XDG_STATE_HOME"], "wsecho", "history")
    with open(history) as f:
        assert f.read().splitlines() == ["remember me"]

    second = terminal()
    second.send(b"\x1b[A\r")
    second.expect(b"text: remember me\r\n")
    second.send(b"\x04")
    assert second.wait() == 0


def test_help(terminal) -> None:
    """
    /help lists the commands instead of being sent, and an unknown command
    is not sent either.
    """
    term = terminal()
    term.send(b"/help\r")
    at = term.expect(b"commands:\r\n")
    for command in (b"/ping [DATA]", b"/close [CODE [REASON]]", b"/help", b"//TEXT"):
        term.expect(rb"\n  " + re.escape(command), at - 1)
    term.send(b"/hepl\r")
    term.expect(b"unknown command /hepl: /help lists them")
    term.send(b"//help\r")
    term.expect(b"text: /help\r\n")
    term.send(b"\x04")
    assert term.wait() == 0
    assert b"text: /hepl" not in term.output


def test_control_characters_escaped(terminal) -> None:
    """
    An escape sequence the server sends back (typed here with Ctrl-V Esc) is
    shown escaped, not played on the terminal; --raw shows it as it came.
    """
    term = terminal()
    term.send(b"red \x16\x1b[31mtext\r")
    term.expect(rb"text: red \\x1b\[31mtext\r\n")
    term.send(b"\x04")
    assert term.wait() == 0

    raw = terminal("--raw")
    raw.send(b"red \x16\x1b[31mtext\r")
    raw.expect(b"text: red \x1b\\[31mtext\r\n")
    raw.send(b"\x04")
    assert raw.wait() == 0


def test_ctrl_c_closes_cleanly(tmp_path, environment) -> None:
    """
    Ctrl-C closes with 1000 as the user's choice: the client says so and
    exits 0, and the daemon logs a clean close by the client.
    """
    # A daemon of its own, whose only close line is this client's.
    daemon = start_daemon(tmp_path)
    url = f"ws://127.0.0.1:{daemon.port}/socket"
    term = Terminal([str(BIN / "wsecho-client"), "-i", url], environment)
    try:
        term.expect(b"connected to ")
        term.send(b"before\r")
        term.expect(b"text: before\r\n")
        term.send(b"\x03")
        term.expect(rb"closed 1000 \(by the client: Ctrl-C\)")
        assert term.wait() == 0
        line = daemon.wait_for(" close ")
    finally:
        term.close()
        assert daemon.stop() == 0
    assert "code=1000" in line and "closed_by=client" in line, line
    assert "clean=True" in line and "messages=1/1" in line, line


def test_no_history_without_a_terminal(daemon, environment) -> None:
    """
    Lines read from a pipe are not kept: no history file is written.
    """
    result = subprocess.run(
        [str(BIN / "wsecho-client"), "-i", f"127.0.0.1:{daemon.port}"],
        input=b"secret\n",
        capture_output=True,
        env=environment,
        timeout=DEADLINE,
    )
    assert (result.returncode, result.stdout) == (0, b"text: secret\n")
    assert not os.path.exists(environment["XDG_STATE_HOME"])
