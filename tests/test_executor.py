"""An interrupt that comes before the action runs (a lease lost while its job was
being claimed) is an outcome of that attempt, never an exception out of the runner:
one escaped once and ended a runner thread for good (docs/reliability.md, 9b). The
same for an `async def` action on the worker's loop, whose task must not stay
cancelled either."""

from __future__ import annotations

import asyncio

from queuetopia import Queuetopia
from queuetopia.worker.executor import execute, execute_async


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


def test_an_interrupt_before_an_async_action_starts_is_an_outcome(topia: Queuetopia) -> None:
    ran: list[int] = []

    @topia.action("act")
    async def act() -> None:
        ran.append(1)

    job = topia.get_job(act.delay("q").id)
    assert job is not None

    async def attempts() -> None:
        for _ in range(50):  # each in a task of its own, as the worker runs them
            attempt = execute_async(job, topia.actions["act"], lambda e: e.interrupt("lease lost"))
            outcome = await asyncio.create_task(attempt)
            assert (outcome.ok, outcome.interrupted) == (False, "lease lost")
        await asyncio.sleep(0.01)  # a cancel meant for an attempt reaches no other task

    asyncio.run(attempts())
    assert ran == []
