"""
The parsers of the daemon's option values (each error names its option),
and how C{WSECHO_*} variables map to options.
"""

from __future__ import annotations

import difflib
import getopt
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet import endpoints
from twisted.python import usage

from wsecho.http.policy import authority

# The examples that --help shows, each run by a test: as printed, they must
# work (tests/test_first_touch.py).
LISTEN_EXAMPLES = (
    r"tcp:8181:interface=\:\:1",
    "unix:/run/wsecho.sock",
    "systemd:domain=INET:index=0",
)
ORIGIN_EXAMPLES = ("https://*.example.com", "http://localhost:*", "null")
SUBPROTOCOL_EXAMPLES = ("chat",)
HOST_EXAMPLES = ("echo.example.com",)
PROXY_EXAMPLES = ("1", "10.0.0.0/8,::1")
ENVIRONMENT_EXAMPLES = (
    "WSECHO_PORT=8181",
    "WSECHO_NO_COMPRESSION=1",
    "WSECHO_LISTEN='tcp:8181:interface=127.0.0.1 unix:/run/wsecho.sock'",
)


def coercer(
    option: str, parse: Callable[[str], Any], doc: str, shown: str | None = None
) -> Callable[[str], Any]:
    """
    Wrap C{parse} so that a bad value is reported with the option's name:
    twistd prints only the message of the C{ValueError}. C{--help} shows
    C{shown} after the default (C{doc} if None, nothing if empty), so that
    an option's help says each thing once.
    """

    def coerce(value: str) -> Any:
        try:
            return parse(value)
        except ValueError:
            raise ValueError(f"--{option} {value!r}: {doc}") from None

    coerce.coerceDoc = doc if shown is None else shown  # type: ignore[attr-defined]
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
        return coercer(
            option,
            parse,
            f"a whole number, at least {minimum}.",
            f"At least {minimum}.",
        )
    return coercer(option, parse, "a whole number, 0 for no limit.", "0: no limit.")


def size(option: str) -> Callable[[str], Any]:
    return coercer(
        option, positive_int, "a whole number of bytes, at least 1.", "At least 1."
    )


def timeout(option: str) -> Callable[[str], Any]:
    return coercer(option, seconds, "seconds, 0 (off) or at least 1.", "0: off.")


def host_name(value: str) -> str:
    """
    A name for C{--allowed-host}: a host name or an IP address (IPv6 in
    brackets), without a port; lower-case.
    """
    found = authority(value)
    if found is None or found[1] is not None or not value.strip():
        raise usage.UsageError(
            f"--allowed-host {value!r} is not a host name or address "
            "(echo.example.com, 192.0.2.1, [2001:db8::1]), without a port"
        )
    return value.strip().lower()


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


def from_environment(
    environ: Mapping[str, str],
    names: Sequence[str],
    flags: Sequence[str],
    repeatable: Sequence[str],
    on_command_line: set[str],
    check: Callable[[list[str]], None],
) -> list[str]:
    """
    The arguments that the C{WSECHO_*} variables of options C{names} stand
    for, each checked on its own with C{check} so that an error names the
    variable. An option given on the command line wins over its variable,
    which is then not even read (a repeatable one's values are replaced,
    not added to).
    """
    arguments = []
    for name in names:
        name_of = variable(name)
        value = environ.get(name_of)
        if value is None or name in on_command_line:
            continue
        these = environment_arguments(name_of, name, value, name in flags, repeatable)
        try:
            check(these)
        except (usage.UsageError, ValueError) as e:
            raise usage.UsageError(f"{name_of}: {e}") from None
        arguments += these
    return arguments


def variable(option: str) -> str:
    """
    The environment variable of C{option}: C{WSECHO_MAX_CONNECTIONS}.
    """
    return ENV_PREFIX + option.upper().replace("-", "_")


# Set by the parent of --workers for its workers (wsecho.daemon.workers.pool):
# not options, and not misspelt ones.
WORKER_PREFIX = ENV_PREFIX + "WORKER_"


def unknown_variables(environ: Mapping[str, str], options: Sequence[str]) -> list[str]:
    """
    A warning for each C{WSECHO_*} variable in C{environ} that names none of
    C{options}, with the closest known one: a misspelt variable would
    otherwise be ignored without a word.
    """
    known = {variable(name)[len(ENV_PREFIX) :]: variable(name) for name in options}
    warnings = []
    for name in sorted(environ):
        if (
            not name.startswith(ENV_PREFIX)
            or name.startswith(WORKER_PREFIX)
            or name in known.values()
        ):
            continue
        close = difflib.get_close_matches(name[len(ENV_PREFIX) :], known, n=1)
        hint = f"did you mean {known[close[0]]}?" if close else "see --help"
        warnings.append(f"{name} is not a wsecho variable, ignored: {hint}")
    return warnings


def endpoint_fields(description: str) -> tuple[str, list[str], dict[str, str]]:
    """
    A server endpoint description's type, positional and keyword arguments,
    with Twisted's escapes (C{\\:} is a colon).
    """
    parts, current, escaped = [], "", False
    for char in description:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    kind, rest = parts[0].strip().lower(), parts[1:]
    positional = [p for p in rest if "=" not in p]
    keywords = dict(p.split("=", 1) for p in rest if "=" in p)
    return kind, positional, keywords


