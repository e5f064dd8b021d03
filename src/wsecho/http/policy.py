"""
Who may connect, and who is connecting: the names this daemon answers to
(against DNS rebinding), the origin policy (the seed's CheckOrigin,
same-origin by default) and the trust in proxies that forward the client's
address. Decisions over header values, with no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from autobahn.util import wildcards2patterns

from wsecho.text import printable

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _host_and_port(netloc: str, scheme: str) -> tuple[str, int | None] | None:
    """
    Split a Host header or an origin's authority into a lower-case host name
    and a port (the scheme's default when absent); L{None} when malformed.
    """
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname, port if port is not None else _DEFAULT_PORTS.get(scheme)


# A Host header or an authority: a name or an IPv4 address, or an IPv6
# address in brackets, and a port. Nothing else (no user info, no spaces).
_AUTHORITY = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+))(?::([0-9]{1,5}))?")

# What a page served from this host calls it. A rebinding page's name is
# one its attacker owns, resolved to 127.0.0.1: never one of these.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


# Cached: a handshake reads its Host, and most clients send one of a few.
@functools.lru_cache(maxsize=1024)
def authority(value: str) -> tuple[str, int | None] | None:
    """
    The lower-case name (without a final dot) and the port of a Host
    header or of a target's authority (C{localhost:8181}, C{[::1]},
    C{Example.COM.}); L{None} when it is neither.
    """
    found = _AUTHORITY.fullmatch(value.strip())
    if found is None:
        return None
    name = (found.group(1) or found.group(2)).lower().rstrip(".")
    return name, int(found.group(3)) if found.group(3) else None


@functools.lru_cache(maxsize=256)
def is_loopback(address: str | None) -> bool:
    """
    Whether C{address} (an IP address as a string) is a loopback one.
    """
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class HostPolicy:
    """
    Which names in C{Host} this daemon answers to, against DNS rebinding:
    a page whose own name its attacker made resolve to 127.0.0.1 reaches a
    daemon on this host as same-origin, with its own name in C{Host}.

    On a connection to a loopback address, only the loopback names
    (C{localhost}, C{127.0.0.1}, C{[::1]}) and those of C{--allowed-host}
    are served, with any port. On other addresses (and UNIX sockets) every
    name is, unless C{--allowed-host} names some: then only those and the
    loopback names.
    """

    def __init__(self, allowed: Sequence[str] = ()) -> None:
        names = (authority(a) for a in allowed)
        self.allowed = frozenset(n[0] for n in names if n is not None)
        self._served = LOOPBACK_NAMES | self.allowed

    def checks(self, local: str | None) -> bool:
        """
        Whether a connection to the local address C{local} (an IP address,
        or L{None} for a UNIX socket) has its C{Host} checked.
        """
        return bool(self.allowed) or is_loopback(local)

    def serves(self, host: str | None) -> bool:
        """
        Whether a checked request with C{host} (its Host header) is served;
        a request without one names no host to rebind.
        """
        if host is None:
            return True
        found = authority(host)
        return found is not None and found[0] in self._served


class OriginPolicy:
    """
    The seed's CheckOrigin, safe by default: browsers may connect from the
    page's own origin; other origins only where an C{--allowed-origin}
    pattern says so. Clients that send no C{Origin} (not browsers) pass.

    Patterns are Autobahn's: C{*} is a wildcard, matched against the whole
    origin, with or without its default port (C{https://*.example.com} and
    C{https://*.example.com:443} both match C{https://a.example.com}).
    C{*} alone allows every origin, C{null} included; C{null} allows the
    C{null} origin of sandboxed and C{file:} pages.
    """

    def __init__(self, allowed: Sequence[str] = ()) -> None:
        self.allow_all = "*" in allowed
        self.allow_null = "null" in allowed
        self._patterns: list[re.Pattern[str]] = wildcards2patterns(
            [a for a in allowed if a not in ("*", "null")]
        )

    def allows(self, origin: str | None, host: str | None) -> bool:
        """
        May a handshake that carries C{origin} and was sent to C{host} (its
        Host header) go ahead?
        """
        if origin is None or self.allow_all:
            return True
        origin = origin.strip()
        if origin.lower() == "null":
            return self.allow_null
        try:
            parts = urlsplit(origin)
        except ValueError:  # "http://[oops": not an origin
            return False
        scheme = parts.scheme.lower()
        theirs = _host_and_port(parts.netloc, scheme)
        if theirs is None or parts.path not in ("", "/"):
            return False
        # Same origin: the page was served by the host the browser is now
        # talking to. The port counts; the scheme does not, so that a page
        # served over https by a TLS-terminating proxy still matches.
        if host is not None and _host_and_port(host, scheme) == theirs:
            return True
        name, port = theirs
        candidates = [f"{scheme}://{name}:{port}"]
        if port == _DEFAULT_PORTS.get(scheme):
            candidates.append(f"{scheme}://{name}")
        return any(p.match(c) for p in self._patterns for c in candidates)


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(entry: str) -> str:
    """
    The address in one forwarded entry (C{192.0.2.1}, C{192.0.2.1:4711},
    C{[2001:db8::1]:4711}, C{"[2001:db8::1]"}), normalised; anything else
    (C{unknown}, C{_hidden}) as it is.
    """
    entry = entry.strip().strip('"')
    if entry.startswith("["):
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:
        entry = entry.partition(":")[0]
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        return printable(entry[:64])


def _forwarded_for(values: Sequence[str], header: str) -> list[str]:
    """
    The addresses a chain of proxies forwarded, client first.
    """
    chain = []
    for value in values:
        for element in value.split(","):
            if header == "forwarded":
                for pair in element.split(";"):
                    name, _, forwarded = pair.partition("=")
                    if name.strip().lower() == "for":
                        chain.append(_address(forwarded))
            elif element.strip():
                chain.append(_address(element))
    return chain


class ProxyTrust:
    """
    Which proxies to believe about the client's address (C{--trust-proxy}):
    a number of proxies in front of wsecho, or the networks they are in.

    With a hop count I{n}, the client is the I{n}th address from the right
    of the forwarded chain followed by the peer: each proxy appends the
    address it got the connection from. With networks, the peer must be in
    one of them; the client is then the rightmost address of the chain that
    is not. Anything further left was written by the client and proves
    nothing.
    """

    def __init__(
        self,
        hops: int = 0,
        networks: Sequence[_Network] = (),
        header: str = "x-forwarded-for",
    ) -> None:
        self.hops = hops
        self.networks = tuple(networks)
        self.header = header

    @classmethod
    def parse(cls, values: Sequence[str], header: str) -> ProxyTrust | None:
        """
        From C{--trust-proxy} values: one hop count, or networks (CIDR or
        single addresses, comma-separated or repeated). L{ValueError} names
        a value that is neither.
        """
        if not values:
            return None
        items = [i.strip() for v in values for i in v.split(",") if i.strip()]
        if len(items) == 1 and items[0].isdigit():
            hops = int(items[0])
            if hops < 1:
                raise ValueError(items[0])
            return cls(hops=hops, header=header)
        networks = []
        for item in items:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(item) from None
        return cls(networks=networks, header=header)

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def client_address(self, peer: str, request: Any) -> str:
        """
        The client of C{request} (a twisted.web request, read for its
        forwarded header) that came from C{peer}.
        """
        values = [
            v.decode("latin-1")
            for v in request.requestHeaders.getRawHeaders(self.header.encode(), [])
        ]
        return self.client_of(peer, values)

    def client_of(self, peer: str, values: Sequence[str]) -> str:
        """
        The client that came from C{peer} with the forwarded header
        C{values}.
        """
        chain = _forwarded_for(values, self.header)
        if self.hops:
            if len(chain) < self.hops:
                # Fewer proxies than we were told of: believe none.
                return peer
            return chain[-self.hops]
        if not self._trusted(peer):
            return peer
        for address in reversed(chain):
            if not self._trusted(address):
                return address
        return chain[0] if chain else peer
