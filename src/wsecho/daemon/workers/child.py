"""
A worker process of C{--workers N}: C{python -m wsecho.daemon.workers.child <wsecho
options>}, started by L{wsecho.daemon.workers.pool.WorkerPool}. It parses the options as
twistd did, logs to its parent and serves the echo on the listeners it was
passed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from twisted.logger import globalLogBeginner, jsonFileLogObserver

from wsecho.daemon.options import Options
from wsecho.daemon.workers.pool import CONTROL_VARIABLE, FDS_VARIABLE, worker_service


def main(argv: Sequence[str] | None = None) -> None:
    """
    A worker: C{python -m wsecho.daemon.workers.child <wsecho options>}, started by the
    parent with its listeners as the descriptors named in
    C{WSECHO_WORKER_FDS}.
    """
    from twisted.internet import reactor

    arguments = list(sys.argv[1:] if argv is None else argv)
    fds = [int(fd) for fd in os.environ.pop(FDS_VARIABLE).split(",")]
    control = int(os.environ.pop(CONTROL_VARIABLE))
    # The parent checked the --listen descriptions; a systemd one would not
    # parse here (LISTEN_PID names the parent).
    options = Options(check_listen=False)
    options.parseOptions(arguments)
    # Log to the parent, as JSON lines on stdout.
    globalLogBeginner.beginLoggingTo(
        [jsonFileLogObserver(sys.stdout)], redirectStandardIO=False
    )
    service = worker_service(options, fds, reactor, control)
    service.privilegedStartService()
    service.startService()
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()


if __name__ == "__main__":
    main()
