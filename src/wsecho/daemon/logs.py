"""
A JSON log for log collectors: one object per line on standard output,
with each event's named fields (peer, client, origin, code, reason,
duration, bytes, ...) as keys of their own.

    twistd --logger wsecho.daemon.logs.json -n wsecho

And a limit on repeated events, in front of whichever observers twistd
logs to: a flood of one line (Twisted's EMFILE recovery, refusals under
attack) becomes a few lines and a count.
"""

from __future__ import annotations

import json as _json
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

from twisted.internet.task import LoopingCall
from twisted.logger import (
    ILogObserver,
    LogLevel,
    LogPublisher,
    formatEvent,
    globalLogPublisher,
)
from zope.interface import implementer

from wsecho._compat.twisted import log_observers

# Keys that are Twisted's bookkeeping, or that the legacy log system adds.
_SKIP = {"format", "message", "isError", "system", "time", "why", "failure"}


@implementer(ILogObserver)
class JSONObserver:
    """
    Write each event as one line of JSON: time, level, namespace, the
    formatted message, then the event's own fields when they are plain
    values (strings, numbers, booleans, null), and a failure's traceback.
    """

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        record: dict[str, Any] = {
            "time": datetime.fromtimestamp(event.get("log_time", 0), UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": level.name if level is not None else "info",
            "namespace": event.get("log_namespace", "-"),
            "message": formatEvent(event),
        }
        for key, value in event.items():
            if key.startswith("log_") or key in _SKIP or key in record:
                continue
            if value is None or isinstance(value, str | int | float | bool):
                record[key] = value
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        self._out.write(_json.dumps(record, ensure_ascii=False) + "\n")
        self._out.flush()


def json() -> JSONObserver:
    """
    The observer factory for C{twistd --logger}: JSON on standard output.
    """
    return JSONObserver(sys.stdout)


# Past BURST events of one kind (namespace, level, format) in INTERVAL
# seconds, the rest of the interval's are counted, not written: at the
# descriptor limit, Twisted's accept() logs three lines per connection it
# closes (EMFILE recovery), 145,000 lines in 30 s.
#
# Not wsecho's own records (info and below): a line per request, per
# WebSocket opened and closed, per refusal, which it writes on purpose, as
# an access log does, and counts in /metrics too.
INTERVAL = 5.0
BURST = 10
# Kinds followed at once; past it, a new kind is written untracked (a
# stream of distinct lines, such as the access log's, is no repeat).
MAX_KINDS = 1024


def _record(event: dict[str, Any]) -> bool:
    level = event.get("log_level")
    return str(event.get("log_namespace", "")).startswith("wsecho.") and (
        level is None or level <= LogLevel.info
    )


class _Window:
    __slots__ = ("sample", "start", "suppressed", "written")

    def __init__(self, start: float) -> None:
        self.start = start
        self.written = 0
        self.suppressed = 0
        self.sample: dict[str, Any] | None = None


@implementer(ILogObserver)
class RepeatLimiter:
    """
    Pass events on to C{observer}, but at most C{burst} of one kind (same
    namespace, level and format) per C{interval} seconds; when the interval
    ends (L{flush}), one event says how many were left out. wsecho's own
    records pass (see L{BURST}). Events may come from any thread.
    """

    def __init__(
        self,
        observer: ILogObserver,
        interval: float = INTERVAL,
        burst: int = BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._observer = observer
        self.interval = interval
        self.burst = burst
        self._clock = clock
        self._windows: dict[tuple[Any, ...], _Window] = {}
        self._mutex = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        if "repeats_suppressed" in event or _record(event):
            # A worker's own count, or one of wsecho's records.
            self._observer(event)
            return
        kind = (
            event.get("log_namespace"),
            event.get("log_level"),
            event.get("log_format"),
        )
        with self._mutex:
            now = self._clock()
            window = self._windows.get(kind)
            ended = None
            if window is not None and now - window.start >= self.interval:
                ended, window = window, None
                del self._windows[kind]
            if window is None and len(self._windows) >= MAX_KINDS:
                self._sweep(now)
            if window is None and len(self._windows) < MAX_KINDS:
                window = self._windows[kind] = _Window(now)
            passed = window is None or window.written < self.burst
            if window is not None:
                if passed:
                    window.written += 1
                else:
                    window.suppressed += 1
                    window.sample = event
        if ended is not None:
            self._summarise(ended)
        if passed:
            self._observer(event)

    def _sweep(self, now: float) -> list[_Window]:
        # Must hold the lock.
        ended = [k for k, w in self._windows.items() if now - w.start >= self.interval]
        return [self._windows.pop(k) for k in ended]

    def flush(self, everything: bool = False) -> None:
        """
        Say how many events of each kind were left out in the intervals
        that have ended (all of them with C{everything}, at the end).
        """
        with self._mutex:
            if everything:
                ended = list(self._windows.values())
                self._windows.clear()
            else:
                ended = self._sweep(self._clock())
        for window in ended:
            self._summarise(window)

    def _summarise(self, window: _Window) -> None:
        sample = window.sample
        if not window.suppressed or sample is None:
            return
        summary: dict[str, Any] = {
            key: sample[key]
            for key in ("log_namespace", "log_level", "log_system", "worker")
            if key in sample
        }
        summary.update(
            log_format="suppressed {repeats_suppressed} repeats in {interval:g} s "
            "of: {repeated}",
            log_time=time.time(),
            repeats_suppressed=window.suppressed,
            interval=self.interval,
            repeated=sample.get("log_format") or formatEvent(sample),
        )
        self._observer(summary)

    def start(self, reactor: Any) -> None:
        """
        Flush every interval on C{reactor}, and once more when it stops.
        """
        LoopingCall(self.flush).start(self.interval, now=False).addErrback(
            lambda _: None
        )
        reactor.addSystemEventTrigger("after", "shutdown", self.flush, True)


def limit_repeats(reactor: Any) -> RepeatLimiter | None:
    """
    Put a L{RepeatLimiter} in front of the observers that twistd began
    logging to (text, JSON, syslog: whichever it was told); wsecho does
    not begin logging itself. L{None} where Twisted does not say which
    observers those are.
    """
    observers = log_observers(globalLogPublisher)
    if not observers:
        return None
    limiter = RepeatLimiter(LogPublisher(*observers))
    for observer in observers:
        globalLogPublisher.removeObserver(observer)
    globalLogPublisher.addObserver(limiter)
    limiter.start(reactor)
    return limiter
