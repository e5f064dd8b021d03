"""
The fixtures the attack tests share: real C{twistd -n wsecho} processes, and
the TLS files an ssl: listener serves.
"""

import gc
import os

import pytest

from support.certs import make_certificates
from support.daemon import start_daemon
from support.h2wire import MemoryH2
from support.wire import assert_echoes


@pytest.fixture
def run(tmp_path):
    """
    Start C{twistd -n wsecho} with the given options on port 0 (or on
    C{listen}, a description with C{{port}} in it); stop it (exit 0) at the
    end of the test, with no traceback in its log.
    """
    daemons = []

    def start(*options: str, listen: str | None = None, warm: bool = True):
        where = ["--listen", listen.format(port=0)] if listen else []
        daemon = start_daemon(tmp_path, *where, *options)
        daemons.append(daemon)
        if warm:
            # What the first echo loads is not what an attack costs.
            assert_echoes(daemon.port, os.urandom(65536))
        return daemon

    yield start
    for daemon in daemons:
        assert daemon.stop() == 0, daemon.whole_log()
        log = daemon.whole_log()
        assert "Traceback" not in log and "Unhandled" not in log, log


@pytest.fixture
def served_certificates(tmp_path):
    """
    A CA, a certificate for localhost and 127.0.0.1 signed by it, and its
    key (L{support.certs.make_certificates}), with C{listen}: an C{ssl:}
    listener on 127.0.0.1 serving them, its port to fill in.
    """
    paths = make_certificates(tmp_path)
    paths["listen"] = (
        "ssl:{port}:interface=127.0.0.1:"
        f"privateKey={paths['key']}:certKey={paths['cert']}"
    )
    return paths


@pytest.fixture(autouse=True)
def _memory_h2_lost():
    """
    The in-memory HTTP/2 connections a test made are lost at its end (their
    timers stop), and collected now, not in a later test that counts live
    protocols (tests/test_release.py).
    """
    yield
    if MemoryH2.lose_all():
        gc.collect()


@pytest.fixture(autouse=True)
def _global_reactor_left_as_found():
    """
    In-memory tests that make a site on the global reactor leave no timer
    of theirs on it (a progress deadline, a heap trim): trial's tests that
    come after would find the reactor unclean.
    """
    from twisted.internet import reactor

    before = set(reactor.getDelayedCalls())
    yield
    for call in reactor.getDelayedCalls():
        if call not in before and call.active():
            call.cancel()
