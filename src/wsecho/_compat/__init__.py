"""
The boundary around the libraries' internals: every name of Twisted's and
Autobahn's that is not their public API is used in L{wsecho._compat.twisted}
or L{wsecho._compat.autobahn} (and HTTP/2's in L{wsecho._compat.h2}) and
nowhere else, each with why (speed, or
memory accounting). C{tests/test_structure.py} holds the rest of wsecho to
the libraries' public names.

L{changed} is run once at start-up (L{wsecho.daemon.service}): where a
release has renamed or dropped one of these names, it says which, one
warning is logged, and wsecho takes the public path instead.
"""

from __future__ import annotations

from wsecho._compat import autobahn, h2, twisted


def changed() -> list[str]:
    """
    The shortcuts turned off because Twisted or Autobahn changed the names
    they rely on (for the start-up warning).
    """
    return sorted(autobahn.MISSING + twisted.MISSING + h2.MISSING)
