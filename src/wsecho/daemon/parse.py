"""
The parsers of the daemon's option values (each error names its option),
and how C{WSECHO_*} variables map to options.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.python import usage


def coercer(option: str, parse: Callable[[str], Any], doc: str) -> Callable[[str], Any]:
    """
    Wrap C{parse} so that a bad value is reported with the option's name:
    twistd prints only the message of the C{ValueError}.
    """

    def coerce(value: str) -> Any:
        try:
            return parse(value)
        except ValueError:
            raise ValueError(f"--{option} {value!r}: {doc}") from None

    coerce.coerceDoc = doc  # type: ignore[attr-defined]
    return coerce


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def seconds(value: str) -> float:
    number = float(value)
    # Autobahn runs these timers in one-second buckets, rounding down: a
    # shorter time could fire at once.
    if not (number == 0 or 1 <= number < float("inf")):
        raise ValueError(value)
    return number


def count(option: str, minimum: int = 0) -> Callable[[str], Any]:
    def parse(value: str) -> int:
        number = int(value)
        if number < minimum:
            raise ValueError(value)
        return number

    if minimum:
        return coercer(option, parse, f"a whole number, at least {minimum}.")
    return coercer(option, parse, "a whole number, 0 for no limit.")


def size(option: str) -> Callable[[str], Any]:
    return coercer(option, positive_int, "a whole number of bytes, at least 1.")


def timeout(option: str) -> Callable[[str], Any]:
    return coercer(option, seconds, "seconds, 0 (off) or at least 1.")


def shutdown_code(value: str) -> int:
    if value.strip() not in ("1001", "1012"):
        raise ValueError(value)
    return int(value)


def forwarded_header(value: str) -> str:
    if value.lower() not in ("x-forwarded-for", "forwarded"):
        raise ValueError(value)
    return value.lower()


ENV_PREFIX = "WSECHO_"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def environment_arguments(
    variable: str, name: str, value: str, is_flag: bool, repeatable: Sequence[str]
) -> list[str]:
    """
    The command-line arguments that C{variable}, set to C{value}, stands for
    (option C{name}); a flag takes a yes or a no.
    """
    if is_flag:
        if value.strip().lower() in _TRUE:
            return [f"--{name}"]
        if value.strip().lower() in _FALSE:
            return []
        raise usage.UsageError(
            f"{variable}={value!r}: set it to 1 (or true, yes, on) or 0 "
            "(false, no, off)"
        )
    if name in repeatable:
        return [a for v in value.split() for a in (f"--{name}", v)]
    return [f"--{name}", value]


def variable(option: str) -> str:
    """
    The environment variable of C{option}: C{WSECHO_MAX_CONNECTIONS}.
    """
    return ENV_PREFIX + option.upper().replace("-", "_")
