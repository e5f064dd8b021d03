"""
C{--workers N}: worker processes sharing the listeners under one parent,
run as users run them, with C{twistd -n wsecho}.
"""

import contextlib
import os
import re
import signal
import ssl
import time
import urllib.request

import pytest
from incremental import Version
from twisted import version as twisted_version
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from support import DEADLINE, poll_until
from support.certs import make_certificates
from support.daemon import Daemon, start_daemon
from support.wire import assert_echoes

# Each test starts real processes: deselected by -m "not system".
pytestmark = pytest.mark.system


def start_workers(tmp_path, count: int, *args: str) -> tuple[Daemon, dict]:
    """
    Start twistd with C{count} workers; return it and the workers' pids by
    number, once each worker listens.
    """
    daemon = start_daemon(tmp_path, "--workers", str(count), *args)
    pids = {}
    try:
        while len(pids) < count:
            line = daemon.wait_for("started: pid ")
            number, pid = re.search(r"worker (\d+) started: pid (\d+)", line).groups()
            pids[int(number)] = int(pid)
        listening = 0
        while listening < count:
            listening += "worker=" in daemon.wait_for(" starting on ")
    except BaseException:
        daemon.stop()
        raise
    return daemon, pids


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as status:
            return "State:\tZ" not in status.read()
    except FileNotFoundError:
        return False


def test_workers_serve_and_are_restarted(tmp_path) -> None:
    """
    Two workers accept on the parent's socket; one killed is started
    again, and the other serves meanwhile. Their log lines come out of the
    parent's log, marked with their number.
    """
    daemon, pids = start_workers(tmp_path, 2)
    port = daemon.port
    try:
        assert all(running(pid) for pid in pids.values())
        for _ in range(10):
            assert_echoes(port)
        line = daemon.wait_for(" close tcp4:127.0.0.1:")
        assert re.search(
            r"\[wsecho\.ws\.protocol\.EchoServerProtocol#info worker=[12]\]", line
        )

        os.kill(pids[1], signal.SIGKILL)
        line = daemon.wait_for("worker 1 died")
        assert "(signal 9)" in line
        assert_echoes(port)  # worker 2, alone for now
        line = daemon.wait_for("worker 1 started: pid ")
        restarted = int(line.rsplit(" ", 1)[1])
        assert restarted != pids[1] and running(restarted)
        while "worker=1" not in daemon.wait_for(" starting on "):
            pass
        for _ in range(10):
            assert_echoes(port)
    finally:
        assert daemon.stop() == 0
    log = daemon.whole_log()
    assert "worker 1 ended (exit code 0)" in log
    assert "worker 2 ended (exit code 0)" in log
    assert "Traceback" not in log
    assert not running(pids[2]) and not running(restarted)


def test_sigterm_drains_every_worker(tmp_path) -> None:
    """
    SIGTERM to the parent reaches the workers: their clients get 1001 and
    the parent exits 0 once all have ended.
    """
    daemon, pids = start_workers(tmp_path, 2)
    port = daemon.port
    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(
                connect(f"ws://127.0.0.1:{port}/socket", open_timeout=DEADLINE)
            )
            for _ in range(8)
        ]
        for client in clients:
            client.send("hi")
            assert client.recv(timeout=DEADLINE) == "hi"
        daemon.terminate()
        for client in clients:
            try:
                client.recv(timeout=DEADLINE)
            except ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 1001
            else:
                raise AssertionError("the connection stayed open")
    assert daemon.process.wait(DEADLINE) == 0
    end = time.monotonic() + DEADLINE
    while any(running(pid) for pid in pids.values()):
        assert time.monotonic() < end, "a worker outlived the parent"
        time.sleep(0.05)


def test_workers_with_tls_reload_on_sighup(tmp_path) -> None:
    """
    Workers serve an ssl: listener too, and reload its files when the
    parent gets SIGHUP.
    """
    paths = make_certificates(tmp_path)
    listen = (
        f"ssl:0:interface=127.0.0.1:privateKey={paths['key']}:certKey={paths['cert']}"
    )
    daemon, _ = start_workers(tmp_path, 2, "--listen", listen)
    port = daemon.port
    try:
        context = ssl.create_default_context(cafile=str(paths["ca"]))
        for _ in range(4):
            with connect(
                f"wss://127.0.0.1:{port}/socket", ssl=context, open_timeout=DEADLINE
            ) as ws:
                ws.send("secure")
                assert ws.recv(timeout=DEADLINE) == "secure"
        daemon.process.send_signal(signal.SIGHUP)
        reloaded = {daemon.wait_for("reloaded") for _ in range(2)}
        assert {re.search(r"worker=(\d)", line).group(1) for line in reloaded} == {
            "1",
            "2",
        }
    finally:
        assert daemon.stop() == 0


