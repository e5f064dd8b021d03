"""
What wsecho's own Python costs, without sockets or system calls: the site
and its echo protocol on an in-memory transport, timed with C{timeit} (the
best of five repeats). Beside C{bench/run.py}'s CPU time per operation,
which includes the kernel's part, this says how much of it is wsecho's
Python, and what each part of the echo costs:

- a 32-byte text echo through C{EchoServerProtocol.dataReceived}, with and
  without the metrics tally (--no-metrics), and the frame scan alone; and
  over HTTP/2 (a DATA frame read by the connection, RFC 8441);
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

MASK = os.urandom(4)


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


def connect_h2(site: Any) -> tuple[Any, StringTransport, bytes]:
    """
    An HTTP/2 connection to C{site} on an in-memory transport (the client:
    h2, with windows it never needs to reopen), with a WebSocket open on
    its stream 1: the server's connection, its transport, and the bytes of
    a DATA frame carrying a masked 32-byte text message on that stream.
    """
    import h2.settings
    from hyperframe.frame import DataFrame

    from support.h2wire import MemoryH2

    window = 2**31 - 1
    client = MemoryH2(site, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
    client.conn.increment_flow_control_window(window - 65535)
    client.flush()
    stream = client.websocket()
    assert client.status(stream) == "200", client.headers
    data = DataFrame(stream)
    data.data = frame(1, b"x" * 32, mask=MASK)
    client.transport.clear()
    return client.server, client.transport, data.serialize()


def echo_cost(settings: EchoSettings, number: int) -> tuple[float, Any]:
    """
    Microseconds per 32-byte text echo with C{settings}, and the factory.
    """
    site = make_site(settings)
    protocol, transport = connect(site)
    assert transport.value().startswith(b"HTTP/1.1 101 "), transport.value()[:80]
    data = frame(1, b"x" * 32, mask=MASK)
    transport.clear()
    protocol.dataReceived(data)
    assert transport.value() == b"\x81\x20" + b"x" * 32, transport.value()
    written = transport.io

    def one() -> None:
        protocol.dataReceived(data)
        written.seek(0)
        written.truncate()

    return best(one, number), protocol.factory


def echo_costs(number: int) -> dict[str, float]:
    costs = {}
    costs["echo"], factory = echo_cost(EchoSettings(), number)
    # --no-metrics: no tally.
    costs["echo without the tally"], _ = echo_cost(EchoSettings(metrics=False), number)
    data = frame(1, b"x" * 32, mask=MASK)
    tally, limit = factory.tally, factory.settings.max_message_size
    costs["scan with the tally"] = best(lambda: scan(data, limit, tally), number)
    costs["scan without the tally"] = best(lambda: scan(data, limit), number)
    server, transport, request = connect_h2(make_site(EchoSettings()))
    written = transport.io

    def over_h2() -> None:
        server.dataReceived(request)
        written.seek(0)
        written.truncate()

    server.dataReceived(request)
    assert transport.value().endswith(b"\x81\x20" + b"x" * 32), transport.value()
    costs["echo over HTTP/2"] = best(over_h2, number)
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
