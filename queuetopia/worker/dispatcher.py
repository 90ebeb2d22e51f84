"""The worker's loop (River's "producer"): it owns the slots, the queues the worker
holds and the due list, and turns what happens (a notification, a timer, the end of
an attempt, a lost lease, a poll) into steps (stepper.py), starting the jobs the
steps claim (runner.py). It runs on the worker's event loop thread: none of its state
is shared with another thread but the holds (holds.py).

A held queue keeps its lease while it has nothing to run (docs/design.md, "Holding
queues"): a queue with a job now and then is claimed from its hold, with no lease
written per job. It gives the lease back when it has been idle for lock_ttl, when its
turn is over while other queues wait for a slot, and when the worker stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..db import steps, store
from ..db.rows import Conn
from ..enqueue import Producer
from ..events import Observers
from ..models import (
    Finish,
    Found,
    Interrupt,
    Job,
    JobState,
    Outcome,
    Step,
    StepItem,
    Verdict,
)
from ..periodic import seconds_to_next_tick
from ..registry import Registry
from ..settings import Settings
from . import hooks
from .ahead import Ahead
from .fairness import Skips, turn_over
from .holds import Hold, Holds
from .house import House
from .runner import Runner
from .scheduling import enqueue_due
from .stepper import Stepper
from .verdict import judge, lost, not_started

logger = logging.getLogger("queuetopia.worker")

# Retention: a small batch a minute keeps locks and vacuum work small.
PRUNE_EVERY = 60.0
PRUNE_BATCH = 500
# A poll asks for up to this many due queues per slot (and at least one page): enough
# to fill every slot from the due list, as one look costs about as much as the due
# queues that other holders serve, however few it asks for.
SCAN_PER_SLOT = 2
SCAN_PAGE = 20
# Releases go out in batches of at most this many leases.
RELEASE_BATCH = 500
# A step names queues to take for its free slots: as many per slot as it takes to
# find one due, by the share of those named lately that were (a notification names
# queues that may not be due, or that another worker takes first), twice over, and
# at most CANDIDATES. Naming many more than the slots costs each item's work and
# keeps them from the other workers for the step.
CANDIDATES = 256
DUE_SHARE_WEIGHT = 0.05  # of each named queue, in the moving share of due ones
# A held queue that has waited this long for a slot is handed off (given back, with a
# notification): a worker with a free slot takes it. Looked at every HANDOFF_EVERY: a
# worker that runs out of work while another's held queues wait (the end of a burst)
# is idle for about that long.
HANDOFF = 0.25
HANDOFF_EVERY = 0.05


class Phase(Enum):
    IDLE = "idle"  # nothing in flight: maybe due, maybe waiting for a time
    STEPPING = "stepping"  # a step for it is in flight
    READY = "ready"  # its job, claimed ahead, waits for a slot to run
    RUNNING = "running"  # an attempt runs


@dataclass(eq=False)
class Turn:
    """What the loop knows of a held queue (the loop's alone)."""

    hold: Hold
    phase: Phase = Phase.STEPPING
    started: float = 0.0  # when its current turn began (monotonic)
    ran: int = 0  # attempts in the current turn
    wanted: bool = False  # a notification came while it was busy: look again
    hooking: bool = False  # failure hooks run: its next job waits for them
    idle_since: float = field(default_factory=time.monotonic)
    ready_since: float = 0.0  # when its job, claimed ahead, began to wait for a slot
    handing_off: bool = False  # its job is given back: give the queue back after it
    timer: asyncio.TimerHandle | None = None


@dataclass(frozen=True)
class Kit:
    """What the dispatcher is handed by the worker."""

    settings: Settings
    registry: Registry
    producer: Producer
    observers: Observers
    concurrency: int
    queues: list[str] | None
    owner: str
    node: str
    prefetch: int = 0  # jobs claimed ahead of the free slots at most (ahead.py)


class Dispatcher:
    def __init__(self, kit: Kit, holds: Holds, stepper: Stepper, house: House) -> None:
        self.kit, self.holds, self.stepper, self.house = kit, holds, stepper, house
        self.scope = kit.settings.scope
        self.runner = Runner(
            kit.registry,
            kit.observers,
            threads=kit.concurrency,
            max_result_bytes=kit.settings.max_result_bytes,
            ended=self._ended,
        )
        self.turns: dict[str, Turn] = {}
        # queue -> since when it is due (monotonic), oldest first: popped from the front
        self.due: OrderedDict[str, float] = OrderedDict()
        # Claims the worker holds: attempts running, jobs claimed ahead, claims in flight.
        self.busy = 0
        self.active = 0  # attempts running: at most kit.concurrency
        self.ahead = Ahead(kit.prefetch, kit.concurrency)
        self.ready: deque[tuple[Turn, Job]] = deque()  # claimed ahead, oldest first
        # Queues named to take, in a step in flight: when it was sent, and since when
        # the queue was due.
        self.acquiring: dict[str, tuple[float, float]] = {}
        self.releasing: set[str] = set()
        self.after_release: set[str] = set()  # due again once their release is done
        self.skips = Skips(kit.settings.poll_interval)
        self.stopping = False
        self.due_share = 1.0  # of the queues named to take lately, the share found due
        self.scan_now = True
        self.scan_more = False  # the last poll found a full page: more may be due
        self.next_scan = 0.0
        self.running: set[str] = set()  # queues with a job in flight
        self._running_lock = threading.Lock()  # other threads read it (running_queues)
        self._failed: dict[int, Outcome] = {}  # failed attempts whose hooks wait for the record
        self._tasks: set[asyncio.Task[None]] = set()
        self._to_release: list[tuple[steps.Release, bool]] = []
        self._releaser: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._quiet = asyncio.Event()  # set whenever no slot is busy
        # The slots a step frees and takes are counted for all its items before any
        # is filled again: its items free and take them in no useful order.
        stepper.on_settled(self.fill)

    # -- events ------------------------------------------------------------------

    def notified(self, queue: str) -> None:
        """A notification for `queue` ('' for every queue)."""
        self.skips.notified(queue)
        if not queue:
            self.scan_now = True
            self._wake.set()
            return
        if self.kit.queues is not None and queue not in self.kit.queues:
            return
        self._want(queue)
        self.fill()

    def lost(self, hold: Hold) -> None:
        """The heartbeat lost `hold`'s lease. A running job was interrupted; its record
        will be refused and the queue forgotten then."""
        turn = self.turns.get(hold.queue)
        if turn is not None and turn.hold is hold and turn.phase is Phase.IDLE:
            self._forget(turn)

    def _want(self, queue: str) -> None:
        turn = self.turns.get(queue)
        if turn is not None and turn.phase is not Phase.IDLE:
            turn.wanted = True
        elif queue not in self.due:
            self.due[queue] = time.monotonic()

    # -- claiming ----------------------------------------------------------------

    def fill(self) -> None:
        """Claim due queues for the free slots, the longest waiting first: each held
        queue takes a slot; queues to take are named by the batch, several per free
        slot (see CANDIDATES), and get the slots left."""
        free = self.capacity - self.busy
        if self.stopping or free <= 0:
            return
        held: list[Turn] = []
        candidates: dict[str, float] = {}
        reach = min(CANDIDATES, math.ceil(2 * free / max(self.due_share, 2 / CANDIDATES)))
        while self.due and len(held) < free and len(candidates) < reach:
            queue, since = self.due.popitem(last=False)
            turn = self.turns.get(queue)
            if turn is not None and turn.phase is Phase.IDLE and not turn.hooking:
                held.append(turn)
            elif turn is not None:
                turn.wanted = turn.wanted or not turn.hooking
            elif queue in self.releasing or queue in self.acquiring:
                self.after_release.add(queue)
            else:
                candidates[queue] = since
        for turn in held:
            self._cancel_timer(turn)
            self._submit(turn, claim=True)
        self._take(candidates, free - len(held))
        if self.busy < self.capacity and not self.due and self.scan_more:
            self.scan_now = True
            self._wake.set()

    def _take(self, candidates: dict[str, float], slots: int) -> None:
        """Name `candidates` to take, in one step, with `slots` slots for them."""
        slots = min(slots, len(candidates))
        if slots <= 0:
            self._requeue(candidates)
            return
        self.busy += slots - 1
        self._take_slot()
        sent = time.monotonic()
        for n, (queue, since) in enumerate(candidates.items()):
            self.acquiring[queue] = (sent, since)
            self.stepper.submit(StepItem(queue, None, claim=n < slots), self._stepped)

    def _requeue(self, queues: dict[str, float]) -> None:
        """Put queues back at the front of the due list, with the time they became due."""
        for queue, since in reversed(queues.items()):
            self.due[queue] = since
            self.due.move_to_end(queue, last=False)

    @property
    def capacity(self) -> int:
        """How many claims the worker may hold: its slots, and the jobs it claims ahead."""
        return self.kit.concurrency + (0 if self.stopping else self.ahead.allowed())

    @property
    def contended(self) -> bool:
        """Do other queues wait for a slot?"""
        return bool(self.due) or (self.scan_more and self.busy >= self.capacity)

    def _submit(self, turn: Turn, *, claim: bool, finish: Finish | None = None) -> None:
        hold = turn.hold
        if claim and finish is None:
            self._take_slot()
        turn.phase = Phase.STEPPING
        item = StepItem(hold.queue, hold.lease, hold.floor, hold.seen, finish, claim)
        self.stepper.submit(item, self._stepped)

    def _take_slot(self) -> None:
        self.busy += 1
        self._quiet.clear()

    def _free_slot(self) -> None:
        self.busy -= 1
        if self.busy == 0:
            self._quiet.set()

    # -- what a step did ------------------------------------------------------------

    def _stepped(self, item: StepItem, step: Step | None) -> None:
        if step is None:
            self._failed_step(item)
            return
        turn = self._turn_of(item, step)
        if turn is None:
            if item.claim and item.lease is not None:
                self._free_slot()
            self._settled(item.queue)
            return
        if item.finish is not None:
            self._recorded(turn, item.finish, step)
        turn.hold.searched(step)
        if step.searched:
            self._found(turn, step)
        else:
            # No search: the attempt recorded keeps the queue's head (a retry, a
            # blocking failure), the claim was not asked for, or the record refused.
            if item.claim:
                self._free_slot()
            self._idle(turn, after=item.finish if step.recorded else None)

    def _failed_step(self, item: StepItem) -> None:
        """The step failed for good: give the queue up (its lease, if any, runs out)."""
        self.acquiring.pop(item.queue, None)
        if item.finish is not None:
            self._failed.pop(item.finish.job.id, None)
        turn = self.turns.get(item.queue)
        if item.lease is not None and turn is not None and turn.hold.lease == item.lease:
            self._forget(turn)
        if item.claim:
            self._free_slot()
        self._settled(item.queue)

    def _turn_of(self, item: StepItem, step: Step) -> Turn | None:
        """The turn the step worked for: taken now, or held already; None when the
        queue is not ours (not taken, or its lease is gone)."""
        queue = item.queue
        if item.lease is None:
            now = time.monotonic()
            sent, since = self.acquiring.pop(queue, (now, now))
            self.due_share += DUE_SHARE_WEIGHT * (step.due - self.due_share)
            # Slots follow the queues taken, whichever items carried them.
            if step.lease is not None and not item.claim:
                self._take_slot()
            elif step.lease is None and item.claim:
                self._free_slot()
            if step.lease is None:
                if step.due:  # left for want of a slot: it keeps its place
                    self._requeue({queue: since})
                return None
            hold = self.holds.take(step.lease, sent, step.floor, step.seen)
            taken = self.turns[queue] = Turn(hold)
            return taken
        turn = self.turns.get(queue)
        if turn is None or turn.hold.lease != item.lease:
            return None
        if step.lease is None:
            if item.finish is not None and not step.recorded:
                _discarded(item.finish.job)
            self._forget(turn)
            return None
        return turn

    def _recorded(self, turn: Turn, finish: Finish, step: Step) -> None:
        job = finish.job
        failed = self._failed.pop(job.id, None)
        if not step.recorded:
            # Our lease is live, yet the job no longer runs under it: another worker
            # recovered it (we were paused past the lease), or an operator changed it.
            _discarded(job)
            return
        if finish.state is Verdict.PARKED:
            logger.warning("parked job %d of queue %r: %s", job.id, job.queue, finish.error)
            self.kit.observers.job_parked(job)
        if failed is not None:
            turn.hooking = True
            self._background(self._hooks(turn, job, failed))

    def _found(self, turn: Turn, step: Step) -> None:
        job = step.job
        running = job is not None and job.state is JobState.RUNNING
        ours = job is not None and job.lease_id == turn.hold.lease.lease_id
        if job is not None and (step.found is Found.CLAIMED or (running and ours)):
            self._start(turn, job)  # claimed now, or by a step whose reply was lost
            return
        self._free_slot()
        turn.ran = 0  # the turn ends with the queue's line
        if job is not None and running:
            self._recover(turn, job)  # a job a vanished worker left running
            return
        turn.phase = Phase.IDLE
        turn.idle_since = time.monotonic()
        if step.awaiting is not None:  # the jobs it waits for wake it when done
            self._background(self._await(turn, step.awaiting))
        elif job is not None and not step.paused and job.state is JobState.PENDING:
            due = max(job.scheduled_at, job.next_attempt_at or job.scheduled_at)
            wait = (due - step.db_now).total_seconds()
            self._wait_until(turn, wait if step.rated is None else max(wait, step.rated))
        self._again_if_wanted(turn)

    async def _await(self, turn: Turn, ids: list[int]) -> None:
        """Have the jobs the head of `turn`'s queue waits for wake the queue when done
        (docs/flow-control.md); look again at once if one is done already."""
        scope, queue = self.scope, turn.hold.queue
        done = await self.house(lambda c: steps.job_await(c, scope=scope, queue=queue, ids=ids))
        if done and self.turns.get(queue) is turn and turn.phase is Phase.IDLE:
            self.due.setdefault(queue, time.monotonic())
            self.fill()

    def _recover(self, turn: Turn, job: Job) -> None:
        """Record the attempt of a job a vanished worker left running, then claim."""
        action, outcome = self.kit.registry.get(job.action), lost(job)
        if self.kit.registry.failure_hooks(job.action):
            self._failed[job.id] = outcome  # a failed attempt: the hooks run once recorded
        self._take_slot()
        self._submit(turn, claim=True, finish=judge(job, outcome, action, 0.0))

    def _idle(self, turn: Turn, *, after: Finish | None) -> None:
        """The queue's slot is free: after an attempt recorded without a claim."""
        turn.phase = Phase.IDLE
        turn.idle_since = time.monotonic()
        state = None if after is None else after.state
        if self.stopping or turn.hold.lost:
            return
        if turn.handing_off:
            turn.handing_off = False
            self._release([turn], wake=True)
            return
        if state in (Verdict.PENDING, Verdict.SNOOZED):
            self._wait_until(turn, after.backoff or 0.0)  # type: ignore[union-attr]
        elif state in (Verdict.FAILED, Verdict.PARKED) and after is not None:
            if after.job.on_exhausted != "block" or state is Verdict.PARKED:
                self.due.setdefault(turn.hold.queue, time.monotonic())  # it moves on
        elif state is Verdict.CANCELLED:
            self.due.setdefault(turn.hold.queue, time.monotonic())  # it moves on
        elif state is Verdict.DONE:
            # Its turn is over while other queues wait: behind them (it keeps its lease;
            # if it waits long, the handoff gives it to a worker with a free slot).
            self.due.setdefault(turn.hold.queue, time.monotonic())
            return
        self._again_if_wanted(turn)

    def _again_if_wanted(self, turn: Turn) -> None:
        if turn.wanted:
            turn.wanted = False
            self.due.setdefault(turn.hold.queue, time.monotonic())

    def _settled(self, queue: str) -> None:
        """A step for `queue` ended without a turn (not taken, or lost)."""
        if queue in self.after_release and queue not in self.releasing:
            self.after_release.discard(queue)
            self.due.setdefault(queue, time.monotonic())

    # -- attempts --------------------------------------------------------------------

    def _start(self, turn: Turn, job: Job) -> None:
        """Run the job claimed for `turn`, or, every slot running, keep it ready (or,
        the worker stopping, record it as not run). A queue going on with its turn
        goes before the jobs claimed ahead: its last job's slot went to one of them,
        and a queue with a steady flow of jobs must not wait behind them each time."""
        if self.active >= self.kit.concurrency:
            turn.phase, turn.ready_since = Phase.READY, time.monotonic()
            if turn.ran > 0:
                self.ready.appendleft((turn, job))
            else:
                self.ready.append((turn, job))
            if self.stopping:
                self._unready()
            return
        if turn.phase is not Phase.RUNNING and turn.ran == 0:
            turn.started = time.monotonic()
        turn.phase = Phase.RUNNING
        self.active += 1
        self._running(turn.hold.queue, True)
        self.runner.start(turn.hold, job)

    def _start_ready(self) -> None:
        """A slot is free: run the job claimed ahead longest ago, if its queue is
        still ours (a lost lease's job is left to whoever takes the queue over)."""
        while self.ready and self.active < self.kit.concurrency and not self.stopping:
            turn, job = self.ready.popleft()
            if turn.hold.lost or self.turns.get(turn.hold.queue) is not turn:
                self._free_slot()
                self._forget(turn)
                continue
            self._start(turn, job)
            return

    def _unready(self) -> None:
        """The worker stops: give back the jobs claimed ahead, not run (due again at
        once, on any worker; their attempts not counted)."""
        while self.ready:
            self._give_back(*self.ready.popleft())

    def _give_back(self, turn: Turn, job: Job, *, hand_off: bool = False) -> None:
        """Record `job`, claimed ahead, as not started; with `hand_off`, give its
        queue back once that is recorded, waking the other workers (`_idle`)."""
        self._free_slot()
        turn.handing_off = hand_off
        self._submit(turn, claim=False, finish=not_started(job))

    def _ended(self, hold: Hold, job: Job, outcome: Outcome, ran: float) -> None:
        self._running(hold.queue, False)
        self.active -= 1
        self.ahead.ran(ran)
        self._start_ready()
        turn = self.turns.get(hold.queue)
        if turn is None or turn.hold is not hold:
            logger.warning("outcome of job %d of queue %r discarded: lease lost", job.id, job.queue)
            self._free_slot()
            return
        finish = judge(job, outcome, self.kit.registry.get(job.action), ran)
        turn.ran += 1
        over = turn_over(turn.ran, time.monotonic() - turn.started, contended=self.contended)
        go_on = outcome.ok and not self.stopping and hold.trusted() and not over
        if not go_on:
            turn.ran = 0
            self._free_slot()
        self._submit(turn, claim=go_on, finish=finish)
        if not go_on:
            self.fill()  # the slot goes to the queue that has waited longest
        if outcome.failed and self.kit.registry.failure_hooks(job.action):
            self._failed[job.id] = outcome  # the hooks run once it is recorded

    async def _hooks(self, turn: Turn, job: Job, outcome: Outcome) -> None:
        """Call the failure hooks, with the job as recorded; the queue's next job waits
        for them (docs/retries.md)."""
        try:
            await self._call_hooks(turn.hold, job, outcome)
        finally:
            turn.hooking = False
            if self.turns.get(turn.hold.queue) is turn and turn.phase is Phase.IDLE:
                self.due.setdefault(turn.hold.queue, time.monotonic())
                self.fill()

    async def _call_hooks(self, hold: Hold, job: Job, outcome: Outcome) -> None:
        scope = self.scope
        recorded = await self.house(lambda c: store.job_get(c, scope=scope, job_id=job.id)) or job
        hooked = self.kit.registry.failure_hooks(job.action)
        loop = asyncio.get_running_loop()
        error = hooks.error_of(outcome)
        notes = await loop.run_in_executor(self.runner.pool, hooks.call, hooked, recorded, error)
        action = self.kit.registry.get(job.action)
        for note in notes:
            text = hooks.note_text(action, job, note)
            await self.house(
                lambda c, t=text: steps.job_note_error(  # type: ignore[misc]
                    c, scope=scope, lease=hold.lease, job_id=job.id, note=t
                )
            )

    async def _settle_step(self) -> None:
        while not self.stepper.idle:
            await asyncio.sleep(0.001)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)  # the loop keeps only weak references
        task.add_done_callback(self._tasks.discard)

    def _running(self, queue: str, running: bool) -> None:
        with self._running_lock:
            if running:
                self.running.add(queue)
            else:
                self.running.discard(queue)

    def running_queues(self) -> list[str]:
        """The queues with a job in flight (from any thread)."""
        with self._running_lock:
            return list(self.running)

    # -- holding and giving back ---------------------------------------------------------

    def _wait_until(self, turn: Turn, seconds: float) -> None:
        """Make the queue due again in `seconds` (its head's time, or its retry's)."""
        self._cancel_timer(turn)
        loop = asyncio.get_running_loop()
        turn.timer = loop.call_later(max(seconds, 0.0) + 0.001, self._timer_fired, turn)

    def _timer_fired(self, turn: Turn) -> None:
        turn.timer = None
        if self.turns.get(turn.hold.queue) is turn and turn.phase is Phase.IDLE:
            self.due.setdefault(turn.hold.queue, time.monotonic())
            self.fill()

    @staticmethod
    def _cancel_timer(turn: Turn) -> None:
        if turn.timer is not None:
            turn.timer.cancel()
            turn.timer = None

    def _forget(self, turn: Turn) -> None:
        self._cancel_timer(turn)
        if self.turns.get(turn.hold.queue) is turn:
            del self.turns[turn.hold.queue]
        self.holds.give_back(turn.hold)
        self._settled(turn.hold.queue)

    def _release(self, turns: list[Turn], *, wake: bool) -> None:
        """Give the queues of `turns` back: their leases stay in the database,
        released, with their floors. The releases go out in batches (one statement
        each), one batch at a time; with `wake`, the other workers are told."""
        for turn in turns:
            hold = turn.hold
            self._cancel_timer(turn)
            del self.turns[hold.queue]
            self.holds.give_back(hold)
            if not hold.lost:
                self.releasing.add(hold.queue)
                self._to_release.append(((hold.lease, hold.floor, hold.seen), wake))
        if self._to_release and self._releaser is None:
            self._releaser = asyncio.get_running_loop().create_task(self._releases())

    async def _releases(self) -> None:
        try:
            while self._to_release:
                batch = self._to_release[:RELEASE_BATCH]
                del self._to_release[:RELEASE_BATCH]
                await self._released([r for r, _ in batch], [r[0].queue for r, w in batch if w])
        finally:
            self._releaser = None

    async def _released(self, releases: list[steps.Release], wake: list[str]) -> None:
        scope = self.scope
        queues = [lease.queue for lease, _, _ in releases]

        def release(conn: Conn) -> dict[str, bool]:
            settled = steps.lease_release(conn, scope=scope, releases=releases)
            if wake:
                store.scope_notify(conn, scope, *wake)
            return settled

        try:
            settled = await self.house(release)
        finally:
            self.releasing.difference_update(queues)
        for queue in queues:
            if not settled.get(queue, True):
                # A producer held the queue's lock: its hint stays early. Look again
                # after its notification or the next poll, rather than spin on it.
                self.skips.add(queue)
            self._settled(queue)
        self.fill()

    def _release_idle(self) -> None:
        """Give back the queues that have had nothing to run for lock_ttl."""
        since = time.monotonic() - self.kit.settings.lock_ttl
        idle = [
            t
            for t in self.turns.values()
            if t.phase is Phase.IDLE and t.idle_since <= since and t.hold.queue not in self.due
        ]
        self._release(idle, wake=False)

    def _hand_off(self) -> None:
        """Hand off the held queues that have waited for a slot for HANDOFF: any worker
        with a free slot may take them (they are told), this one included. So too the
        jobs claimed ahead that have waited longer than the recent jobs ran, twice over
        (and at least HANDOFF): the running jobs they were claimed behind did not end
        as the recent ones did (ahead.py)."""
        now = time.monotonic()
        waiting = []
        for queue, due_since in self.due.items():
            if due_since > now - HANDOFF:
                break
            turn = self.turns.get(queue)
            if turn is not None and turn.phase is Phase.IDLE and not turn.hooking:
                waiting.append(turn)
        self._release(waiting, wake=True)
        patience = self.ahead.patience(HANDOFF)
        late = [(t, j) for t, j in self.ready if t.ready_since <= now - patience]
        for turn, job in late:
            self.ready.remove((turn, job))
            self._give_back(turn, job, hand_off=True)
        if waiting or late:
            self.ahead.handed_off()

    # -- the loop ------------------------------------------------------------------

    async def run(self) -> None:
        """Until the worker stops: poll, release idle queues, prune, enqueue periodic
        jobs; everything else happens as events come."""
        now = time.monotonic()
        next_prune, next_tick, next_idle = now + PRUNE_EVERY / 10, now, now + 1.0
        next_handoff = now + HANDOFF_EVERY
        while not self.stopping:
            try:
                now = time.monotonic()
                if self.scan_now or now >= self.next_scan:
                    await self._scan()
                if now >= next_tick:
                    next_tick = time.monotonic() + await self._periodics()
                if now >= next_prune:
                    next_prune = time.monotonic() + PRUNE_EVERY
                    await self._prune()
                if now >= next_idle:
                    next_idle = time.monotonic() + 1.0
                    self._release_idle()
                if now >= next_handoff:
                    next_handoff = time.monotonic() + HANDOFF_EVERY
                    self._hand_off()
                self.fill()
                wait = min(self.next_scan, next_tick, next_prune, next_idle, next_handoff)
                wait -= time.monotonic()
            except Exception:
                # Transient errors are retried below this; anything else must not stop
                # the loop that every queue of this worker depends on.
                logger.exception("worker loop error; continuing")
                wait = 1.0
            if self.stopping or self.scan_now:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(wait, 0.0))
            self._wake.clear()

    async def _scan(self) -> None:
        """Look in the database for due queues no worker holds (the poll; at start,
        after a reconnect, after a notification for every queue), and for when to look
        next: the next due time, or the end of another worker's lease on a due queue."""
        self.scan_now = False
        k, scope = self.kit, self.scope
        limit = max(SCAN_PAGE, SCAN_PER_SLOT * k.concurrency)
        skip = self.skips.active()

        def scan(conn: Conn) -> tuple[list[str], float | None]:
            found = steps.queue_due(conn, scope=scope, limit=limit, queues=k.queues, skip=skip)
            if len(found) >= limit:
                return found, None  # more are due: the next look comes when these are taken
            due_in = steps.queue_next_due(conn, scope=scope, owner=k.owner, queues=k.queues)
            return found, due_in

        found, due_in = await self.house(scan)
        self.scan_more = len(found) >= limit
        for queue in found:
            if queue not in self.turns:
                self.due.setdefault(queue, time.monotonic())
        wait = k.settings.poll_interval if due_in is None else min(k.settings.poll_interval, due_in)
        self.next_scan = time.monotonic() + self.skips.next_expiry_in(max(wait, 0.0) + 0.001)
        self.fill()

    async def _periodics(self) -> float:
        """Enqueue the due ticks of periodic jobs; seconds until the next tick."""
        periodics = self.kit.registry.periodics
        if not periodics:
            return float("inf")
        producer = self.kit.producer

        def tick(conn: Conn) -> float:
            for periodic in periodics:
                enqueue_due(conn, producer, periodic)
            wait = seconds_to_next_tick(periodics, steps.db_now(conn))
            return float("inf") if wait is None else wait + 0.001

        return await self.house(tick)

    async def _prune(self) -> None:
        """Delete finished jobs past job_retention, and rate-limit budgets full again:
        one batch, one worker per scope."""
        retention = self.kit.settings.job_retention
        scope = self.scope
        older = None if retention is None else retention.total_seconds()
        deleted = await self.house(
            lambda c: steps.job_prune_turn(c, scope=scope, older_than=older, batch=PRUNE_BATCH)
        )
        if deleted:
            logger.info("pruned %d finished jobs older than %s", deleted, retention)

    # -- stopping ----------------------------------------------------------------------

    async def stop(self, timeout: float, grace: float, hurry: asyncio.Event) -> None:
        """Stop claiming; let running jobs finish for `timeout` seconds (or until
        `hurry`), interrupt the rest and give them `grace` to be recorded; give every
        queue back, waking the other workers for those with work left."""
        self.stopping = True
        busy = set(self.due) | set(self.running_queues()) | {t.hold.queue for t, _ in self.ready}
        self._unready()
        self.due.clear()
        self._wake.set()
        if not await self._drained(timeout, hurry):
            logger.warning("shutdown timeout: interrupting %d running jobs", len(self.running))
            self.holds.interrupt_all(Interrupt.SHUTDOWN)
            await self._drained(grace, None)
        await self._settle_step()
        turns = list(self.turns.values())
        self._release([t for t in turns if t.hold.queue in busy], wake=True)
        self._release([t for t in turns if t.hold.queue not in busy], wake=False)
        while self.releasing or self._releaser is not None:
            await asyncio.sleep(0.01)

    async def _drained(self, seconds: float, hurry: asyncio.Event | None) -> bool:
        deadline = time.monotonic() + seconds
        while self.busy > 0 and time.monotonic() < deadline:
            if hurry is not None and hurry.is_set():
                deadline = min(deadline, time.monotonic() + 1.0)
                hurry = None
                self.holds.interrupt_all(Interrupt.SHUTDOWN)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._quiet.wait(), timeout=0.05)
        return self.busy == 0


def _discarded(job: Job) -> None:
    logger.warning("lease lost on queue %r: outcome of job %d discarded", job.queue, job.id)
