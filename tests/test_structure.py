"""
The package's shape, as docs/architecture.rst describes it: subpackages in
layers that import only downward, the echo protocol as one subclass of
Autobahn's whose parts own their state, and the libraries' internals in
L{wsecho._compat} alone.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import wsecho

PACKAGE = Path(wsecho.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 600

# The layers, lowest first: a module may import from its own layer and the
# ones before it, never from a later one. The client stands beside the
# server's layers and imports none of them but the root and _compat.
LAYERS: list[tuple[str, ...]] = [
    # The package's root: the version; values and text with no I/O.
    ("wsecho", "wsecho.settings", "wsecho.text"),
    # The libraries' internals.
    ("wsecho._compat",),
    # The WebSocket wire format, bytes with no I/O.
    ("wsecho.wire",),
    # One echo connection, and what connections share.
    ("wsecho.ws",),
    # HTTP: the channel, the site, its resources and pages.
    ("wsecho.http",),
    # The daemon: twistd's options and service, processes, workers.
    ("wsecho.daemon",),
]
CLIENT = "wsecho.client"


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    """
    The index in L{LAYERS} of C{module} (by its longest matching prefix).
    """
    best, index = -1, -1
    for number, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or (
                prefix != "wsecho" and module.startswith(prefix + ".")
            ):
                if len(prefix) > best:
                    best, index = len(prefix), number
    if index < 0:
        raise AssertionError(f"{module} is in no layer")
    return index


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
                known = {_name(p) for p in MODULES}
                for alias in node.names:
                    # "from wsecho.ws import heap" imports a module.
                    if f"{module}.{alias.name}" in known:
                        found.append((f"{module}.{alias.name}", [], node in top))
                    else:
                        found.append((module, [alias.name], node in top))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("wsecho."):
                    found.append((alias.name, [], node in top))
    return found


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_modules_are_not_two_modules(path: Path) -> None:
    """
    No module of the package is over 600 lines.
    """
    assert len(path.read_text().splitlines()) <= MAX_LINES


@pytest.mark.parametrize("path", MODULES, ids=_name)
def test_imports_follow_the_layers(path: Path) -> None:
    """
    A module imports only from its own layer and the ones below it; the
    client imports none of the server's layers but the root and _compat.
    """
    module = _name(path)
    wrong = []
    for imported, _, _ in _imports(path):
        if module.startswith(CLIENT):
            if not (imported.startswith(CLIENT) or _layer(imported) <= 1):
                wrong.append(imported)
        elif imported.startswith(CLIENT):
            wrong.append(imported)
        elif _layer(imported) > _layer(module):
            wrong.append(imported)
    assert wrong == []


def test_the_layer_check_sees_an_upward_import(tmp_path: Path) -> None:
    """
    The layer check finds an import from a higher layer (here the wire
    format importing the protocol).
    """
    assert _layer("wsecho.wire.frames") < _layer("wsecho.ws.protocol")
    assert _layer("wsecho.settings") == 0
    assert _layer("wsecho.daemon.workers.pool") == len(LAYERS) - 1


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


def test_the_health_check_imports_no_server() -> None:
    """
    C{python -m wsecho.daemon.healthcheck} imports neither twisted.web nor
    Autobahn: it only asks the daemon over HTTP.
    """
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, wsecho.daemon.healthcheck; print(' '.join(sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    server = [
        m
        for m in loaded
        if m.startswith(
            ("twisted.web", "autobahn.websocket", "autobahn.twisted", "wsecho.ws")
        )
    ]
    assert server == []


def _classes() -> list[tuple[str, ast.ClassDef]]:
    return [
        (_name(p), node)
        for p in MODULES
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.ClassDef)
    ]


def test_no_mixins_or_type_checking_bases() -> None:
    """
    No class of the package has a base chosen under C{TYPE_CHECKING}, and
    none needs a C{type: ignore[misc]} on its definition: no mixin pretends to
    be another class.
    """
    found = []
    for path in MODULES:
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.ClassDef):
                head = lines[node.lineno - 1]
                if "type: ignore[misc]" in head:
                    found.append(f"{_name(path)}:{node.name}")
            if (
                isinstance(node, ast.If)
                and getattr(node.test, "id", None) == "TYPE_CHECKING"
            ):
                for statement in node.body:
                    if isinstance(statement, ast.Assign) and any(
                        getattr(t, "id", "").startswith("_Base")
                        for t in statement.targets
                    ):
                        found.append(f"{_name(path)}:{statement.lineno}")
    assert found == []


def test_the_echo_protocol_has_one_base() -> None:
    """
    The echo protocol subclasses Autobahn's server protocol (through
    L{wsecho._compat.autobahn.ServerProtocol}) and nothing else; its parts
    are objects of their own.
    """
    from autobahn.twisted.websocket import WebSocketServerProtocol

    from wsecho._compat.autobahn import ServerProtocol
    from wsecho.ws.protocol import EchoServerProtocol

    assert EchoServerProtocol.__bases__ == (ServerProtocol,)
    assert ServerProtocol.__bases__ == (WebSocketServerProtocol,)
    ours = [c for c in EchoServerProtocol.__mro__ if c.__module__.startswith("wsecho")]
    assert ours == [EchoServerProtocol, ServerProtocol]


def test_parts_write_only_their_own_attributes() -> None:
    """
    In the echo connection's layer, a class writes attributes of C{self}
    only, never another object's (C{part.attribute = ...}), but for the
    protocol's own hand-over of its client's address by the factory.
    """
    allowed = {("wsecho.ws.factory", "client_address")}
    found = []
    for path in MODULES:
        module = _name(path)
        if not module.startswith("wsecho.ws."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            for target in targets:
                elements = target.elts if isinstance(target, ast.Tuple) else [target]
                for t in elements:
                    if (
                        isinstance(t, ast.Attribute)
                        and isinstance(t.value, ast.Name)
                        and t.value.id not in ("self", "cls")
                        and (module, t.attr) not in allowed
                    ):
                        found.append(f"{module}:{t.lineno} {t.value.id}.{t.attr}")
    assert found == []


# --- the libraries' public API ----------------------------------------------------


def _autobahn_names() -> tuple[set[str], set[str]]:
    """
    Every name an Autobahn protocol or factory has (its classes', and its
    instances' once connected), and those of them that are its public API:
    its interfaces, its protocol options and the negotiated values its
    documentation gives.
    """
    from autobahn.twisted.websocket import (
        WebSocketClientFactory,
        WebSocketClientProtocol,
        WebSocketServerFactory,
        WebSocketServerProtocol,
    )
    from autobahn.websocket import interfaces
    from autobahn.websocket.compress import PerMessageDeflate
    from twisted.internet.error import ConnectionDone
    from twisted.internet.testing import StringTransport
    from twisted.python.failure import Failure

    every: set[str] = set()
    for cls in (
        WebSocketServerProtocol,
        WebSocketClientProtocol,
        WebSocketServerFactory,
        WebSocketClientFactory,
        PerMessageDeflate,
    ):
        for klass in cls.__mro__:
            if klass.__module__.startswith("autobahn"):
                every.update(vars(klass))
    factory = WebSocketServerFactory()
    factory.protocol = WebSocketServerProtocol
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(StringTransport())
    every.update(vars(protocol), vars(factory))
    # Lost, it cancels its opening-handshake timer.
    protocol.connectionLost(Failure(ConnectionDone()))
    every = {n for n in every if not n.startswith("__")}

    public = {
        name
        for interface in (
            interfaces.IWebSocketChannel,
            interfaces.IWebSocketChannelFrameApi,
            interfaces.IWebSocketChannelStreamingApi,
            interfaces.IWebSocketServerChannelFactory,
            interfaces.IWebSocketClientChannelFactory,
        )
        for name in vars(interface)
        if not name.startswith("_")
    }
    # The options setProtocolOptions takes are attributes of both.
    public.update(
        n for n in WebSocketServerFactory.setProtocolOptions.__code__.co_varnames
    )
    public.update(
        n for n in WebSocketClientFactory.setProtocolOptions.__code__.co_varnames
    )
    public.update(
        # A connection's negotiated values and its request (Autobahn's
        # documentation of onConnect and onOpen).
        [
            "peer",
            "http_headers",
            "http_request_path",
            "http_request_uri",
            "http_request_params",
            "websocket_version",
            "websocket_protocol_in_use",
            "websocket_extensions_in_use",
            "perMessageCompressionAccept",
            "perMessageCompressionOffers",
            "factory",
            "transport",
            "protocol",
            "reactor",
            "buildProtocol",
            "log",
            # The PerMessageDeflate parameters, as negotiated.
            "server_no_context_takeover",
            "client_no_context_takeover",
            "server_max_window_bits",
            "client_max_window_bits",
            "mem_level",
            "EXTENSION_NAME",
            "start_compress_message",
            "compress_message_data",
            "end_compress_message",
            "start_decompress_message",
            "decompress_message_data",
            "end_decompress_message",
            # Twisted's IProtocol and IProtocolFactory, which Autobahn's
            # Twisted classes implement.
            "makeConnection",
            "connectionMade",
            "dataReceived",
            "connectionLost",
            "startFactory",
            "stopFactory",
            "doStart",
            "doStop",
            "noisy",
            # The fields of a ConnectionRequest (onConnect's argument),
            # which the factory's URL parts share names with.
            "host",
            "port",
            "path",
            "url",
            "headers",
            "protocols",
            "extensions",
            "params",
            "origin",
        ]
    )
    # Twisted's interfaces, which Autobahn's Twisted protocols implement or
    # are given (their transport, its producer).
    from twisted.internet import interfaces as twisted_interfaces

    for name in (
        "IProtocol",
        "IProtocolFactory",
        "ITCPTransport",
        "IConsumer",
        "IPushProducer",
    ):
        public.update(getattr(twisted_interfaces, name).names(all=True))
    public.add("connected")  # Twisted's transports and protocols
    return every, public


def _used_names(path: Path) -> set[tuple[str, int]]:
    """
    The attribute names C{path} reads or writes, and the names it passes to
    C{getattr}, C{setattr} and C{hasattr}, with their line numbers.
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            found.add((node.attr, node.lineno))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) in ("getattr", "setattr", "hasattr")
            and len(node.args) > 1
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            found.add((node.args[1].value, node.lineno))
        elif isinstance(node, ast.FunctionDef) and node.name.startswith("_"):
            # Overriding a library's private method is using it.
            found.add((node.name, node.lineno))
    return found


