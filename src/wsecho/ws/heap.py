"""
Giving memory back to the system once clients have let go of it, where the
C library allows (glibc); elsewhere these do nothing.

What the memory budget counts is freed when a connection closes, but
glibc keeps freed memory for reuse: 300 closed connections that had each
held 15 MiB left 120 MiB resident, for good.
"""

from __future__ import annotations

import ctypes
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime

# glibc's M_MMAP_THRESHOLD (malloc.h), and the size past which wsecho wants
# an allocation mapped on its own.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1024 * 1024


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt, libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None  # not glibc
    return libc


_LIBC = _libc()


def map_large_buffers() -> None:
    """
    Keep allocations over 1 MiB (unfinished large messages) in mappings of
    their own, which go back to the system when freed. glibc does so past
    a threshold, but raises it (up to 32 MiB) each time such a mapping is
    freed, after which large messages come from the heap. The 256 KiB reads
    stay on the heap: a mapping per read would cost every small echo.
    """
    if _LIBC is not None:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def trim() -> None:
    """
    Give the free pages of the heap back to the system (malloc_trim).
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


# How long after a large buffer was freed the heap is trimmed.
TRIM_DELAY = 1.0


class Trimmer:
    """
    Trims the heap soon after large buffers were let go of, at most once a
    second (a trim walks the heap).
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._call: IDelayedCall | None = None

    def soon(self) -> None:
        if self._call is None:
            self._call = self._clock.callLater(TRIM_DELAY, self._trim)

    def _trim(self) -> None:
        self._call = None
        trim()

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
