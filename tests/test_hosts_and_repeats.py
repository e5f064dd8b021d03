"""
The decisions behind the Host check and the log's limit on repeats, with
no I/O: which names are served where, how --allowed-host is read, and how
many events of a kind get through.
"""

from typing import Any

import pytest
from twisted.logger import LogLevel, formatEvent
from twisted.python import usage

from wsecho.daemon.logs import RepeatLimiter
from wsecho.daemon.options import Options
from wsecho.http.policy import HostPolicy, authority


def test_loopback_names_only_on_loopback() -> None:
    """
    On a loopback address only the loopback names are served, with any
    port; elsewhere the check is off until names are given.
    """
    policy = HostPolicy()
    assert policy.checks("127.0.0.1") and policy.checks("::1")
    assert not policy.checks("0.0.0.0") and not policy.checks("192.0.2.1")
    assert not policy.checks(None)  # a UNIX socket
    for host in ("localhost", "LocalHost.:8181", "127.0.0.1:1", "[::1]:8181", None):
        assert policy.serves(host), host
    for host in ("evil.example:8181", "evil@localhost", "localhost:1:2", "[::1", ""):
        assert not policy.serves(host), host


def test_allowed_hosts_are_served_and_turn_the_check_on() -> None:
    """
    Names given are served besides the loopback ones, on every address.
    """
    policy = HostPolicy(["echo.test", "[2001:db8::1]"])
    assert policy.checks("192.0.2.1") and policy.checks(None)
    assert policy.serves("ECHO.test:443") and policy.serves("[2001:db8::1]:80")
    assert policy.serves("localhost") and not policy.serves("evil.example")


def test_authority() -> None:
    """
    Host values split into a lower-case name and a port; anything else is
    no authority.
    """
    assert authority("Example.COM.:8181") == ("example.com", 8181)
    assert authority("[::1]") == ("::1", None)
    assert authority("a b") is None and authority("u@h") is None


def test_allowed_host_option() -> None:
    """
    --allowed-host is repeatable, also from WSECHO_ALLOWED_HOST (space
    separated), and a value with a port or no name is a usage error.
    """
    options = Options(environ={"WSECHO_ALLOWED_HOST": "a.test [::1]"})
    options.parseOptions([])
    assert options.settings().allowed_hosts == ("a.test", "[::1]")
    assert "--allowed-host a.test" in options.changed()
    options = Options(environ={"WSECHO_ALLOWED_HOST": "a.test"})
    options.parseOptions(["--allowed-host", "B.test"])
    assert options.settings().allowed_hosts == ("b.test",)
    for bad in ("b.test:80", "", "a b"):
        with pytest.raises(usage.UsageError, match="--allowed-host"):
            Options(environ={}).parseOptions(["--allowed-host", bad])


def _event(n: int, format: str = "closed {n}") -> dict[str, Any]:
    return {
        "log_format": format,
        "log_namespace": "x",
        "log_level": LogLevel.info,
        "n": n,
    }


def test_repeats_are_counted_not_written() -> None:
    """
    Past the burst, events of one kind are left out until the interval
    ends; then one event says how many, and the kind passes again. Other
    kinds pass meanwhile.
    """
    written: list[dict[str, Any]] = []
    now = [0.0]
    limiter = RepeatLimiter(written.append, interval=5, burst=3, clock=lambda: now[0])
    for n in range(100):
        limiter(_event(n))
    limiter(_event(0, "other {n}"))
    assert [formatEvent(e) for e in written] == [
        "closed 0",
        "closed 1",
        "closed 2",
        "other 0",
    ]
    limiter.flush()
    assert len(written) == 4  # the interval has not ended
    now[0] = 5.0
    limiter.flush()
    assert formatEvent(written[4]) == "suppressed 97 repeats in 5 s of: closed {n}"
    assert written[4]["repeats_suppressed"] == 97
    assert written[4]["log_namespace"] == "x"
    limiter(_event(100))
    assert formatEvent(written[-1]) == "closed 100"


def test_a_new_interval_says_what_the_last_one_left_out() -> None:
    """
    The first event of a kind after its interval ended brings the count of
    that interval with it, before it, even without a flush.
    """
    written: list[dict[str, Any]] = []
    now = [0.0]
    limiter = RepeatLimiter(written.append, interval=5, burst=1, clock=lambda: now[0])
    limiter(_event(1))
    limiter(_event(2))
    now[0] = 6.0
    limiter(_event(3))
    assert [formatEvent(e) for e in written] == [
        "closed 1",
        "suppressed 1 repeats in 5 s of: closed {n}",
        "closed 3",
    ]
    # A worker's own count passes through the parent's limiter as it is.
    limiter(written[1])
    assert written[-1] is written[1]


def test_wsecho_records_are_not_limited() -> None:
    """
    wsecho's own records (a close line per connection) all pass; its
    warnings are limited as any library's events are.
    """
    written: list[dict[str, Any]] = []
    limiter = RepeatLimiter(written.append, interval=5, burst=2, clock=lambda: 0.0)
    for n in range(50):
        limiter(dict(_event(n), log_namespace="wsecho.ws.protocol.EchoServerProtocol"))
    assert len(written) == 50
    for n in range(50):
        limiter(dict(_event(n), log_namespace="wsecho.x", log_level=LogLevel.warn))
    assert len(written) == 52
