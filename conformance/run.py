"""
Run the Autobahn TestSuite against wsecho, as a server and as a client, and
fail unless every case passes.

    python conformance/run.py [--mode server|client|both] [--cases 1.*,9.*]

As a server: C{twistd -n wsecho} with its default options on a free port,
tested by C{wstest -m fuzzingclient} with the cases of C{fuzzingclient.json}.
As a client: C{python -m wsecho.client.testee} against C{wstest -m fuzzingserver}.
The 9.* performance cases also run against Autobahn-Python's own testee
echo in the same run, for comparison. The cases are split over --jobs
wstest processes; reports (HTML and JSON) go to reports/.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOP = HERE.parent
BIN = Path(sys.executable).parent
PASSING = ("OK", "NON-STRICT", "INFORMATIONAL")
VERDICTS = (*PASSING, "UNIMPLEMENTED", "FAILED")
ALL_CASES = 517  # 1.* to 13.* in TestSuite 25.10.1, for server and client alike
GROUPS = {
    "1": "Framing",
    "2": "Pings/Pongs",
    "3": "Reserved bits",
    "4": "Opcodes",
    "5": "Fragmentation",
    "6": "UTF-8 handling",
    "7": "Close handling",
    "9": "Limits/performance",
    "10": "Miscellaneous",
    "12": "Compression (payloads)",
    "13": "Compression (parameters)",
}
REFERENCE = "autobahn-python"
STARTUP_DEADLINE = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(
                f"conformance: {what} exited with {process.returncode} before listening"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(
        f"conformance: {what} not listening on {port} after {STARTUP_DEADLINE}s"
    )


@dataclass
class Job:
    """
    One wstest run over some cases: optionally a service to start first
    (the fuzzing server), then commands run one after the other.
    """

    name: str
    cases: list[str]
    outdir: Path
    steps: list[list[str]] = field(default_factory=list)
    service: list[str] | None = None
    service_port: int = 0
    elapsed: float = 0.0
    failed: str | None = None


def split(cases: list[str], jobs: int) -> tuple[list[list[str]], list[str]]:
    """
    Split the case patterns into the parallel runs of the first phase and
    the 9.* (performance) patterns, which run alone afterwards so that
    their durations are not bent by other runs. The compression groups take
    nine tenths of the time, so with all cases 12.* runs on its own.
    """
    if cases == ["*"]:
        rest = [f"{g}.*" for g in GROUPS if g not in ("9", "12")]
        parallel = [["12.*"], rest] if jobs > 1 else [["12.*", *rest]]
        return parallel, ["9.*"]
    nine = [c for c in cases if c.split(".")[0] == "9"]
    others = [c for c in cases if c not in nine]
    n = max(1, jobs)
    return [others[i::n] for i in range(n) if others[i::n]], nine


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.reports = Path(args.reports).resolve()
        self.processes: list[subprocess.Popen] = []
        self.spec = json.loads((TOP / "fuzzingclient.json").read_text())
        self.cases = args.cases.split(",") if args.cases else self.spec["cases"]
        self.parallel, self.nine = split(self.cases, args.jobs)

    def start(self, command: list[str], log: Path) -> subprocess.Popen:
        log.parent.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen(
            command, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=self.reports
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    def write_spec(self, name: str, spec: dict) -> Path:
        path = self.reports / "specs" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(spec, indent=2))
        return path

    def start_server(self, command: list[str], port: int, name: str) -> None:
        process = self.start(command, self.reports / "logs" / f"{name}.log")
        wait_for_port(port, process, name)

    # --- wsecho as a server: wstest -m fuzzingclient ---------------------

    def server_jobs(self) -> tuple[list[Job], list[Job]]:
        port = free_port()
        self.start_server(
            [str(BIN / "twistd"), "-n", "--pidfile=", "wsecho", "--port", str(port)],
            port,
            "wsecho-server",
        )
        wsecho = {"agent": "wsecho", "url": f"ws://127.0.0.1:{port}/socket"}
        first = [
            self._fuzzingclient(f"server-{i}", [wsecho], cases)
            for i, cases in enumerate(self.parallel)
        ]
        second = []
        if self.nine:
            ref_port = free_port()
            self.start_server(
                [
                    sys.executable,
                    str(HERE / "autobahn_testee.py"),
                    "server",
                    "--port",
                    str(ref_port),
                ],
                ref_port,
                "reference-server",
            )
            reference = {"agent": REFERENCE, "url": f"ws://127.0.0.1:{ref_port}"}
            second.append(
                self._fuzzingclient("server-9", [wsecho, reference], self.nine)
            )
        return first, second

    def _fuzzingclient(self, name: str, servers: list[dict], cases: list[str]) -> Job:
        outdir = self.reports / "servers" / name
        spec = dict(self.spec, outdir=str(outdir), cases=cases, servers=servers)
        path = self.write_spec(name, spec)
        command = [self.args.wstest, "-m", "fuzzingclient", "-s", str(path)]
        return Job(name, cases, outdir, steps=[command])

    # --- wsecho as a client: wstest -m fuzzingserver ---------------------

    def client_jobs(self) -> tuple[list[Job], list[Job]]:
        first = [
            self._fuzzingserver(f"client-{i}", cases, [])
            for i, cases in enumerate(self.parallel)
        ]
        second = []
        if self.nine:
            reference = [
                sys.executable,
                str(HERE / "autobahn_testee.py"),
                "client",
                "--url",
            ]
            second.append(self._fuzzingserver("client-9", self.nine, [reference]))
        return first, second

    def _fuzzingserver(
        self, name: str, cases: list[str], others: list[list[str]]
    ) -> Job:
        outdir = self.reports / "clients" / name
        port = free_port()
        url = f"ws://127.0.0.1:{port}"
        spec = {
            "url": url,
            "outdir": str(outdir),
            "cases": cases,
            "exclude-cases": self.spec.get("exclude-cases", []),
            "exclude-agent-cases": {},
        }
        path = self.write_spec(name, spec)
        testee = [
            sys.executable,
            "-m",
            "wsecho.client.testee",
            "--agent",
            "wsecho",
            "--url",
        ]
        return Job(
            name,
            cases,
            outdir,
            # --webport 0: no report web server, so runs do not collide on 8080.
            service=[
                self.args.wstest,
                "-m",
                "fuzzingserver",
                "-s",
                str(path),
                "--webport",
                "0",
            ],
            service_port=port,
            steps=[[*command, url] for command in [testee, *others]],
        )

    # --- running -----------------------------------------------------------

    def run_job(self, job: Job) -> None:
        started = time.monotonic()
        service = None
        try:
            if job.service:
                log = self.reports / "logs" / f"{job.name}-fuzzingserver.log"
                service = self.start(job.service, log)
                wait_for_port(job.service_port, service, "wstest -m fuzzingserver")
            for i, step in enumerate(job.steps):
                log = self.reports / "logs" / f"{job.name}-{i}.log"
                code = self.start(step, log).wait()
                if code != 0:
                    job.failed = f"{' '.join(step[:3])} exited with {code} (see {log})"
                    break
        except SystemExit as e:
            job.failed = str(e)
        except Exception as e:  # wstest missing, say: the job failed
            job.failed = f"{type(e).__name__}: {e}"
        finally:
            if service is not None:
                service.terminate()
        job.elapsed = time.monotonic() - started

    def run_jobs(self, jobs: list[Job], workers: int) -> None:
        todo: queue.Queue[Job] = queue.Queue()
        for job in jobs:
            todo.put(job)

        def worker() -> None:
            while True:
                try:
                    job = todo.get_nowait()
                except queue.Empty:
                    return
                print(
                    f"conformance: {job.name}: {', '.join(job.cases)} ...", flush=True
                )
                self.run_job(job)
                print(
                    f"conformance: {job.name}: done in {job.elapsed:.0f} s", flush=True
                )

        threads = [threading.Thread(target=worker) for _ in range(max(1, workers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def load(jobs: list[Job]) -> dict[str, dict[str, dict]]:
    """
    Merge the jobs' index.json files: agent -> case id -> result.
    """
    merged: dict[str, dict[str, dict]] = {}
    for job in jobs:
        index = job.outdir / "index.json"
        if not index.exists():
            continue
        for agent, cases in json.loads(index.read_text()).items():
            merged.setdefault(agent, {}).update(cases)
    return merged


def case_key(case: str) -> tuple[int, ...]:
    return tuple(int(p) for p in case.split("."))


def table(role: str, results: dict[str, dict], slowest: int = 5) -> list[str]:
    lines = [f"wsecho as a {role}: {len(results)} cases", ""]
    header = f"{'group':<30}" + "".join(f"{v:>15}" for v in VERDICTS)
    lines += [header, "-" * len(header)]
    by_group: dict[str, Counter] = {}
    for case, result in results.items():
        by_group.setdefault(case.split(".")[0], Counter())[result["behavior"]] += 1
    total: Counter = Counter()
    for group in sorted(by_group, key=int):
        counts = by_group[group]
        total += counts
        name = f"{group}.* {GROUPS.get(group, '')}"
        lines.append(f"{name:<30}" + "".join(f"{counts[v]:>15}" for v in VERDICTS))
    lines.append("-" * len(header))
    lines.append(f"{'all':<30}" + "".join(f"{total[v]:>15}" for v in VERDICTS))
    others = sorted(set(total) - set(VERDICTS))
    if others:
        lines.append(f"other verdicts: {', '.join(f'{o}: {total[o]}' for o in others)}")
    slow = sorted(results.items(), key=lambda kv: -kv[1]["duration"])[:slowest]
    lines += [
        "",
        "slowest: "
        + ", ".join(f"{case} {r['duration'] / 1000:.1f} s" for case, r in slow),
    ]
    return lines


def nine_table(ours: dict[str, dict], reference: dict[str, dict]) -> list[str]:
    lines = [
        "",
        f"9.* durations, ms (wsecho, {REFERENCE}'s testee in the same run, ratio)",
    ]
    for case in sorted((c for c in ours if c.startswith("9.")), key=case_key):
        mine = ours[case]["duration"]
        theirs = reference.get(case, {}).get("duration")
        ratio = f"{mine / theirs:.2f}" if theirs else "-"
        lines.append(
            f"  {case:<8} {mine:>7} {theirs if theirs is not None else '-':>7} {ratio:>6}"
        )
    return lines


def report(role: str, jobs: list[Job], expected: int | None) -> list[str]:
    """
    Print the verdict tables for one role; return the problems found.
    """
    merged = load(jobs)
    ours = merged.get("wsecho", {})
    lines = table(role, ours)
    if REFERENCE in merged:
        lines += nine_table(ours, merged[REFERENCE])
    lines += [
        "",
        "wall time: " + ", ".join(f"{j.name} {j.elapsed:.0f} s" for j in jobs),
    ]
    print("\n".join(lines), flush=True)
    summary = Path(jobs[0].outdir).parent / "summary.txt"
    summary.write_text("\n".join(lines) + "\n")
    problems = [f"{role}: {j.name}: {j.failed}" for j in jobs if j.failed]
    bad = sorted(
        (c for c, r in ours.items() if r["behavior"] not in PASSING), key=case_key
    )
    if bad:
        problems.append(
            f"{role}: {len(bad)} cases did not pass: "
            + ", ".join(f"{c} ({ours[c]['behavior']})" for c in bad)
        )
    if expected is not None and len(ours) != expected:
        problems.append(f"{role}: {len(ours)} cases reported, {expected} expected")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["server", "client", "both"], default="both")
    parser.add_argument(
        "--cases", help="comma-separated case patterns (default: fuzzingclient.json's)"
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="wstest runs at once"
    )
    parser.add_argument("--wstest", default=str(TOP / ".ats" / "bin" / "wstest"))
    parser.add_argument("--reports", default=str(TOP / "reports"))
    args = parser.parse_args()
    if not Path(args.wstest).exists():
        raise SystemExit(
            f"conformance: no wstest at {args.wstest}; run conformance/install-wstest.sh"
        )
    runner = Runner(args)
    runner.reports.mkdir(parents=True, exist_ok=True)
    expected = (
        ALL_CASES
        if runner.cases == ["*"] and not runner.spec.get("exclude-cases")
        else None
    )
    problems = []
    started = time.monotonic()
    roles = [r for r in ("server", "client") if args.mode in (r, "both")]
    try:
        # Phase one: every role's runs at once (the machine's cores are
        # shared by wstest, the daemon and the testee). Phase two: the 9.*
        # performance cases, alone, wsecho and the reference one after the
        # other under the same conditions.
        phases: dict[str, tuple[list[Job], list[Job]]] = {}
        for role in roles:
            phases[role] = (
                runner.server_jobs() if role == "server" else runner.client_jobs()
            )
        runner.run_jobs(
            [j for first, _ in phases.values() for j in first], args.jobs * len(roles)
        )
        for _, second in phases.values():
            runner.run_jobs(second, 1)
        for role, (first, second) in phases.items():
            problems += report(role, first + second, expected)
    finally:
        runner.stop_all()
    print(
        f"\nconformance: {time.monotonic() - started:.0f} s in all; reports in {runner.reports}"
    )
    if problems:
        print("\n".join(["", "conformance FAILED:", *problems]), file=sys.stderr)
        raise SystemExit(1)
    print("conformance: every case passed")


if __name__ == "__main__":
    main()