def test_workers_option_is_checked(tmp_path) -> None:
    """
    --workers takes a whole number of at least 1; anything else is a usage
    error naming it.
    """
    for value in ("0", "-2", "two"):
        daemon = Daemon(tmp_path, "--workers", value)
        code = daemon.process.wait(DEADLINE)
        if twisted_version >= Version("Twisted", 26, 10, 0):
            assert code != 0  # older twistd exits 0 after a usage error
        log = daemon.whole_log()
        assert "--workers" in log and "at least 1" in log, log
        assert "Traceback" not in log


def _scrape(port: int) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/metrics", timeout=DEADLINE
    ) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _messages(port: int) -> float:
    return _scrape(port)[("wsecho_messages_total", (("type", "text"),))]


def test_metrics_are_the_whole_daemons(tmp_path) -> None:
    """
    With --workers 2, every scrape answers for both workers: after 200
    messages over connections both took, eight scrapes all read 200; once a
    worker is killed and started again, no counter goes back.
    """
    daemon, pids = start_workers(tmp_path, 2)
    port = daemon.port
    try:
        for _ in range(10):
            with connect(f"ws://127.0.0.1:{port}/socket", open_timeout=DEADLINE) as ws:
                for _ in range(20):
                    ws.send("counted")
                    assert ws.recv(timeout=DEADLINE) == "counted"
        assert [_messages(port) for _ in range(8)] == [200.0] * 8
        samples = _scrape(port)
        assert samples[("wsecho_connections_closed_total", (("code", "1000"),))] == 10
        assert samples[("wsecho_connections_open", ())] == 0
        # Build info as it is, not summed over the processes.
        assert [
            v for (name, _), v in samples.items() if name == "wsecho_build_info"
        ] == [1]
        os.kill(pids[1], signal.SIGKILL)
        daemon.wait_for("worker 1 died")
        daemon.wait_for("worker 1 started: pid ")
        poll_until(lambda: _messages(port) >= 200)
        assert all(_messages(port) == 200.0 for _ in range(8))
    finally:
        assert daemon.stop() == 0


def test_limits_are_the_whole_daemons(tmp_path) -> None:
    """
    With --workers 2 and --max-connections 10, 20 clients connecting at once
    get exactly 10 connections and 10 answers 503, however the kernel spread
    them; once those close, 10 more get in; a killed worker's slots are
    freed. --max-connections-per-ip counts across workers too.
    """
    import asyncio

    from websockets.asyncio.client import connect as connect_async
    from websockets.exceptions import InvalidStatus

    daemon, _ = start_workers(tmp_path, 2, "--max-connections", "10")
    url = f"ws://127.0.0.1:{daemon.port}/socket"

    async def one():
        try:
            return await connect_async(url, open_timeout=DEADLINE, ping_interval=None)
        except InvalidStatus as e:
            return e.response.status_code

    async def wave(count: int) -> tuple[list, list]:
        results = await asyncio.gather(*(one() for _ in range(count)))
        return [r for r in results if not isinstance(r, int)], [
            r for r in results if isinstance(r, int)
        ]

    async def scenario() -> None:
        held, refused = await wave(20)
        assert (len(held), refused) == (10, [503] * 10)
        for ws in held:
            await ws.close()
        held, refused = await wave(20)
        assert (len(held), len(refused)) == (10, 10)
        for ws in held:
            await ws.close()

    try:
        asyncio.run(scenario())
    finally:
        assert daemon.stop() == 0
    daemon, _ = start_workers(tmp_path, 2, "--max-connections-per-ip", "3")
    url = f"ws://127.0.0.1:{daemon.port}/socket"
    try:

        async def per_address() -> None:
            held, refused = await wave(8)
            assert (len(held), refused) == (3, [503] * 5)
            for ws in held:
                await ws.close()

        asyncio.run(per_address())
    finally:
        assert daemon.stop() == 0


def test_a_dead_workers_slots_are_freed(tmp_path) -> None:
    """
    The connections of workers killed outright no longer count against
    --max-connections once the parent sees them gone.
    """
    daemon, pids = start_workers(tmp_path, 2, "--max-connections", "2")
    url = f"ws://127.0.0.1:{daemon.port}/socket"
    try:
        with contextlib.ExitStack() as clients:
            for _ in range(2):
                clients.enter_context(connect(url, open_timeout=DEADLINE))
            with pytest.raises(InvalidStatus), connect(url, open_timeout=DEADLINE):
                pass
            for number, pid in pids.items():
                os.kill(pid, signal.SIGKILL)
                daemon.wait_for(f"worker {number} died")
        # The workers are started again (after a delay: they died young).
        with contextlib.ExitStack() as clients:
            for _ in range(2):
                ws = clients.enter_context(connect(url, open_timeout=DEADLINE))
                ws.send("in")
                assert ws.recv(timeout=DEADLINE) == "in"
            with pytest.raises(InvalidStatus), connect(url, open_timeout=DEADLINE):
                pass
    finally:
        assert daemon.stop() == 0
