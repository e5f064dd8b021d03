"""
A worker process of C{--workers N}: C{python -m wsecho.daemon.workers.child <wsecho
options>}, started by L{wsecho.daemon.workers.pool.WorkerPool}. It parses the options as
twistd did, logs to its parent and serves the echo on the listeners it was
passed, and exits when its parent dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from twisted.logger import Logger, globalLogBeginner, jsonFileLogObserver

from wsecho.daemon.logs import RepeatLimiter
from wsecho.daemon.options import Options
from wsecho.daemon.workers.pool import (
    CONTROL_VARIABLE,
    FDS_VARIABLE,
    PARENT_VARIABLE,
    worker_service,
)

_log = Logger()

# A worker whose parent died (SIGKILL, the OOM killer) closes its clients
# (with the shutdown close code) for up to this long, then exits: the port
# must be free for the daemon that a supervisor starts again, and nothing
# is left to give slots or gather metrics.
PARENT_GONE_GRACE = 1.0
# Past the grace, the kernel ends the worker (SIGALRM, whose default action
# is to terminate), even if its reactor is stuck.
_HARD_EXIT = PARENT_GONE_GRACE + 0.5
# prctl(2): the signal a process gets when its parent dies.
_PR_SET_PDEATHSIG = 1
_PARENT_DIED = signal.SIGUSR1


def signal_when_parent_dies(number: int) -> bool:
    """
    Ask Linux to send this process C{number} when its parent dies
    (C{PR_SET_PDEATHSIG}); L{False} where it cannot (another system): the
    end of the pipe from the parent then says so alone.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return bool(prctl(_PR_SET_PDEATHSIG, number, 0, 0, 0) == 0)


class Orphaned:
    """
    What a worker does when its parent is gone, however it learns it (the
    signal, or its link's end): once, stop at once with a short grace.
    """

    def __init__(self, parent: int, reactor: Any) -> None:
        self.parent = parent
        self._reactor = reactor
        self._service: Any = None
        self._done = False

    def serve(self, service: Any) -> None:
        self._service = service

    def on_signal(self, number: int, frame: Any) -> None:
        self._deadline()
        self._reactor.callFromThread(self.gone)

    def _deadline(self) -> None:
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        signal.setitimer(signal.ITIMER_REAL, _HARD_EXIT)

    def gone(self) -> None:
        service = self._service
        if self._done or service is None or not service.running:
            return  # already stopping: the link ends with the process
        self._done = True
        self._deadline()
        _log.warn(
            "the parent (pid {parent}) is gone: closing clients and exiting "
            "within {grace} s",
            parent=self.parent,
            grace=PARENT_GONE_GRACE,
        )
        service.cut_short(PARENT_GONE_GRACE)
        self._reactor.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """
    A worker: C{python -m wsecho.daemon.workers.child <wsecho options>}, started by the
    parent with its listeners as the descriptors named in
    C{WSECHO_WORKER_FDS}.
    """
    from twisted.internet import reactor

    parent = int(os.environ.pop(PARENT_VARIABLE, "0")) or os.getppid()
    orphaned = Orphaned(parent, reactor)
    signal.signal(_PARENT_DIED, orphaned.on_signal)
    if signal_when_parent_dies(_PARENT_DIED) and os.getppid() != parent:
        raise SystemExit(1)  # it died while this one started
    arguments = list(sys.argv[1:] if argv is None else argv)
    fds = [int(fd) for fd in os.environ.pop(FDS_VARIABLE).split(",")]
    control = int(os.environ.pop(CONTROL_VARIABLE))
    # The parent checked the --listen descriptions; a systemd one would not
    # parse here (LISTEN_PID names the parent).
    options = Options(check_listen=False)
    options.parseOptions(arguments)
    # Log to the parent, as JSON lines on stdout, repeats limited.
    limiter = RepeatLimiter(jsonFileLogObserver(sys.stdout))
    globalLogBeginner.beginLoggingTo([limiter], redirectStandardIO=False)
    limiter.start(reactor)
    service = worker_service(options, fds, reactor, control, orphaned.gone)
    orphaned.serve(service)
    service.privilegedStartService()
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


if __name__ == "__main__":
    main()
