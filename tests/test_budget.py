"""
The memory budget's policy (wsecho.ws.budget), without I/O.
"""

from wsecho.ws.budget import LARGE_RELEASE, MemoryBudget


class Holder:
    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.evicted = False

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


def test_the_largest_holder_gives_way() -> None:
    """
    A small holder asking for more than is left evicts the largest one, and
    is granted what it asked.
    """
    budget = MemoryBudget(100)
    big, small = Holder(budget), Holder(budget)
    assert budget.take(big, 95)
    assert budget.take(small, 10)
    assert big.evicted and not small.evicted
    assert budget.used == 10 and budget.evictions == 1


def test_the_largest_asking_is_itself_evicted() -> None:
    """
    A holder that would pass the budget while it holds the most is evicted
    itself; the others keep what they hold.
    """
    budget = MemoryBudget(100)
    a, b = Holder(budget), Holder(budget)
    assert budget.take(a, 40)
    assert budget.take(b, 50)
    assert not budget.take(b, 20)
    assert b.evicted and not a.evicted
    assert budget.used == 40


def test_no_limit_counts_but_never_evicts() -> None:
    """
    With a limit of 0 everything is granted.
    """
    budget = MemoryBudget(0)
    holder = Holder(budget)
    assert budget.take(holder, 10**12)
    assert budget.used == 10**12 and not holder.evicted


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
