"""
Settings, as they flow down from the daemon's options to the HTTP site and
the echo protocol: what an echo endpoint is configured with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only named here: the site applies it (wsecho.http.policy).
    from wsecho.http.policy import ProxyTrust

MiB = 1024 * 1024

# The default --memory-budget (see wsecho.ws.budget).
DEFAULT_BUDGET = 256 * MiB


@dataclass(frozen=True)
class EchoSettings:
    """
    What an echo endpoint is configured with; L{wsecho.daemon.options.Options}
    fills it
    from the command line and the C{WSECHO_*} environment.
    """

    max_message_size: int = 16 * MiB
    max_frame_size: int = 16 * MiB
    compression: bool = True
    subprotocols: Sequence[str] = ()
    open_handshake_timeout: float = 10.0
    close_handshake_timeout: float = 5.0
    ping_interval: float = 20.0
    ping_timeout: float = 20.0
    verbose: bool = False
    allowed_origins: Sequence[str] = ()
    # Names served besides the loopback ones (wsecho.http.policy.HostPolicy).
    allowed_hosts: Sequence[str] = ()
    slow_client_timeout: float = 60.0
    max_connections: int = 10_000
    max_connections_per_ip: int = 0
    trusted_proxies: ProxyTrust | None = None
    metrics: bool = True
    memory_budget: int = DEFAULT_BUDGET
    # HTTP/2 (ALPN h2, prior knowledge), and WebSockets over it (RFC 8441).
    http2: bool = True
