"""
What the tests share: deadlines and polling, system programs, and (in its
modules) the wire by hand, real daemons, in-process sites and certificates.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from twisted.internet import reactor, task

# Long enough for a loaded CI machine; a deadline, never a pace.
DEADLINE = 30.0
# Where the installed wheel's scripts are (twistd, wsecho-client).
BIN = Path(sys.executable).parent


async def poll(condition, deadline=DEADLINE, interval=0.01):
    """
    Wait until C{condition()} is true, failing the test past C{deadline}.
    """
    waited = 0.0
    while not condition():
        if waited > deadline:
            raise AssertionError(f"still waiting for {condition} after {deadline}s")
        await task.deferLater(reactor, interval, lambda: None)
        waited += interval


def poll_until(condition, deadline: float = DEADLINE, interval: float = 0.05):
    """
    Outside the reactor: wait until C{condition()} is true, failing past
    C{deadline} seconds.
    """
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"still waiting for {condition} after {deadline}s")
        time.sleep(interval)


def require(program: str) -> str:
    """
    The path of a system program a test needs (Debian's haproxy, chromium,
    ...). Missing, the test is skipped, or fails where the project's setup
    should have installed it (WSECHO_REQUIRE_TOOLS=1, as .ci/run sets).
    """
    import os
    import shutil

    import pytest

    path = shutil.which(program)
    if path is None:
        if os.environ.get("WSECHO_REQUIRE_TOOLS") == "1":
            pytest.fail(f"{program} is not installed (see .ci/run)")
        pytest.skip(f"{program} is not installed")
    return path


def wait_until_stalled(progress, total: int, quiet: float = 1.0) -> None:
    """
    Poll C{progress()} until it reaches C{total} or has not moved for
    C{quiet} seconds; fail past the deadline.
    """
    end = time.monotonic() + DEADLINE
    last, since = progress(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.05)
        now = progress()
        if now >= total:
            return
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
    raise AssertionError(f"still progressing after {DEADLINE}s: {last} of {total}")