# Names wsecho gives its own objects that Autobahn's objects happen to have
# too; where wsecho uses them, they are wsecho's.
OWN_NAMES = {
    # Every wsecho class's own logger (STYLE.md: never .log, Autobahn's).
    "_log",
    # The worker pool's line reader's own buffer.
    "_buffer",
    # The client's messages (Message.data); Autobahn's parser buffer has
    # the same name.
    "data",
}


def test_only_public_library_names_outside_compat() -> None:
    """
    Outside L{wsecho._compat}, wsecho uses only the public names of
    Autobahn's objects (its interfaces, options and documented values) and
    no private name (C{_something}) of Twisted's or Autobahn's.
    """
    autobahn_names, public = _autobahn_names()
    private = autobahn_names - public - OWN_NAMES
    found = []
    for path in MODULES:
        if "_compat" in path.parts:
            continue
        for name, line in sorted(_used_names(path)):
            if name in OWN_NAMES:
                continue
            if name in private or (
                name.startswith("_")
                and not name.startswith("__")
                and name in autobahn_names | _twisted_private()
            ):
                found.append(f"{_name(path)}:{line}: {name}")
    assert found == []


def _twisted_private() -> set[str]:
    """
    The private names of the Twisted classes wsecho builds on or reaches.
    """
    from twisted.internet import endpoints, tcp
    from twisted.internet.abstract import FileDescriptor
    from twisted.internet.epollreactor import EPollReactor
    from twisted.protocols.tls import TLSMemoryBIOProtocol
    from twisted.web import _http2, http, server

    names: set[str] = set()
    for cls in (
        tcp.Connection,
        tcp.Server,
        FileDescriptor,
        EPollReactor,
        TLSMemoryBIOProtocol,
        http.HTTPChannel,
        server.Request,
        server.Site,
        endpoints.SSL4ServerEndpoint,
        _http2.H2Connection,
        _http2.H2Stream,
    ):
        for klass in cls.__mro__:
            names.update(n for n in vars(klass) if n.startswith("_"))
    for instance in (http.HTTPChannel(), FileDescriptor()):
        names.update(n for n in vars(instance) if n.startswith("_"))
    # FileDescriptor's buffer, public by name only (undocumented).
    names.update(["dataBuffer", "offset", "bufferSize"])
    return names


def test_the_public_name_check_sees_a_private_use(tmp_path: Path) -> None:
    """
    The check finds a private Autobahn name (C{failedByMe}) and a private
    Twisted one (C{_tempDataLen}) used outside _compat.
    """
    autobahn_names, public = _autobahn_names()
    assert "failedByMe" in autobahn_names - public
    assert "trafficStats" in autobahn_names - public
    assert "sendMessage" in public
    assert "_tempDataLen" in _twisted_private()
    module = tmp_path / "module.py"
    module.write_text(
        "def f(p):\n    return p.failedByMe or p.transport._tempDataLen\n"
    )
    assert {n for n, _ in _used_names(module)} >= {"failedByMe", "_tempDataLen"}
