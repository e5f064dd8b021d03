"""
The boundary around the libraries' internals (L{wsecho._compat}): it finds
the installed Twisted and Autobahn as it knows them, says so when a release
changes, and its shortcuts behave as the libraries' own code.
"""

from __future__ import annotations

import pytest

from wsecho import _compat
from wsecho._compat import autobahn, h2, twisted


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
    # Twisted's HTTP/2 has what wsecho's needs (_terminate) from 26.10 on.
    http2 = tuple(int(n) for n in version("twisted").split(".")[:2]) >= (26, 10)
    expected = ([] if strict else ["autobahn handshake"]) + (
        [] if http2 else ["twisted h2"]
    )
    assert _compat.changed() == expected
    assert autobahn.FAST_FRAMES and twisted.TCP_BUFFERS and twisted.TLS_RELOAD


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
    missing = autobahn._missing()
    assert sorted(missing + twisted.MISSING + h2.MISSING) == sorted(
        ["autobahn frames", *before]
    )
    monkeypatch.setattr(autobahn, "MISSING", missing)
    with capturedLogs() as events:
        warn_if_libraries_changed()
    assert [e["shortcuts"] for e in events] == [", ".join(_compat.changed())]


def test_epoll_loop_without_log_context() -> None:
    """
    The epoll loop wsecho installs still hands each ready descriptor to its
    reader, and nothing when nothing is ready, as Twisted's does.
    """
    import socket

    from twisted.internet.epollreactor import EPollReactor

    reactor = EPollReactor()
    assert twisted.poll_without_log_context(reactor)
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


def test_options_are_read_from_the_factory_at_each_connection() -> None:
    """
    Autobahn's options are copied from the factory onto each new
    connection, so a later C{setProtocolOptions} applies to the next one.
    """
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    from support.site import connect_in_memory
    from support.wire import upgrade
    from wsecho.http.site import make_site
    from wsecho.settings import EchoSettings

    site = make_site(EchoSettings(ping_interval=0))
    factory = site.resource.children[b"socket"].factory

    def connected() -> object:
        _, transport = connect_in_memory(site)
        transport.protocol.dataReceived(upgrade("127.0.0.1:8181"))
        protocol = transport.protocol
        protocol.connectionLost(Failure(ConnectionDone()))
        return protocol

    try:
        assert connected().autoPingInterval == 0
        factory.setProtocolOptions(autoPingInterval=7)
        assert connected().autoPingInterval == 7
    finally:
        factory.context.stop()


def test_an_aborted_connection_is_not_read_again() -> None:
    """
    Resuming an aborted TCP connection (a turn or a drained buffer after
    the budget aborted it) leaves it unregistered: registered, its file
    descriptor, closed by connectionLost and reused by the next
    connection, would be read for the dead one.
    """
    import socket

    from twisted.internet import tcp
    from twisted.internet.epollreactor import EPollReactor
    from twisted.internet.protocol import Protocol

    reactor = EPollReactor()
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    connection = tcp.Connection(ours, Protocol(), reactor)
    connection.connected = True  # as tcp.Server is
    try:
        connection.startReading()
        connection.abortConnection()
        assert connection not in reactor.getReaders()
        twisted.resume_reading(connection)
        assert connection not in reactor.getReaders()
    finally:
        reactor.removeAll()
        ours.close()
        theirs.close()
        reactor._poller.close()
