"""
What wsecho's own Python costs, without sockets or system calls: the site
and its echo protocol on an in-memory transport, timed with C{timeit} (the
best of five repeats). Beside C{bench/run.py}'s CPU time per operation,
which includes the kernel's part, this says how much of it is wsecho's
Python, and what each part of the echo costs:

- a 32-byte text echo through C{FastPath.dataReceived}, with and without
  the metrics tally, and the frame scan alone;
- a whole handshake: the upgrade request through twisted.web and Autobahn,
  the client's close frame, the connection lost, and the close line logged
  by a text observer like twistd's.

    python bench/python_cost.py [--echoes 200000] [--handshakes 3000]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from twisted.internet.error import ConnectionDone  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.logger import globalLogBeginner, textFileLogObserver  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

from support.site import HOST, connect_in_memory  # noqa: E402
from support.wire import frame, upgrade  # noqa: E402
from wsecho.http.site import make_site  # noqa: E402
from wsecho.settings import EchoSettings  # noqa: E402
from wsecho.wire.frames import scan  # noqa: E402


def best(function: Callable[[], object], number: int) -> float:
    """
    Microseconds per call of C{function}, the best of five repeats.
    """
    return min(timeit.repeat(function, number=number, repeat=5)) / number * 1e6


def connect(site: Any) -> tuple[Any, StringTransport]:
    """
    A connection to C{site} on an in-memory transport, upgraded to
    WebSocket: the echo protocol and its transport.
    """
    channel, transport = connect_in_memory(site)
    channel.dataReceived(upgrade(f"{HOST.host}:{HOST.port}"))
    return transport.protocol, transport


def echo_costs(number: int) -> dict[str, float]:
    protocol, transport = connect(make_site(EchoSettings()))
    assert transport.value().startswith(b"HTTP/1.1 101 "), transport.value()[:80]
    data = frame(1, b"x" * 32, mask=os.urandom(4))
    transport.clear()
    protocol.dataReceived(data)
    assert transport.value() == b"\x81\x20" + b"x" * 32, transport.value()
    written = transport.io

    def one() -> None:
        protocol.dataReceived(data)
        written.seek(0)
        written.truncate()

    fast = protocol.fast
    tally, limit = fast._tally, fast._limit
    costs = {"echo": best(one, number)}
    fast._tally = None
    costs["echo without the tally"] = best(one, number)
    fast._tally = tally
    costs["scan with the tally"] = best(lambda: scan(data, limit, tally), number)
    costs["scan without the tally"] = best(lambda: scan(data, limit), number)
    return costs


def handshake_cost(number: int) -> float:
    log = io.StringIO()
    globalLogBeginner.beginLoggingTo(
        [textFileLogObserver(log)], redirectStandardIO=False
    )
    site = make_site(EchoSettings())
    close = frame(8, (1000).to_bytes(2, "big"), mask=os.urandom(4))
    done = Failure(ConnectionDone())

    def one() -> None:
        protocol, _ = connect(site)
        protocol.dataReceived(close)
        protocol.connectionLost(done)
        log.seek(0)
        log.truncate()

    one()
    return best(one, number)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--echoes", type=int, default=200_000)
    parser.add_argument("--handshakes", type=int, default=3_000)
    options = parser.parse_args()
    for name, cost in echo_costs(options.echoes).items():
        print(f"{name}: {cost:.2f} us")
    print(
        f"handshake, opening and closing: {handshake_cost(options.handshakes):.1f} us"
    )


if __name__ == "__main__":
    main()
