"""
The echo's tally (L{wsecho.ws.metrics.EchoTally}): what it counts cheaply is
what Prometheus is told.
"""

from __future__ import annotations

from bisect import bisect_left

from hypothesis import given
from hypothesis import strategies as st

from wsecho.ws.metrics import SIZE_BUCKETS, EchoTally

# Sizes around every bucket bound, and anywhere up to 64 MiB.
_bounds = st.sampled_from([int(b) + d for b in SIZE_BUCKETS for d in (-1, 0, 1)])
SIZES = st.lists(
    st.tuples(st.booleans(), _bounds | st.integers(0, 64 << 20)), max_size=50
)


@given(SIZES)
def test_size_buckets_count_what_is_at_most_their_bound(
    messages: list[tuple[bool, int]],
) -> None:
    """
    Each message is counted in the first size bucket whose bound it does
    not pass (Prometheus' le), by type, and the bytes and counts add up.
    """
    tally = EchoTally()
    expected = [[0] * (len(SIZE_BUCKETS) + 1) for _ in range(2)]
    for binary, size in messages:
        tally.message(binary, size)
        expected[binary][bisect_left(SIZE_BUCKETS, size)] += 1
    for binary in (False, True):
        assert tally.sizes(binary) == expected[binary]
        assert tally.bytes[binary] == sum(s for b, s in messages if b == binary)
    families = {f.name: f for f in tally.collect()}
    counted = {s.labels["type"]: s.value for s in families["wsecho_messages"].samples}
    assert counted == {
        "text": sum(1 for b, _ in messages if not b),
        "binary": sum(1 for b, _ in messages if b),
    }
