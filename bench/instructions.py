"""
wsecho's own cost in instructions, counted by valgrind's callgrind: the
same in-memory echo and handshake as C{bench/python_cost.py}, run twice with
different counts so that start-up cancels out. Instruction counts do not
depend on what else the machine is doing, so two builds (this checkout and
another one's virtualenv, C{--base}) compare within a fraction of a per
cent where timings move by tens.

    python bench/instructions.py [--base OTHER/.venv/bin/python --base-bench OTHER/bench]
    python bench/instructions.py --h2    # the echo over HTTP/2 against HTTP/1.1
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Run by each Python under valgrind: N echoes or N handshakes, with the
# garbage collector off (as timeit runs), logging to a string.
LOOP = """
import gc, io, sys
sys.path.insert(0, {bench!r})
sys.argv = ["x"]
import python_cost as pc
from twisted.internet.error import ConnectionDone
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.python.failure import Failure
log = io.StringIO()
globalLogBeginner.beginLoggingTo([textFileLogObserver(log)], redirectStandardIO=False)
site = pc.make_site(pc.EchoSettings())
gc.disable()
if {mode!r} == "handshake":
    close = pc.frame(8, (1000).to_bytes(2, "big"), mask=b"abcd")
    done = Failure(ConnectionDone())
    for _ in range({count}):
        protocol, _ = pc.connect(site)
        protocol.dataReceived(close)
        protocol.connectionLost(done)
        log.seek(0)
        log.truncate()
else:
    if {mode!r} == "h2":
        protocol, transport, data = pc.connect_h2(site)
    else:
        protocol, transport = pc.connect(site)
        data = pc.frame(1, b"x" * 32, mask=b"abcd")
    written = transport.io
    for _ in range({count}):
        protocol.dataReceived(data)
        written.seek(0)
        written.truncate()
"""


def instructions(python: str, bench: str, mode: str, count: int) -> int:
    done = subprocess.run(
        [
            shutil.which("valgrind") or "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            python,
            "-c",
            LOOP.format(bench=bench, mode=mode, count=count),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from valgrind:\n{done.stderr[-500:]}")
    return int(found.group(1))


def per_operation(python: str, bench: str, mode: str, few: int, many: int) -> float:
    return (
        instructions(python, bench, mode, many) - instructions(python, bench, mode, few)
    ) / (many - few)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", help="another build's Python, to compare with")
    parser.add_argument("--base-bench", help="that build's bench/ folder")
    parser.add_argument(
        "--h2",
        action="store_true",
        help="also the echo over HTTP/2 (a DATA frame read by the connection)",
    )
    options = parser.parse_args()
    if options.h2:
        echo = per_operation(sys.executable, str(HERE), "echo", 1000, 6000)
        h2 = per_operation(sys.executable, str(HERE), "h2", 1000, 6000)
        print(
            f"this checkout: {echo:,.0f} instructions an echo, {h2:,.0f} over"
            f" HTTP/2 ({h2 / echo:.2f}x)"
        )
        return
    builds = [("this checkout", sys.executable, str(HERE))]
    if options.base:
        builds.append(("base", options.base, options.base_bench or str(HERE)))
    figures = {}
    for name, python, bench in builds:
        figures[name] = (
            per_operation(python, bench, "echo", 1000, 6000),
            per_operation(python, bench, "handshake", 100, 400),
        )
        echo, handshake = figures[name]
        print(f"{name}: {echo:,.0f} instructions an echo, {handshake:,.0f} a handshake")
    if options.base:
        (echo, handshake), (base_echo, base_handshake) = figures.values()
        print(
            f"ratio: echo {echo / base_echo:.3f}x, handshake {handshake / base_handshake:.3f}x"
        )


if __name__ == "__main__":
    main()
