"""
How fast wsecho-client starts, beside C{python -m websockets} in the same
Python: each command run N times in turn (as hyperfine does), the wall
time of each run taken around C{subprocess.run}, and a table of the
median, the minimum and each median's ratio to the baseline's.

    python bench/client_startup.py [--runs 20]

The commands: C{wsecho-client --version}, a usage error
(C{wsecho-client --count 0}) and C{--help}, against C{python -m
websockets --version}. None of them connects anywhere.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def commands() -> dict[str, list[str]]:
    client = str(BIN / "wsecho-client")
    return {
        "python -m websockets --version": [
            sys.executable,
            "-m",
            "websockets",
            "--version",
        ],
        "wsecho-client --version": [client, "--version"],
        "wsecho-client --count 0 (usage error)": [client, "--count", "0"],
        "wsecho-client --help": [client, "--help"],
    }


def measure(runs: int) -> dict[str, list[float]]:
    """
    Run every command C{runs} times, interleaved so that a slow moment of
    the machine is shared; one warm-up run each first (the file cache).
    """
    todo = commands()
    for argv in todo.values():
        subprocess.run(argv, capture_output=True, check=False)
    times: dict[str, list[float]] = {name: [] for name in todo}
    for _ in range(runs):
        for name, argv in todo.items():
            began = time.perf_counter()
            subprocess.run(argv, capture_output=True, check=False)
            times[name].append(time.perf_counter() - began)
    return times


def table(times: dict[str, list[float]]) -> str:
    names = list(times)
    baseline = statistics.median(times[names[0]])
    width = max(len(n) for n in names)
    lines = [f"{'command':{width}}  median ms  min ms  ratio"]
    for name in names:
        median = statistics.median(times[name])
        lines.append(
            f"{name:{width}}  {median * 1000:9.1f}  {min(times[name]) * 1000:6.1f}"
            f"  {median / baseline:5.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs of each command")
    args = parser.parse_args()
    print(f"{args.runs} runs each, Python {sys.version.split()[0]}")
    print(table(measure(args.runs)))


if __name__ == "__main__":
    main()
