"""An interrupt that comes before the action runs (a lease lost while its job was
being claimed) is an outcome of that attempt, never an exception out of the runner:
one escaped once and ended a runner thread for good (docs/reliability.md, 9b)."""

from __future__ import annotations

from queuetopia import Queuetopia
from queuetopia.executor import execute


def test_an_interrupt_before_the_action_starts_is_an_outcome(topia: Queuetopia) -> None:
    ran: list[int] = []

    @topia.action("act")
    def act() -> None:
        ran.append(1)

    job = topia.get_job(act.delay("q").id)
    assert job is not None
    for _ in range(50):  # an escape depends on where the interpreter looks: try often
        outcome = execute(job, topia.actions["act"], lambda e: e.interrupt("lease lost"))
        assert (outcome.ok, outcome.interrupted) == (False, "lease lost")
    assert ran == []
