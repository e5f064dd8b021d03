"""
The memory budget's policy (wsecho.ws.budget), without I/O.
"""

from twisted.internet import task
from twisted.internet.testing import StringTransport

from wsecho.ws.account import Account
from wsecho.ws.budget import LARGE_RELEASE, MemoryBudget
from wsecho.ws.fastpath import FastPath
from wsecho.ws.flow import FlowControl


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Holder:
    def __init__(self, budget: MemoryBudget, sent: int = 0) -> None:
        self.budget = budget
        self.evicted = False
        self.sent = sent
        self.progressed_at = budget.now()

    def send(self, size: int) -> None:
        self.sent += size
        self.progressed_at = self.budget.now()

    def evict(self) -> None:
        self.evicted = True
        self.budget.give_all(self)


def test_within_the_budget_nothing_is_evicted() -> None:
    """
    Takes that fit are granted and counted; gives are subtracted.
    """
    budget = MemoryBudget(100)
    a, b = Holder(budget), Holder(budget)
    assert budget.take(a, 60) and budget.take(b, 40)
    assert budget.used == 100 and budget.held(a) == 60
    budget.give(a, 10)
    assert budget.used == 90 and budget.evictions == 0


def test_the_amplifier_gives_way_to_a_larger_honest_holder() -> None:
    """
    A holder of few bytes inflated from fewer still is evicted for one that
    holds more but sent all of it: the largest holder is spared.
    """
    budget = MemoryBudget(100)
    amplifier, honest = Holder(budget, sent=1), Holder(budget)
    assert budget.take(amplifier, 30)
    honest.send(60)
    assert budget.take(honest, 60)
    honest.send(20)
    assert budget.take(honest, 20)
    assert amplifier.evicted and not honest.evicted
    assert budget.used == 80 and budget.evictions == 1


def test_the_stalled_give_way_to_the_one_making_progress() -> None:
    """
    Among holders that each hold what they sent, those that stopped sending
    longest ago go first, however little they hold.
    """
    clock = Clock()
    budget = MemoryBudget(100, now=clock)
    stalled = [Holder(budget, sent=10) for _ in range(5)]
    for holder in stalled:
        assert budget.take(holder, 10)
    clock.now += 5
    honest = Holder(budget)
    honest.send(60)
    assert budget.take(honest, 60)
    assert not honest.evicted
    assert sum(h.evicted for h in stalled) == 1
    assert budget.used == 100


def test_the_worst_asking_is_itself_evicted() -> None:
    """
    A holder that would pass the budget while it ranks worst is evicted
    itself; the others keep what they hold.
    """
    budget = MemoryBudget(100)
    a, b = Holder(budget, sent=40), Holder(budget, sent=1)
    assert budget.take(a, 40)
    assert budget.take(b, 50)
    assert not budget.take(b, 20)
    assert b.evicted and not a.evicted
    assert budget.used == 40


def test_fixed_costs_are_admitted_only_if_they_fit() -> None:
    """
    A fixed cost that does not fit in what is left is refused, and evicts
    nobody; one that fits is counted.
    """
    budget = MemoryBudget(100)
    holder, newcomer = Holder(budget, sent=90), Holder(budget)
    assert budget.take(holder, 90)
    assert budget.admit(newcomer, 10)
    assert not budget.admit(Holder(budget), 1)
    assert budget.used == 100 and budget.refusals == 1 and not holder.evicted


def test_a_move_hands_holdings_over() -> None:
    """
    What one holder held is another's after a move.
    """
    budget = MemoryBudget(100)
    channel, protocol = Holder(budget), Holder(budget)
    assert budget.admit(channel, 10)
    budget.move(channel, protocol)
    assert budget.held(channel) == 0 and budget.held(protocol) == 10


def test_no_limit_counts_but_never_evicts() -> None:
    """
    With a limit of 0 everything is granted.
    """
    budget = MemoryBudget(0)
    holder = Holder(budget)
    assert budget.take(holder, 10**12) and budget.admit(holder, 10**12)
    assert budget.used == 2 * 10**12 and not holder.evicted


