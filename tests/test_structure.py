"""
The package's shape, as docs/architecture.rst describes it: one job per
module, imports downward only, and the libraries' private names in
L{wsecho._compat} alone.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import wsecho
from wsecho import _compat

PACKAGE = Path(wsecho.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 400

# The private names of Twisted and Autobahn that wsecho relies on; only
# _compat may spell them.
PRIVATE = (
    "_tempDataLen",
    "dataBuffer",
    "_dataReceived",
    "_perMessageCompress",
    "current_frame",
    "inside_message",
    "CONFIG_ATTRS",
    "_connectionMade",
    "_cancelAutoPingTimeoutCall",
    "_max_message_size_exceeded",
    "_sslContextFactory",
    "_networkProducer",
    "_waitingForTransport",
    "CLOSE_STATUS_CODES_ALLOWED",
    "_doReadOrWrite",
    "_selectables",
    "_poller",
    "_dataBuffer",
)


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str], bool]]:
    """
    The wsecho modules C{path} imports, the names it takes from each, and
    whether the import is at module level (not deferred into a function).
    Imports for type checking only (C{if TYPE_CHECKING:}) do not count.
    """
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.If)
            and getattr(node.test, "id", None) == "TYPE_CHECKING"
        ):
            node.body = []
    package = (
        _name(path) if path.name == "__init__.py" else _name(path).rpartition(".")[0]
    )
    top = set(tree.body)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == "wsecho" or module.startswith("wsecho."):
                if module == "wsecho" or (module == package and not node.module):
                    for alias in node.names:
                        found.append((f"{module}.{alias.name}", [], node in top))
                else:
                    found.append((module, [a.name for a in node.names], node in top))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("wsecho."):
                    found.append((alias.name, [], node in top))
    return found


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_modules_are_short(path: Path) -> None:
    """
    No module of the package is over 400 lines.
    """
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_imports_go_downward() -> None:
    """
    The modules import each other without a cycle, counting imports deferred
    into functions too.
    """
    known = {_name(p) for p in MODULES}
    graph = {
        _name(p): {m for m, _, _ in _imports(p) if m in known and m != _name(p)}
        for p in MODULES
    }
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            pytest.fail(
                "import cycle: " + " -> ".join([*path[path.index(module) :], module])
            )
        if module in done:
            return
        for other in sorted(graph[module]):
            visit(other, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_no_private_name_crosses_modules() -> None:
    """
    No module takes a private name (C{_something}) from another wsecho
    module.
    """
    crossing = [
        f"{_name(p)}: {name} from {module}"
        for p in MODULES
        for module, names, _ in _imports(p)
        for name in names
        if name.startswith("_") and name != "__version__"
    ]
    assert crossing == []


def test_library_internals_in_compat_only() -> None:
    """
    The private names of Twisted and Autobahn wsecho uses are spelled in
    L{wsecho._compat} and nowhere else in the package.
    """
    pattern = re.compile(r"\b(" + "|".join(PRIVATE) + r")\b")
    elsewhere = [
        f"{_name(p)}:{number}: {line.strip()}"
        for p in MODULES
        if "_compat" not in p.parts
        for number, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line.split("#")[0])
    ]
    assert elsewhere == []


def test_compat_finds_the_installed_libraries_as_it_knows_them() -> None:
    """
    With the Twisted and Autobahn installed (the lowest and the newest
    supported, in tox), every shortcut's private names are where _compat
    looks for them, so no fall-back is in use.
    """
    from importlib.metadata import version

    # Autobahn's head parser is strict from 26.11.1 on; before, the upgrade
    # at once is off (twisted.web reads every request).
    strict = tuple(int(n) for n in version("autobahn").split(".")[:3]) >= (26, 11, 1)
    assert _compat.changed() == ([] if strict else ["handshake"])
    assert _compat.FAST_FRAMES and _compat.TCP_BUFFERS and _compat.TLS_RELOAD


def test_compat_notices_a_renamed_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Where a library release drops a name a shortcut needs (here Autobahn's
    C{_dataReceived}), the check names that shortcut, and the start-up
    warning says so.
    """
    from autobahn.websocket.protocol import WebSocketProtocol
    from twisted.logger import capturedLogs

    from wsecho.daemon.service import warn_if_libraries_changed

    before = _compat.changed()
    monkeypatch.delattr(WebSocketProtocol, "_dataReceived")
    missing = _compat._missing()
    assert missing == sorted(["frames", *before])
    monkeypatch.setattr(_compat, "MISSING", missing)
    with capturedLogs() as events:
        warn_if_libraries_changed()
    assert [e["shortcuts"] for e in events] == [", ".join(missing)]


def test_epoll_loop_without_log_context() -> None:
    """
    The epoll loop wsecho installs still hands each ready descriptor to its
    reader, and nothing when nothing is ready, as Twisted's does.
    """
    import socket

    from twisted.internet.epollreactor import EPollReactor

    reactor = EPollReactor()
    assert _compat.poll_without_log_context(reactor)
    ours, theirs = socket.socketpair()
    events: list[str] = []

    class Reader:
        def fileno(self) -> int:
            return ours.fileno()

        def doRead(self) -> None:
            events.append(ours.recv(10).decode() or "eof")

        def connectionLost(self, reason: object) -> None:
            events.append("lost")  # not expected here

        def logPrefix(self) -> str:
            return "reader"

    reader = Reader()
    try:
        reactor.addReader(reader)
        theirs.send(b"ready")
        reactor.doIteration(1)
        assert events == ["ready"]
        reactor.doIteration(0)
        assert events == ["ready"]  # nothing more was ready
    finally:
        reactor.removeReader(reader)
        ours.close()
        theirs.close()
        reactor._poller.close()
