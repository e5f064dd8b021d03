"""
What one connection costs the daemon in resident memory before it sends a
byte, by kind, as the memory budget's fixed costs (wsecho.ws.costs) are
measured: N connections of one kind opened against a real C{twistd -n
wsecho} on loopback, the growth of its VmRSS divided by N; then how much of
it is back 10 s after they close.

    python bench/fixed_costs.py [--count 2000] [--budget 0]

kinds: a silent TCP connection to a plain port and to an ssl: listener;
an idle WebSocket, plain, with permessage-deflate (before and after a
first message, which makes zlib's state), and over TLS. Run with
the default --budget 0 to measure (nothing refused); with a budget, to see
admission at work. Every loop is bounded; only loopback is used.
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support.certs import make_certificates  # noqa: E402
from support.daemon import rss, start_daemon  # noqa: E402
from support.wire import frame, upgrade  # noqa: E402

KiB = 1024
# "hello", compressed (a final empty block stripped, RFC 7692 7.2.1).
COMPRESSED = bytes.fromhex("ca48cdc9c90700")
DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"


def open_kind(kind: str, port: int, context: ssl.SSLContext) -> socket.socket | None:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        return None
    try:
        if kind.startswith("tls-ws"):
            sock = context.wrap_socket(sock, server_hostname="localhost")
        if kind in ("ws", "tls-ws"):
            sock.sendall(upgrade(f"127.0.0.1:{port}"))
        elif kind.startswith("deflate-ws"):
            sock.sendall(upgrade(f"127.0.0.1:{port}", DEFLATE))
        if "ws" in kind:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
        if kind == "deflate-ws1":
            # One compressed message each way: zlib's state is made then.
            sock.sendall(frame(1, COMPRESSED, rsv=4))
            sock.recv(4096)
    except OSError:
        sock.close()
        return None
    return sock


def measure(kind: str, count: int, budget: int, workdir: Path) -> None:
    certs = make_certificates(workdir)
    context = ssl.create_default_context(cafile=str(certs["ca"]))
    listen = (
        f"ssl:0:interface=127.0.0.1:privateKey={certs['key']}:certKey={certs['cert']}"
        if kind.startswith("tls")
        else "tcp:0:interface=127.0.0.1"
    )
    daemon = start_daemon(
        workdir,
        "--listen",
        listen,
        "--memory-budget",
        str(budget),
        "--open-handshake-timeout",
        "600",
        "--max-connections",
        str(count * 2),
    )
    try:
        # Warm: what the first connection loads is not a connection's cost.
        for sock in [open_kind(kind, daemon.port, context) for _ in range(20)]:
            if sock is not None:
                sock.close()
        time.sleep(1)
        before = rss(daemon.pid)
        socks = [open_kind(kind, daemon.port, context) for _ in range(count)]
        opened = [s for s in socks if s is not None]
        time.sleep(1)
        peak = rss(daemon.pid)
        for sock in opened:
            sock.close()
        time.sleep(10)
        after = rss(daemon.pid)
        each = (peak - before) / max(len(opened), 1)
        print(
            f"{kind:12} {len(opened):6} open: +{(peak - before) / KiB / KiB:7.1f} MiB "
            f"({each / KiB:6.1f} KiB each); 10 s after closing "
            f"+{(after - before) / KiB / KiB:6.1f} MiB"
        )
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--budget", type=int, default=0)
    parser.add_argument(
        "--kinds",
        default="tcp,tls,ws,deflate-ws,deflate-ws1,tls-ws",
        help="comma-separated",
    )
    args = parser.parse_args()
    for kind in args.kinds.split(","):
        with tempfile.TemporaryDirectory() as workdir:
            measure(kind, args.count, args.budget, Path(workdir))


if __name__ == "__main__":
    main()
