"""
The benchmark: wsecho against its peers, scenario by scenario, in one run.

Each measurement starts a fresh server pinned to one core and runs
bench/load.py pinned to another (taskset), for each peer in turn; the order
of the peers turns round from one round to the next, and each figure is the
median of its rounds. Figures are given as ratios to wsecho's.

    python bench/run.py                      # everything, 3 rounds of 5 s
    python bench/run.py --scenarios S2,S4 --peers wsecho,websockets
    python bench/run.py --smoke              # a few seconds, for CI
    python bench/run.py --scenarios S2,S9,S9m --peers wsecho   # h2 against 1.1

It writes results.json, results.rst (the README's table) and results.png
(the chart) to --out (default bench/results).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS_DIR = HERE / "peers"
PYTHON = sys.executable
BIN = Path(sys.executable).parent

# What each scenario reports, and whether more is better.
FIGURES = {
    "S1": ("p99_ms", "p99 ms, 1 conn. ping-pong, 32 B", False),
    "S2": ("rate", "msg/s, 64 conn. ping-pong, 32 B", True),
    "S3": ("mb_per_s", "MB/s, 16 conn. ping-pong, 64 KiB", True),
    "S4": ("rate", "msg/s, 8 conn. x 32 in flight, 1 KiB", True),
    "S5": ("rate", "handshakes/s, 16 at a time", True),
    "S6": ("bytes_per_connection", "bytes per idle connection", False),
    "S7a": ("rate", "msg/s, S2 with deflate", True),
    "S7b": ("mb_per_s", "MB/s, S3 with deflate", True),
    "S7c": ("rate", "msg/s, S7a with gorilla's offer", True),
    "S7d": ("rate", "msg/s, S7a with 1 KiB", True),
    "S7e": ("rate", "msg/s, S7c with 1 KiB", True),
    "S8": ("p99_ms", "p99 ms, S1 during 4 conn. of deflate bombs", False),
    "S9": ("rate", "msg/s, S2 over h2 (RFC 8441)", True),
    "S9m": ("rate", "msg/s, 8 h2 conn. x 8 WebSockets, 32 B", True),
}
ALL_SCENARIOS = list(FIGURES)
# WebSockets over HTTP/2 (bench/load_h2.py): wsecho only among the peers.
H2_SCENARIOS = ("S9", "S9m")
HTTP11_SCENARIOS = tuple(s for s in ALL_SCENARIOS if s not in H2_SCENARIOS)


@dataclass
class Peer:
    name: str
    command: list[str]  # {port} is replaced
    path: str = "/socket"
    scheme: str = "ws"
    scenarios: tuple[str, ...] = HTTP11_SCENARIOS
    deflate_command: list[str] | None = None  # for S7 and S8, if it differs
    env: dict[str, str] = field(default_factory=dict)
    missing: str = ""  # why it cannot run here
    # Pinned to the server's core; the --workers peers may use every core
    # (the load generator's included: there is no other on two cores).
    pinned: bool = True
    # Part of a run without --peers.
    default: bool = True

    def argv(self, port: int, scenario: str) -> list[str]:
        command = self.command
        if scenario.startswith(("S7", "S8")) and self.deflate_command:
            command = self.deflate_command
        return [part.replace("{port}", str(port)) for part in command]

    def url(self, port: int) -> str:
        if self.scheme == "tcp":
            return f"tcp://127.0.0.1:{port}"
        return f"ws://127.0.0.1:{port}{self.path}"


def gorilla_binary(build_dir: Path) -> tuple[str | None, str]:
    """
    Build the seed's Go server from Debian's golang-go and
    golang-github-gorilla-websocket-dev, offline.
    """
    go = shutil.which("go")
    gocode = Path("/usr/share/gocode")
    if go is None:
        return None, "no go (Debian: golang-go)"
    if not (gocode / "src/github.com/gorilla/websocket").is_dir():
        return (
            None,
            "no gorilla/websocket (Debian: golang-github-gorilla-websocket-dev)",
        )
    build_dir.mkdir(parents=True, exist_ok=True)
    binary = build_dir / "gorilla-echo"
    env = dict(
        os.environ,
        GOPATH=str(gocode),
        GO111MODULE="off",
        GOCACHE=str(build_dir / "gocache"),
    )
    done = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=PEERS_DIR / "gorilla",
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        return None, f"go build failed: {done.stderr.strip()[:200]}"
    return str(binary), ""


def peers(build_dir: Path) -> list[Peer]:
    twistd = str(BIN / "twistd")
    wsecho = [twistd, "-n", "--pidfile=", "wsecho", "--port", "{port}"]
    gorilla, why = gorilla_binary(build_dir)
    base = os.environ.get("BENCH_BASE_TWISTD")
    script = lambda name: [PYTHON, str(PEERS_DIR / name), "{port}"]  # noqa: E731
    return [
        Peer("wsecho", wsecho, scenarios=tuple(ALL_SCENARIOS)),
        # For --workers: the same on every core, 1 and 2 workers.
        Peer(
            "wsecho-unpinned",
            wsecho,
            scenarios=("S2", "S4", "S7a"),
            pinned=False,
            default=False,
        ),
        Peer(
            "wsecho-2-workers",
            [*wsecho, "--workers", "2"],
            scenarios=("S2", "S4", "S7a"),
            pinned=False,
            default=False,
        ),
        # Another build of wsecho (a commit to compare with): the twistd of a
        # virtualenv it is installed in, named by BENCH_BASE_TWISTD.
        Peer(
            "wsecho-base",
            [base or "-", "-n", "--pidfile=", "wsecho", "--port", "{port}"],
            scenarios=tuple(ALL_SCENARIOS),  # h2's too: it is wsecho
            default=False,
            missing="" if base else "BENCH_BASE_TWISTD names no twistd",
        ),
        Peer(
            "gorilla",
            [gorilla or "-", "-listen", "127.0.0.1:{port}"],
            deflate_command=[
                gorilla or "-",
                "-listen",
                "127.0.0.1:{port}",
                "-compress",
            ],
            env={"GOMAXPROCS": "1"},
            missing=why,
        ),
        Peer(
            "websockets",
            script("websockets_echo.py"),
            path="/",
            deflate_command=[*script("websockets_echo.py"), "--deflate"],
        ),
        Peer(
            "picows",
            script("picows_echo.py"),
            path="/",
            scenarios=("S1", "S2", "S3", "S4", "S5", "S6"),  # no deflate in picows
        ),
        Peer(
            "naive-autobahn",
            script("naive_autobahn.py"),
            path="/",
            deflate_command=[*script("naive_autobahn.py"), "--deflate"],
        ),
        Peer(
            "raw-twisted",
            script("raw_twisted.py"),
            scheme="tcp",
            scenarios=("S1", "S2", "S3", "S4"),  # no WebSocket: no handshake
        ),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen, deadline: float = 30) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {deadline} s")


TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int) -> float:
    """
    The CPU seconds (user and system) of a process and of every process
    under it (the workers of --workers), from /proc.
    """
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            total += stats[current][1]
        todo += [p for p, (parent, _) in stats.items() if parent == current]
    return total / TICK


# What a scenario's operations are, for the server's CPU time per operation.
OPERATIONS = {"S5": "handshakes"}


def pinned(cpu: str | None, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if cpu is not None else argv


def h2_load(url: str) -> list[str]:
    """
    The load generator over HTTP/2: Node's http2 module (nghttp2, in C),
    which keeps the server as busy as picows does over HTTP/1.1; the h2
    library (pure Python, slower than the server) where Node is missing.
    """
    node = shutil.which("node") or shutil.which("nodejs")
    if node is not None:
        return [node, str(HERE / "load_h2.js"), url]
    return [PYTHON, str(HERE / "load_h2.py"), url]


def measure(peer: Peer, scenario: str, args: argparse.Namespace) -> dict:
    port = free_port()
    env = dict(os.environ, **peer.env)
    log = open(args.out / "logs" / f"{peer.name}-{scenario}.log", "ab")
    server = subprocess.Popen(
        pinned(args.server_cpu if peer.pinned else None, peer.argv(port, scenario)),
        env=env,
        stdout=subprocess.DEVNULL if peer.name == "gorilla" else log,
        stderr=subprocess.DEVNULL if peer.name == "gorilla" else log,
    )
    try:
        wait_for_port(port, server)
        load = [PYTHON, str(HERE / "load.py"), peer.url(port)]
        if scenario in H2_SCENARIOS:
            load = h2_load(peer.url(port))
        if FIGURES[scenario][0] in ("rate", "mb_per_s", "p99_ms") and scenario != "S5":
            # Warm up: the first messages load code, fill caches.
            subprocess.run(
                pinned(
                    args.load_cpu, [*load, "--scenario", scenario, "--seconds", "0.3"]
                ),
                capture_output=True,
                timeout=120,
                check=True,
            )
        extra = ["--seconds", str(args.seconds)]
        if scenario == "S5":
            extra = ["--seconds", "60", "--total", str(args.handshakes)]
        if scenario == "S6":
            extra = ["--seconds", "120", "--connections", str(args.idle)]
            extra += ["--pid", str(server.pid)]
        before = tree_cpu(server.pid)
        done = subprocess.run(
            pinned(args.load_cpu, [*load, "--scenario", scenario, *extra]),
            capture_output=True,
            text=True,
            timeout=300,
        )
        spent = tree_cpu(server.pid) - before
        if done.returncode != 0:
            raise RuntimeError(f"load.py failed: {done.stderr.strip()[-500:]}")
        result = json.loads(done.stdout)
        operations = result.get(OPERATIONS.get(scenario, "messages"))
        if operations and scenario != "S6":
            # The server's CPU time per echo (or handshake), in microseconds:
            # steadier than throughput on a noisy machine.
            result["cpu_us"] = spent / operations * 1e6
        return result
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def problems(result: dict) -> list[str]:
    found = []
    if result.get("mismatches"):
        found.append(f"{result['mismatches']} echoes differed from what was sent")
    if result.get("errors"):
        found.append(f"errors: {result['errors']}")
    if result.get("failed"):
        found.append(f"{result['failed']} failed")
    if result.get("deflate") is False:
        found.append("permessage-deflate was not negotiated")
    figure = FIGURES[result["scenario"]][0]
    if not result.get(figure):
        found.append(f"no {figure}")
    return found


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("wsecho", "twisted", "autobahn", "websockets", "picows"):
        try:
            versions[package] = version(package)
        except Exception:
            versions[package] = "-"
    go = shutil.which("go")
    if go:
        versions["go"] = subprocess.run(
            [go, "version"], capture_output=True, text=True
        ).stdout.split()[2]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": versions,
    }


CPU_LABEL = "server CPU us per op."


def summarize(
    runs: list[dict], peer_names: list[str], scenarios: list[str], figure: str = ""
) -> dict:
    """
    The median of each peer's rounds, per scenario: of the scenario's own
    figure, or of C{figure} (C{cpu_us}).
    """
    table: dict[str, dict[str, float]] = {}
    for scenario in scenarios:
        wanted = figure or FIGURES[scenario][0]
        row = {}
        for name in peer_names:
            values = [
                r["result"][wanted]
                for r in runs
                if r["peer"] == name
                and r["scenario"] == scenario
                and wanted in r["result"]
            ]
            if values:
                row[name] = statistics.median(values)
        table[scenario] = row
    return table


def number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def write_table(
    table: dict, peer_names: list[str], path: Path, label: str = ""
) -> None:
    """
    An RST grid table: each figure, and its ratio to the first peer's
    (wsecho's); C{label} names the figure when it is not the scenario's.
    """
    header = ["scenario", *peer_names]
    rows = []
    first = peer_names[0]
    for scenario, row in table.items():
        if not row:
            continue
        base = row.get(first)
        cells = [f"{scenario}: {label or FIGURES[scenario][1]}"]
        for name in peer_names:
            if name not in row:
                cells.append("n/a")
            elif base and name != first:
                cells.append(f"{number(row[name])} ({row[name] / base:.2f}x)")
            else:
                cells.append(number(row[name]))
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(char: str) -> str:
        return "+" + "+".join(char * (w + 2) for w in widths) + "+"

    def fmt(cells: list[str]) -> str:
        padded = (c.ljust(w) for c, w in zip(cells, widths, strict=True))
        return "| " + " | ".join(padded) + " |"

    out = [line("-")]
    out.append(fmt(header))
    out.append(line("="))
    for cells in rows:
        out.append(fmt(cells))
        out.append(line("-"))
    path.write_text("\n".join(out) + "\n")


def write_chart(
    table: dict,
    peer_names: list[str],
    path: Path,
    title: str,
    more_is_better: bool | None = None,
) -> str:
    """
    Each peer's figure relative to the first peer's, per scenario, turned so
    that higher is better; C{more_is_better} overrides the scenarios' own
    sense (False for CPU time).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no chart: matplotlib is not installed"
    scenarios = [s for s in table if table[s]]
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(peer_names)
    for i, name in enumerate(peer_names):
        ratios = []
        for scenario in scenarios:
            row = table[scenario]
            value, base = row.get(name), row.get(peer_names[0])
            if value is None or not base:
                ratios.append(0)
                continue
            better = FIGURES[scenario][2] if more_is_better is None else more_is_better
            ratios.append(value / base if better else base / value)
        xs = [
            x + (i - (len(peer_names) - 1) / 2) * width for x in range(len(scenarios))
        ]
        ax.bar(xs, ratios, width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels(
        [f"{s}\n{FIGURES[s][1].split(',')[0]}" for s in scenarios], fontsize=8
    )
    ax.set_ylabel(f"relative to {peer_names[0]} (higher is better)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, ncol=len(peer_names))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"chart: {path}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default=",".join(ALL_SCENARIOS))
    parser.add_argument("--peers", help="comma-separated names (default: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--handshakes", type=int, default=2000)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="one round of 0.5 s, 200 handshakes, 500 idle connections",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.seconds, args.handshakes, args.idle = 1, 0.5, 200, 500
    scenarios = args.scenarios.split(",")
    unknown = set(scenarios) - set(ALL_SCENARIOS)
    if unknown:
        parser.error(f"--scenarios: unknown {', '.join(sorted(unknown))}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "logs").mkdir(exist_ok=True)
    # One core for the server, another for the load, when there are two.
    cores = sorted(os.sched_getaffinity(0))
    if shutil.which("taskset") and len(cores) >= 2:
        args.server_cpu, args.load_cpu = str(cores[0]), str(cores[1])
    else:
        args.server_cpu = args.load_cpu = None
    # S6 needs some 10,000 descriptors on each side.
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    everyone = peers(args.out / "build")
    if args.peers:
        wanted = args.peers.split(",")
        names = {p.name for p in everyone}
        if set(wanted) - names:
            parser.error(f"--peers: unknown {', '.join(sorted(set(wanted) - names))}")
        everyone = [p for p in everyone if p.name in wanted]
    else:
        everyone = [p for p in everyone if p.default]
    failures: list[str] = []
    for peer in everyone:
        if peer.missing:
            print(f"bench: skipping {peer.name}: {peer.missing}", flush=True)
            # As for the tests: where the tools must be there (CI), fail.
            if os.environ.get("WSECHO_REQUIRE_TOOLS") == "1":
                failures.append(f"{peer.name}: {peer.missing}")
    present = [p for p in everyone if not p.missing]
    names = [p.name for p in present]

    runs: list[dict] = []
    began = time.monotonic()
    for round_ in range(args.rounds):
        for scenario in scenarios:
            # Turn the order round, so that no peer always goes first.
            order = present[round_ % len(present) :] + present[: round_ % len(present)]
            for peer in order:
                if scenario not in peer.scenarios:
                    continue
                try:
                    result = measure(peer, scenario, args)
                except Exception as e:
                    failures.append(f"{peer.name} {scenario}: {e}")
                    print(f"bench: {peer.name} {scenario}: FAILED {e}", flush=True)
                    continue
                found = problems(result)
                if found:
                    failures.append(f"{peer.name} {scenario}: {'; '.join(found)}")
                figure = FIGURES[scenario][0]
                print(
                    f"bench: round {round_ + 1} {scenario:4} {peer.name:15}"
                    f" {figure} {number(result.get(figure) or 0)}"
                    + (f"  PROBLEM: {'; '.join(found)}" if found else ""),
                    flush=True,
                )
                runs.append(
                    {
                        "round": round_,
                        "peer": peer.name,
                        "scenario": scenario,
                        "result": result,
                    }
                )
    table = summarize(runs, names, scenarios)
    cpu = summarize(runs, names, scenarios, "cpu_us")
    command = "python bench/run.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    info = machine()
    # The server's CPU per small echo over h2 against HTTP/1.1, same run.
    h2_cpu = {
        f"{scenario}/S2": row["wsecho"] / cpu["S2"]["wsecho"]
        for scenario, row in cpu.items()
        if scenario in H2_SCENARIOS
        and "wsecho" in row
        and "wsecho" in cpu.get("S2", {})
    }
    report = {
        "command": command.strip(),
        "machine": info,
        "pinning": {"server": args.server_cpu, "load": args.load_cpu},
        "rounds": args.rounds,
        "seconds": args.seconds,
        "table": table,
        "cpu_us_per_operation": cpu,
        "h2_cpu_per_echo_vs_http11": h2_cpu,
        "runs": runs,
        "failures": failures,
        "elapsed": time.monotonic() - began,
    }
    (args.out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    write_table(table, names, args.out / "results.rst")
    write_table(cpu, names, args.out / "cpu.rst", CPU_LABEL)
    title = (
        f"{command.strip()}\n{info['cpu']}, {info['cores']} cores, "
        f"server on core {args.server_cpu}, load on core {args.load_cpu}; "
        f"Python {info['python']}"
    )
    print(f"bench: {write_chart(table, names, args.out / 'results.png', title)}")
    cpu_title = title.replace(
        "\n", " (server CPU per operation; higher is better)\n", 1
    )
    print(f"bench: {write_chart(cpu, names, args.out / 'cpu.png', cpu_title, False)}")
    print((args.out / "results.rst").read_text())
    print((args.out / "cpu.rst").read_text())
    for ratio, value in h2_cpu.items():
        print(f"bench: wsecho's CPU per echo, {ratio} (h2 / HTTP/1.1): {value:.2f}x")
    print(f"bench: {time.monotonic() - began:.0f} s; results in {args.out}")
    if failures:
        print("bench: FAILED:\n  " + "\n  ".join(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
