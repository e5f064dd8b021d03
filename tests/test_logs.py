"""
What a real daemon logs, and that it tells the truth: one start-up line,
one line per connection with the code and reason of whoever closed first
(the server's own when it failed the connection, as /metrics counts it),
and the access log as an event with fields.
"""

import json
from urllib.request import Request, urlopen

import pytest

from support import DEADLINE
from support.daemon import start_daemon
from support.wire import RawClient, frame

# Each test starts real processes: deselected by -m "not system".
pytestmark = pytest.mark.system

CLOSE_NORMAL = (1000).to_bytes(2, "big")


def _closed_count(port: int, code: str) -> float:
    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f'wsecho_connections_closed_total{{code="{code}"}}'):
                return float(line.split()[1])
    return 0.0


def test_one_startup_line(run) -> None:
    """
    The daemon says once what it is, where it listens and with which
    options that are not defaults; no factory noise.
    """
    daemon = run("--memory-budget", "100000000", "--subprotocol", "chat")
    line = daemon.wait_for("wsecho 0.1.0 listening on ")
    # Where it listens, as bound: port 0 is the one the kernel chose.
    assert f"listening on 127.0.0.1:{daemon.port}," in line, line
    assert "1 worker(s)" in line, line
    assert "options: --memory-budget 100000000 --subprotocol chat" in line, line
    assert daemon.stop() == 0
    assert "Starting factory" not in daemon.whole_log()


def test_server_failed_connection_is_logged_as_it_was(run) -> None:
    """
    A connection the server failed (invalid UTF-8: 1007; too big: 1009) is
    logged with the code and reason the server sent and closed_by=server,
    and /metrics counts the same code; the 1009 reason gives the limit.
    """
    daemon = run("--max-message-size", "1000", warm=False)
    for data, code, reason in (
        (frame(1, b"\xff\xfe"), 1007, None),
        (frame(2, bytes(2000)), 1009, b"message over 1000 bytes"),
    ):
        with RawClient(daemon.port) as client:
            client.send(data)
            opcode, payload = client.read_frame()
            assert (opcode, int.from_bytes(payload[:2], "big")) == (8, code)
            if reason is not None:
                assert payload[2:] == reason, payload
            client.send(frame(8, payload[:2]))
            assert client.read_frame() is None
        line = daemon.wait_for(f" code={code} ")
        assert "closed_by=server" in line, line
        if reason is not None:
            assert f"reason={reason.decode()!r}" in line, line
        assert _closed_count(daemon.port, str(code)) == 1


def test_close_line_says_what_went_through(run) -> None:
    """
    The close line carries who closed, the duration in milliseconds, the
    messages each way and the bytes on the wire.
    """
    daemon = run(warm=False)
    with RawClient(daemon.port) as client:
        client.send(frame(1, b"hello"))
        assert client.read_frame() == (1, b"hello")
        client.send(frame(8, CLOSE_NORMAL))
        assert client.close_code() == 1000
    line = daemon.wait_for(" code=1000 ")
    assert "closed_by=client" in line and "messages=1/1" in line, line
    assert "ms " in line.split("duration=", 1)[1], line
    assert "wire_bytes=" in line, line


def test_json_access_log_has_fields(tmp_path) -> None:
    """
    With --logger wsecho.daemon.logs.json, each HTTP request is an event with its
    method, path, status, client, user agent and bytes.
    """
    daemon = start_daemon(tmp_path, twistd=("--logger", "wsecho.daemon.logs.json"))
    port = daemon.port
    request = Request(f"http://127.0.0.1:{port}/healthz", headers={"User-Agent": "t/1"})
    with urlopen(request, timeout=DEADLINE) as response:
        body = response.read()
    daemon.wait_for('"method": "GET"')
    assert daemon.stop() == 0
    records = [json.loads(line) for line in daemon.whole_log().splitlines()]
    access = next(r for r in records if "method" in r)
    assert access["namespace"] == "wsecho.http.site.Site"
    assert access["method"] == "GET" and access["path"] == "/healthz"
    assert access["status"] == 200 and access["bytes"] == len(body)
    assert access["client"] == "127.0.0.1" and access["user_agent"] == "t/1"
    assert '"GET /healthz HTTP/1.1" 200' in access["message"]


def test_server_drop_is_logged_as_the_servers(run) -> None:
    """
    A peer dropped by the server without a clean close (here: no pong in
    time) is logged with closed_by=server, not as the client's doing.
    """
    daemon = run("--ping-interval", "1", "--ping-timeout", "1", warm=False)
    with RawClient(daemon.port) as client:
        line = daemon.wait_for(" code=1006 ")
        assert client.status == 101
    assert "closed_by=server" in line and "ping timeout" in line, line
