"""
wsecho-client's command line: the short forms of the URL, the usage
errors, and that reading it imports nothing heavy.
"""

import io
import json
import subprocess
import sys

import pytest

from support import DEADLINE
from wsecho.client import parse_args
from wsecho.client.output import DEFAULT_URL, Message


def parse(*argv: str):
    return parse_args(list(argv), io.BytesIO(b""))


def test_a_message_alone_goes_to_the_default_url() -> None:
    """
    A first argument that is not a URL is a message, sent to the default
    URL; so are digits with a colon (a time of day, not a host).
    """
    config = parse("hello", "world")
    assert config.url == DEFAULT_URL
    assert config.messages == [Message(b"hello", False), Message(b"world", False)]
    assert parse("10:30").messages == [Message(b"10:30", False)]
    assert parse().messages == [Message(b"Hello, world!", False)]


@pytest.mark.parametrize(
    ("argument", "url"),
    [
        ("localhost:9000", "ws://localhost:9000/socket"),
        ("127.0.0.1:9000", "ws://127.0.0.1:9000/socket"),
        ("[::1]:9000", "ws://[::1]:9000/socket"),
        ("echo.example:80/chat", "ws://echo.example:80/chat"),
        ("wss://echo.example/x", "wss://echo.example/x"),
        ("ws://127.0.0.1:9000", "ws://127.0.0.1:9000"),
    ],
)
def test_url_forms(argument: str, url: str) -> None:
    """
    HOST:PORT[/PATH] without a scheme is ws://, with the path /socket when
    none is given; a URL with a scheme is taken as it is.
    """
    config = parse(argument, "m")
    assert (config.url, config.messages) == (url, [Message(b"m", False)])


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["http://127.0.0.1/"], "is not a WebSocket URL: use ws://"),
        (["ftp://127.0.0.1/"], "is not a ws:// or wss:// URL"),
        (["ws://127.0.0.1:99999/"], "Port out of range"),
        (["ws://h/#x"], "fragment"),
        (["--ping-interval", "-1"], "--ping-interval"),
        (["--reconnect-tries", "0"], "--reconnect-tries"),
        (["--key", "k.pem"], "--key needs --cert"),
    ],
)
def test_usage_errors(argv, says, capsys) -> None:
    """
    Each bad argument is a usage error (status 2) naming what is wrong; with
    --json it is also a JSON object on stdout.
    """
    with pytest.raises(SystemExit) as exit:
        parse(*argv, "--json")
    assert exit.value.code == 2
    out, err = capsys.readouterr()
    assert says in err.splitlines()[-1]
    record = json.loads(out)
    assert record["event"] == "error" and record["exit"] == 2
    assert says in record["message"]


@pytest.mark.system
@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["--count", "0"]])
def test_command_line_imports_nothing_heavy(argv) -> None:
    """
    --version, --help and a usage error import neither Twisted, Autobahn
    nor OpenSSL: they answer as fast as Python starts.
    """
    program = (
        "import sys\n"
        "from wsecho.client import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = {'twisted', 'autobahn', 'OpenSSL', 'cryptography', 'txaio'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.stdout.splitlines()[-1] == "[]", result.stdout