def every_address_warning(description: str) -> str | None:
    """
    A warning if C{description} is a TCP or TLS endpoint that names no
    interface: it listens on every address, reachable from other hosts.
    """
    kind, positional, keywords = endpoint_fields(description)
    if kind not in ("tcp", "tcp6", "ssl") or keywords.get("interface"):
        return None
    if len(positional) > 1 and positional[1]:
        return None  # tcp:8181:127.0.0.1, the interface in second place
    loopback = "\\:\\:1" if kind == "tcp6" else "127.0.0.1"
    return (
        f"--listen {description!r} listens on every address, reachable from "
        f"other hosts; add :interface={loopback} to listen on this host only"
    )


def _read(label: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        problem = "no such file"
    except IsADirectoryError:
        problem = "a directory, not a PEM file"
    except PermissionError:
        problem = "not readable (permission denied)"
    except OSError as e:
        problem = f"cannot be read ({e.strerror})"
    raise usage.UsageError(f"{label}{path}: {problem}")


def tls_files(
    certificate: str,
    privkey: str,
    labels: tuple[str, str] = ("--certificate ", "--privkey "),
) -> None:
    """
    Check that C{certificate} holds a PEM certificate (its chain may
    follow) and C{privkey} its PEM private key, without a passphrase; the
    error names the option (C{labels}), the file and what is wrong with it
    (OpenSSL would say C{[('DECODER routines', '', 'unsupported')]}).
    """
    on_cert, on_key = labels
    # Imported here: the health check reads the options, and needs no TLS.
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    certificates = _read(on_cert, certificate)
    key_bytes = _read(on_key, privkey)
    try:
        leaf = x509.load_pem_x509_certificates(certificates)[0]
    except ValueError:
        raise usage.UsageError(
            f"{on_cert}{certificate}: not a PEM certificate"
        ) from None
    try:
        key = serialization.load_pem_private_key(key_bytes, password=None)
    except TypeError:
        raise usage.UsageError(
            f"{on_key}{privkey}: encrypted with a passphrase; wsecho needs the "
            "key without one"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise usage.UsageError(f"{on_key}{privkey}: not a PEM private key") from None

    def public(k: Any) -> bytes:
        return k.public_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )

    if public(key.public_key()) != public(leaf.public_key()):
        raise usage.UsageError(
            f"{on_key}{privkey}: does not match the certificate in {certificate}"
        )


def tls_problem(description: str) -> str | None:
    """
    What is wrong with the key and certificate files of an C{ssl:}
    endpoint description, said as L{tls_files} says it; None if nothing is
    (or it is no C{ssl:} one).
    """
    kind, _, keywords = endpoint_fields(description)
    privkey = keywords.get("privateKey")
    if kind != "ssl" or not privkey:
        return None
    try:
        tls_files(
            keywords.get("certKey", privkey), privkey, ("certKey=", "privateKey=")
        )
    except usage.UsageError as e:
        return str(e)
    return None


def _quoted(value: str) -> str:
    return str(endpoints.quoteStringArgument(value))


def listeners(
    listen: list[str],
    port: int,
    interface: str,
    certificate: str | None,
    privkey: str | None,
) -> list[str]:
    """
    The endpoint descriptions to listen on: those of C{--listen}, or else
    C{--port} on C{--interface}, with TLS if C{--certificate} and
    C{--privkey} name good files.
    """
    if (certificate is None) != (privkey is None):
        given, missing = (
            ("--certificate", "--privkey")
            if privkey is None
            else ("--privkey", "--certificate")
        )
        raise usage.UsageError(f"{given} needs {missing}: TLS takes both files")
    if listen:
        if certificate is not None:
            raise usage.UsageError(
                "--certificate and --privkey serve TLS on --port and --interface; "
                "with --listen, name the files in an ssl: endpoint instead"
            )
        return listen
    if certificate is None or privkey is None:
        return [f"tcp:{port}:interface={_quoted(interface)}"]
    tls_files(certificate, privkey)
    # Absolute paths: SIGHUP reads the files again, maybe after twistd's
    # --rundir has changed the working directory.
    return [
        f"ssl:{port}:interface={_quoted(interface)}"
        f":privateKey={_quoted(os.path.abspath(privkey))}"
        f":certKey={_quoted(os.path.abspath(certificate))}"
    ]


def given_options(options: usage.Options, arguments: list[str]) -> set[str]:
    """
    The options that C{arguments} (the command line) give, by their long
    names, as C{options} itself reads them (C{-p 1}, C{--po=1}).
    """
    try:
        found, _ = getopt.getopt(arguments, options.shortOpt, options.longOpt)
    except getopt.GetoptError:
        return set()  # the parse proper says what is wrong
    synonyms = options.synonyms
    return {synonyms.get(o.lstrip("-"), o.lstrip("-")) for o, _ in found}


def twistd_option_hint(parent: Any, message: str) -> str:
    """
    A hint when the option that wsecho did not recognise is one of twistd's
    (C{parent}), given after C{wsecho}: C{twistd -n wsecho --pidfile=x}.
    """
    # getopt's words, which usage.Options passes on as they are.
    found = re.fullmatch(r"option --?(\S+) not recognized", message)
    if found is None:
        return ""
    unknown = found.group(1)
    longs = [o.rstrip("=") for o in getattr(parent, "longOpt", [])]
    shorts = getattr(parent, "shortOpt", "").replace(":", "")
    if len(unknown) == 1:
        if unknown not in shorts:
            return ""
        shown = f"-{unknown}"
    elif any(name.startswith(unknown) for name in longs):
        shown = f"--{unknown}"
    else:
        return ""
    return (
        f" ({shown} is twistd's: give it before wsecho, as in twistd {shown} ... "
        "wsecho ...)"
    )
