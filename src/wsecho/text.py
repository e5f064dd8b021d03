"""
Text from clients, made safe to write into a log line or a status line.
"""

from __future__ import annotations


def printable(text: str) -> str:
    """
    C{text} with its control characters (ESC, BEL, CR, bidi overrides...)
    escaped: what a client sends must not drive the terminal of whoever
    reads the text log.
    """
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
        for c in text
    )