def test_large_releases_are_announced() -> None:
    """
    Giving back LARGE_RELEASE bytes or more calls on_release; less does not.
    """
    released = []
    budget = MemoryBudget(0, on_release=lambda: released.append(True))
    holder = Holder(budget)
    budget.take(holder, LARGE_RELEASE + 10)
    budget.give(holder, 10)
    assert released == []
    budget.give_all(holder)
    assert released == [True] and budget.used == 0


def test_many_small_fixed_releases_are_announced() -> None:
    """
    Fixed costs of closed connections that add up to LARGE_RELEASE call
    on_release, each one alone does not; small buffers do not add up.
    """
    released = []
    budget = MemoryBudget(0, on_release=lambda: released.append(True))
    holders = [Holder(budget) for _ in range(64)]
    for holder in holders:
        budget.admit(holder, LARGE_RELEASE // 32)
        budget.take(holder, 100)
        budget.give(holder, 100)
    for holder in holders[:31]:
        budget.give(holder, LARGE_RELEASE // 32, fixed=True)
    assert released == []
    for holder in holders[31:]:
        budget.give(holder, LARGE_RELEASE // 32, fixed=True)
    assert released == [True, True]


def test_a_newcomer_pushes_out_only_the_badly_ranked() -> None:
    """
    A fixed cost admitted with push evicts a silent holder to make room,
    but not a connection that holds only its fixed cost and uses it.
    """
    clock = Clock()
    budget = MemoryBudget(100, now=clock)
    silent, active = Holder(budget), Holder(budget, sent=50)
    assert budget.admit(silent, 40) and budget.admit(active, 50)
    clock.now += 30
    active.send(10)
    assert budget.admit(Holder(budget), 30, push=True)
    assert silent.evicted and not active.evicted
    assert not budget.admit(Holder(budget), 30, push=True)
    assert not active.evicted and budget.used == 80 and budget.refusals == 1


def test_a_newcomer_pushes_out_buffers_before_refusal() -> None:
    """
    When the budget is full of buffers held by clients that sent them (rank
    near 1), a new connection's fixed cost is admitted by evicting the
    worst of them; holders of a fixed cost alone, ranked well, stay.
    """
    clock = Clock()
    budget = MemoryBudget(100, now=clock)
    idle = Holder(budget, sent=10)
    assert budget.admit(idle, 10)
    stalled, sending = Holder(budget, sent=45), Holder(budget, sent=45)
    assert budget.take(stalled, 45) and budget.take(sending, 45)
    clock.now += 5
    sending.send(1)
    assert budget.admit(Holder(budget), 5, push=True)
    assert stalled.evicted and not sending.evicted and not idle.evicted
    assert budget.admit(Holder(budget), 45, push=True)
    assert sending.evicted and not idle.evicted


def test_each_read_of_a_dripped_frame_costs_more_than_its_byte() -> None:
    """
    A frame the fast path waits to have whole, dripped a byte a read,
    holds on the budget its bytes and, for each read, what a kept read
    costs on top (about 60 bytes of RSS, measured), and gives all of it
    back once whole.
    """
    budget = MemoryBudget(10**9)
    account = Account(budget, lambda: None, budget.now)
    flow = FlowControl(StringTransport(), account, task.Clock(), 30.0, lambda: None)
    fast = FastPath(lambda data: None, flow, account, 10**6)
    payload = b"x" * 1000
    data = bytes([0x82, 0xFE]) + len(payload).to_bytes(2, "big") + bytes(4) + payload
    assert fast.echo(data[:10])[3] is None and fast.waiting
    for byte in data[10:-1]:
        assert fast.whole(bytes([byte])) is None
    reads = len(data) - 10
    assert budget.used - (len(data) - 1) >= reads * 48
    assert fast.whole(data[-1:]) == data
    assert budget.used == 0
