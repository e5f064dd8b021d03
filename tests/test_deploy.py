"""
The deployment files in C{deploy/}, each checked by the real tool where
there is one: the command lines against the real option parsers, the
systemd unit's command under socket activation and its exposure by
systemd-analyze, the Kubernetes manifests' probes and grace period, the
Prometheus rules by promtool, and the metric names the rules and the
Grafana dashboard use against those the daemon exports.
"""

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from websockets.sync.client import connect

from support import BIN, DEADLINE, require
from support.daemon import Daemon, free_port, start_daemon

ROOT = Path(__file__).parent.parent


def unit_command() -> list[str]:
    text = (ROOT / "deploy" / "wsecho.service").read_text()
    (line,) = re.findall(r"^ExecStart=(.*)$", text, re.MULTILINE)
    return shlex.split(line)


def parse_in_child(argv: list[str], environ: dict[str, str]) -> dict:
    """
    Parse a twistd command line in a new Python process with C{environ}
    set before Twisted is imported (it reads systemd's variables then), as
    one that systemd started; return what the wsecho plugin made of it.
    """
    program = (
        "import json, os, sys\n"
        "os.environ.update(json.loads(sys.argv[1]))\n"
        "os.environ['LISTEN_PID'] = str(os.getpid())\n"
        "from twisted.scripts.twistd import ServerOptions\n"
        "config = ServerOptions()\n"
        "config.parseOptions(sys.argv[2:])\n"
        "print(json.dumps({'nodaemon': bool(config['nodaemon']),\n"
        "    'logger': bool(config['logger']), 'command': config.subCommand,\n"
        "    'listen': config.subOptions['listen']}))\n"
    )
    result = subprocess.run(
        [str(BIN / "python"), "-c", program, json.dumps(environ), *argv],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


@pytest.mark.system
def test_systemd_unit_command_line() -> None:
    """
    The unit's ExecStart is a valid twistd command line for the wsecho
    plugin, listening on the socket systemd passes, matching the socket
    unit's address family.
    """
    argv = unit_command()
    assert argv[0].endswith("/bin/twistd")
    # What systemd passes: one socket, at descriptor 3, named after its unit.
    parsed = parse_in_child(
        argv[1:], {"LISTEN_FDS": "1", "LISTEN_FDNAMES": "wsecho.socket"}
    )
    assert parsed == {
        "nodaemon": True,
        "logger": True,
        "command": "wsecho",
        "listen": ["systemd:domain=INET:index=0"],
    }
    socket_unit = (ROOT / "deploy" / "wsecho.socket").read_text()
    (address,) = re.findall(r"^ListenStream=(.*)$", socket_unit, re.MULTILINE)
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+:\d+", address)  # INET


@pytest.mark.system
def test_systemd_socket_activation(tmp_path) -> None:
    """
    The unit's command, started the way systemd starts it (by
    systemd-socket-activate, which passes the listening socket), echoes.
    """
    activate = require("systemd-socket-activate")
    port = free_port()
    argv = [str(BIN / "twistd"), *unit_command()[1:]]
    # systemd names the socket after its unit; Twisted needs the name.
    command = [activate, "--listen", f"127.0.0.1:{port}", "--fdname=wsecho.socket"]
    daemon = Daemon(tmp_path, command=[*command, *argv])
    try:
        daemon.wait_for("Listening on 127.0.0.1")
        # The first connection starts twistd, which inherits the socket.
        with connect(f"ws://127.0.0.1:{port}/socket", open_timeout=DEADLINE) as ws:
            ws.send("activated")
            assert ws.recv(timeout=DEADLINE) == "activated"
        daemon.wait_for('"message": "close ')
    finally:
        assert daemon.stop() == 0, daemon.whole_log()


@pytest.mark.system
def test_dockerfile_command_line() -> None:
    """
    The Dockerfile's CMD, with its ENV, is a valid twistd command line that
    listens on every address at 8181 and logs JSON.
    """
    text = (ROOT / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    (cmd,) = re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)
    argv = json.loads(cmd)
    (env,) = re.findall(r"^ENV (.*)$", text, re.MULTILINE)
    environ = dict(a.partition("=")[::2] for a in shlex.split(env))
    assert argv[0] == "twistd"
    assert parse_in_child(argv[1:], environ) == {
        "nodaemon": True,
        "logger": True,
        "command": "wsecho",
        "listen": ["tcp:8181:interface=0.0.0.0"],
    }


@pytest.mark.system
def test_haproxy_config_is_valid(tmp_path) -> None:
    """
    HAProxy accepts the shipped configuration (haproxy -c).
    """
    haproxy = require("haproxy")
    result = subprocess.run(
        [haproxy, "-c", "-f", str(ROOT / "deploy" / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_unit_gives_the_shutdown_time_to_finish() -> None:
    """
    The unit stops wsecho with SIGTERM, on which it shuts down gracefully,
    and waits longer than --shutdown-timeout before killing it.
    """
    text = (ROOT / "deploy" / "wsecho.service").read_text()
    assert "\nKillSignal=SIGTERM\n" in text
    (stop,) = re.findall(r"^TimeoutStopSec=(\d+)$", text, re.MULTILINE)
    argv = unit_command()
    assert int(stop) > float(argv[argv.index("--shutdown-timeout") + 1])


@pytest.mark.system
def test_systemd_unit_exposure() -> None:
    """
    systemd-analyze rates the unit's sandboxing at most 2.0 (OK), and the
    unit reads WSECHO_* variables from /etc/default/wsecho when it exists.
    """
    analyze = require("systemd-analyze")
    result = subprocess.run(
        [
            analyze,
            "security",
            "--offline=true",
            str(ROOT / "deploy" / "wsecho.service"),
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    (level,) = re.findall(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert float(level) <= 2.0, result.stdout
    text = (ROOT / "deploy" / "wsecho.service").read_text()
    assert "\nEnvironmentFile=-/etc/default/wsecho\n" in text


def _dockerfile() -> str:
    return (ROOT / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")


def test_dockerfile_user_labels_and_health_check() -> None:
    """
    The image runs as a numeric non-root user (which Kubernetes'
    runAsNonRoot can check), carries OCI labels, and checks its health
    with wsecho.daemon.healthcheck.
    """
    text = _dockerfile()
    (user,) = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) > 0 and (not gid or gid.isdigit())
    assert f"--uid {uid}" in text
    assert "org.opencontainers.image.title=" in text
    assert "org.opencontainers.image.licenses=" in text
    (check,) = re.findall(r"^HEALTHCHECK .*CMD (\[.*\])$", text, re.MULTILINE)
    assert json.loads(check) == ["python", "-m", "wsecho.daemon.healthcheck"]


def _healthcheck(environ: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "python"), "-m", "wsecho.daemon.healthcheck"],
        env={"PATH": "/usr/bin:/bin", **environ},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )


@pytest.mark.system
def test_healthcheck_follows_the_environment(tmp_path) -> None:
    """
    wsecho.daemon.healthcheck finds the daemon where WSECHO_PORT (and
    WSECHO_INTERFACE) or WSECHO_LISTEN say it listens, exits 0 while it is
    ready and 1, saying why, where nothing answers.
    """
    daemon = start_daemon(tmp_path, "--interface", "0.0.0.0")
    try:
        port = str(daemon.port)
        for environ in (
            {"WSECHO_PORT": port, "WSECHO_INTERFACE": "0.0.0.0"},
            {"WSECHO_LISTEN": f"tcp:{port}:interface=0.0.0.0"},
            {"WSECHO_LISTEN": f"tcp:port={port}"},
        ):
            result = _healthcheck(environ)
            assert (result.returncode, result.stderr) == (0, ""), environ
        daemon.stop()
        result = _healthcheck({"WSECHO_PORT": port})
        assert result.returncode == 1
        assert result.stderr.startswith("wsecho.daemon.healthcheck: not ready: ")
    finally:
        daemon.stop()


def _manifests() -> dict[str, dict]:
    import yaml

    found = {}
    for path in sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            found[document["kind"]] = document
    return found


@pytest.mark.system
def test_kubernetes_manifests() -> None:
    """
    The Deployment's command is a valid twistd command line listening on
    the container port its probes use (readiness /readyz, liveness
    /healthz); its grace period is longer than the drain delay and the
    shutdown timeout together; it runs as a numeric non-root user on a
    read-only root file system. The Service and the PodDisruptionBudget
    select its pods.
    """
    manifests = _manifests()
    assert set(manifests) == {"Deployment", "Service", "PodDisruptionBudget"}
    deployment = manifests["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    argv = container["command"]
    environ = {e["name"]: e["value"] for e in container["env"]}
    assert argv[0] == "twistd"
    parsed = parse_in_child(argv[1:], environ)
    (port,) = container["ports"]
    assert parsed["listen"] == [f"tcp:{port['containerPort']}:interface=0.0.0.0"]
    assert container["readinessProbe"]["httpGet"] == {
        "path": "/readyz",
        "port": port["name"],
    }
    assert container["livenessProbe"]["httpGet"] == {
        "path": "/healthz",
        "port": port["name"],
    }
    drain = float(argv[argv.index("--drain-delay") + 1])
    shutdown = float(argv[argv.index("--shutdown-timeout") + 1])
    assert drain > 0
    # Readiness fails within one probe period, well inside the drain.
    probe = container["readinessProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] < drain
    assert pod["terminationGracePeriodSeconds"] > drain + shutdown
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = manifests["Service"]["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] in (port["name"], port["containerPort"])
    budget = manifests["PodDisruptionBudget"]["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert budget["minAvailable"] < deployment["spec"]["replicas"]


def _exported() -> set[str]:
    """
    The names of every series the daemon exports (counters with _total,
    histograms with _bucket, _sum and _count).
    """
    from prometheus_client import generate_latest

    from wsecho.ws.budget import MemoryBudget
    from wsecho.ws.metrics import Metrics

    text = generate_latest(Metrics(MemoryBudget(1)).registry).decode()
    names = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        if kind == "counter":
            names.add(name.removesuffix("_total") + "_total")
        elif kind == "histogram":
            names.update(name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(name)
    return names


# PromQL's words and the labels, which are not series.
_NOT_METRICS = {
    "by",
    "sum",
    "rate",
    "increase",
    "changes",
    "and",
    "or",
    "histogram_quantile",
    "le",
    "instance",
    "job",
    "code",
    "reason",
    "type",
    "direction",
    "form",
}


def _metric_names(expression: str) -> set[str]:
    expression = re.sub(r'"[^"]*"', "", expression)  # label values
    expression = re.sub(r"\[[^]]*\]", "", expression)  # ranges
    expression = re.sub(r"\{[^}]*\}", "", expression)  # matchers
    names = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expression))
    return {n for n in names if n not in _NOT_METRICS and not n.startswith("__")}


@pytest.mark.system
def test_prometheus_rules() -> None:
    """
    promtool accepts the alert rules, and each of their expressions uses
    only series the daemon exports (and Prometheus' own up).
    """
    import yaml

    promtool = require("promtool")
    path = ROOT / "deploy" / "prometheus" / "wsecho-rules.yml"
    result = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    rules = [r for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]
    assert len(rules) >= 5
    exported = _exported()
    for rule in rules:
        names = _metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported | {"up"}, (rule["alert"], names - exported)


def test_grafana_dashboard() -> None:
    """
    The dashboard has a panel for each of connections, message rate, close
    codes, refusals, latency quantiles and the memory budget, and its
    queries use only series the daemon exports.
    """
    dashboard = json.loads(
        (ROOT / "deploy" / "grafana" / "wsecho-dashboard.json").read_text()
    )
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in (
        "connections open",
        "messages echoed",
        "close code",
        "refusals",
        "latency quantiles",
        "memory budget",
    ):
        assert topic in titles, topic
    exported = _exported()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expression = target["expr"].replace("$__rate_interval", "5m")
            names = _metric_names(expression)
            assert names and names <= exported, (panel["title"], names - exported)
