"""
wsecho: a WebSocket echo daemon for twistd, built on Twisted and Autobahn.
"""

from __future__ import annotations

__version__ = "0.1.0"


def build_info() -> dict[str, str]:
    """
    The versions wsecho runs with, for wsecho_build_info and --version.
    """
    import platform
    from importlib.metadata import version

    return {
        "version": __version__,
        "python": platform.python_version(),
        "twisted": version("twisted"),
        "autobahn": version("autobahn"),
    }
