"""
pytest markers shared by the test modules.
"""

from __future__ import annotations

import pytest

from wsecho._compat.h2 import HTTP2, MISSING

# The server's HTTP/2 needs what Twisted 26.10 has (wsecho._compat.h2.MISSING
# says what it lacks); older Twistds serve HTTP/1.1 only.
needs_http2 = pytest.mark.skipif(
    not HTTP2, reason=f"no HTTP/2 with this Twisted: {', '.join(MISSING)}"
)
