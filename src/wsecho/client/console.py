"""
--interactive: each line read becomes a message, or a command (/ping,
/close, /help).

From a pipe or a file, Twisted reads stdin as the reactor runs. From a
terminal, Python's readline reads it (line editing, history kept between
runs): readline blocks, so it runs in a thread of its own and hands each
line to the reactor's thread.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

from twisted.internet.protocol import connectionDone
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure

from wsecho.client.output import Message, Output
from wsecho.client.session import Session

HELP = """\
commands:
  /ping [DATA]            send a ping; its pong is shown with the round trip
  /close [CODE [REASON]]  close with CODE (1000, or 3000 to 4999) and REASON
  /help                   this list
  //TEXT                  send /TEXT
Any other line is sent as a message; Ctrl-D or Ctrl-C closes (1000)."""

PROMPT = "> "
# Lines of history kept in the file.
HISTORY_LENGTH = 1000


class Commands:
    """
    What a line means: a message to send, or a command.
    """

    def __init__(self, session: Session, output: Output) -> None:
        self.session = session
        self.output = output

    def line(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        command, _, rest = line.partition(b" ")
        if command == b"/close":
            code_text, _, reason = rest.partition(b" ")
            try:
                code = int(code_text) if code_text else 1000
                if not (code == 1000 or 3000 <= code <= 4999):
                    raise ValueError(code)
            except ValueError:
                self.output.notice(
                    "wsecho-client: /close takes 1000 or a code from 3000 to "
                    "4999, then a reason"
                )
                return
            self.session.end_of_input(code, reason.decode("utf-8", "replace") or None)
        elif command == b"/ping":
            self.session.ping(rest[:125])
        elif command == b"/help":
            self.output.notice(HELP)
        elif command.startswith(b"/") and not command.startswith(b"//"):
            name = command.decode("utf-8", "replace")
            self.output.notice(
                f"wsecho-client: unknown command {name}: /help lists them, "
                f"/{name} sends {name}"
            )
        else:
            if line.startswith(b"//"):
                line = line[1:]
            binary = self.session.config.binary
            if not binary:
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    self.output.notice("wsecho-client: not UTF-8; use --binary")
                    return
            self.session.submit(Message(line, binary))


class PipeReader(LineOnlyReceiver):
    """
    Lines from a pipe or a file, read by the reactor (Twisted's stdio).
    """

    delimiter = b"\n"

    def __init__(self, commands: Commands) -> None:
        self.commands = commands

    def lineReceived(self, line: bytes) -> None:
        self.commands.line(line)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # End of stdin: close as if /close had been typed, once the echoes
        # of what was sent are back.
        self.commands.session.end_of_input()


def history_file() -> Path:
    """
    Where the typed lines are kept between runs: under $XDG_STATE_HOME, as
    the XDG base directories say, or ~/.local/state.
    """
    state = os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state")
    return Path(state) / "wsecho" / "history"


class TerminalReader:
    """
    Lines typed on a terminal, read with readline in a thread. Lines the
    reactor prints meanwhile go above the line being typed, which is then
    written again.
    """

    def __init__(self, reactor: Any, commands: Commands, history: Path) -> None:
        self.reactor = reactor
        self.commands = commands
        self.history = history
        self.reading = False
        self.stopped = False
        self.saved: Any = None
        self.tty_out = sys.stdout.isatty()

    def start(self) -> None:
        import readline
        import termios

        # Put back as it was at the end, even if readline is mid-line then.
        self.saved = termios.tcgetattr(sys.stdin.fileno())
        readline.set_history_length(HISTORY_LENGTH)
        try:
            readline.read_history_file(self.history)
        except OSError:
            pass  # none yet, or unreadable: start afresh
        output = self.commands.output
        output.before = self._clear
        output.after = self._redraw
        threading.Thread(target=self._read, name="console", daemon=True).start()

    def _read(self) -> None:
        # input() writes its prompt to stdout even when that is a file.
        prompt = PROMPT if self.tty_out else ""
        while not self.stopped:
            self.reading = True
            try:
                text = input(prompt)
            except EOFError:
                self.reactor.callFromThread(self.commands.session.end_of_input)
                return
            finally:
                self.reading = False
            line = text.encode("utf-8", "surrogateescape")
            self.reactor.callFromThread(self.commands.line, line)

    def _clear(self) -> None:
        if self.reading and self.tty_out:
            sys.stdout.write("\r\x1b[K")
            sys.stdout.flush()

    def _redraw(self) -> None:
        if self.reading and self.tty_out and not self.stopped:
            import readline

            sys.stdout.write(PROMPT + readline.get_line_buffer())
            sys.stdout.flush()

    def stop(self) -> None:
        import readline
        import termios

        self.stopped = True
        self._clear()
        try:
            self.history.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(self.history)
            os.chmod(self.history, 0o600)  # what was typed may be private
        except OSError as e:
            print(f"wsecho-client: history not saved: {e}", file=sys.stderr)
        termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self.saved)


def readline_available() -> bool:
    """
    Whether this Python has its readline module (some builds lack it: then
    a terminal is read as a pipe is, without editing nor history).
    """
    import importlib.util

    return importlib.util.find_spec("readline") is not None


def start_console(reactor: Any, session: Session, output: Output) -> Any:
    """
    Read stdin for an interactive session, with readline on a terminal;
    returns what to call to stop reading.
    """
    commands = Commands(session, output)
    if sys.stdin.isatty() and readline_available():
        reader = TerminalReader(reactor, commands, history_file())
        reader.start()
        return reader.stop
    from twisted.internet.stdio import StandardIO

    console = StandardIO(PipeReader(commands), reactor=reactor)
    return console.loseConnection
