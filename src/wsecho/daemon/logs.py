"""
A JSON log for log collectors: one object per line on standard output,
with each event's named fields (peer, client, origin, code, reason,
duration, bytes, ...) as keys of their own.

    twistd --logger wsecho.daemon.logs.json -n wsecho
"""

from __future__ import annotations

import json as _json
import sys
from datetime import UTC, datetime
from typing import IO, Any

from twisted.logger import ILogObserver, formatEvent
from zope.interface import implementer

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
