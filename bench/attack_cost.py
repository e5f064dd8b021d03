"""
What attacks on the process cost the server, in its own CPU time (read from
/proc/PID/stat, steadier than wall time), against a real C{twistd -n
wsecho} on loopback:

- small pings and unsolicited pongs, against small echoes (issue: 100,000
  pings cost 12 us each, 9x an echo);
- a binary frame dripped in 1 KiB writes at 2 MB/s, against the same
  bytes as text (issue: 6.1 s against 0.7 s for 16 MiB: the fast path
  copied the pending frame on every read).

    python bench/attack_cost.py [--count 100000]

Every loop is bounded; only loopback is used.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support.daemon import start_daemon  # noqa: E402
from support.wire import RawClient, frame  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")
DEADLINE = 120.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def exchange(port: int, data: bytes, replies: int | None) -> None:
    """
    Send C{data} while reading what comes back (until C{replies} frames, or
    until the echo of a final text frame when the replies cannot be known).
    """
    with RawClient(port) as client:
        sender = threading.Thread(target=client.send, args=(data,))
        sender.start()
        end = time.monotonic() + DEADLINE
        seen = 0
        while time.monotonic() < end:
            received = client.read_frame()
            assert received is not None
            seen += 1
            if received == (1, b"end") or (replies is not None and seen >= replies):
                break
        sender.join(DEADLINE)


def cost(pid: int, run) -> float:
    before = cpu_seconds(pid)
    run()
    return cpu_seconds(pid) - before


def drip(port: int, opcode: int, size: int, rate: float) -> None:
    """
    Send a frame in 1 KiB writes at C{rate} bytes a second (a pace, so that
    each read is small, as from a slow client).
    """
    data = frame(opcode, b"a" * size)
    began = time.monotonic()
    with RawClient(port) as client:
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for at in range(0, len(data), 1024):
            client.send(data[at : at + 1024])
            ahead = began + at / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        assert client.read_frame() == (opcode, b"a" * size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--drip", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--rate", type=float, default=2e6, help="bytes/s")
    args = parser.parse_args()
    count = args.count
    work = Path(os.environ.get("TMPDIR", "/tmp"))
    daemon = start_daemon(work)
    port, pid = daemon.port, daemon.pid
    try:
        end = frame(1, b"end")
        echo = cost(pid, lambda: exchange(port, frame(2, b"x" * 32) * count, count))
        ping = cost(
            pid, lambda: exchange(port, frame(9, b"12345678") * count + end, None)
        )
        pong = cost(
            pid, lambda: exchange(port, frame(10, b"12345678") * count + end, None)
        )
        text = cost(pid, lambda: drip(port, 1, args.drip, args.rate))
        binary = cost(pid, lambda: drip(port, 2, args.drip, args.rate))
    finally:
        daemon.stop()
    micro = 1e6 / count
    print(f"server CPU per 32-byte echo:      {echo * micro:6.2f} us")
    print(
        f"server CPU per 8-byte ping:       {ping * micro:6.2f} us ({ping / echo:.2f}x an echo)"
    )
    print(
        f"server CPU per unsolicited pong:  {pong * micro:6.2f} us ({pong / echo:.2f}x an echo)"
    )
    mib = args.drip / 1024 / 1024
    print(
        f"{mib:.0f} MiB dripped in 1 KiB writes at {args.rate / 1e6:.0f} MB/s: "
        f"text {text:.2f} s, binary {binary:.2f} s"
    )


if __name__ == "__main__":
    main()
