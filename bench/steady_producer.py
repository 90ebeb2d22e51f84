"""The producer of the `snapshot` workload: a steady load for a fixed time.

    python bench/steady_producer.py --scope S --seconds 120 --rate 1000 --queues 1000 \\
        --hot-rate 200 --out FILE            # the database from $QUEUETOPIA_DSN

Every tick (10 ms) it enqueues, in one `enqueue_many` (one transaction), the jobs owed
by then: `rate` jobs/s spread round-robin over `queues` queues (each queue's jobs in
order) and `hot_rate` jobs/s on the queue `hot`. So about 12 jobs a transaction, 100
transactions a second. The schedule is absolute (tick k is due k x 10 ms after the
start, and a late tick sends everything owed), so the rate stays the asked one when a
tick is late, and a batch of 12 costs a few ms: the producer is not the bottleneck.
It reports how late its ticks ran, to show that. Its own process, so the bench's
sampling and the workers' CPU do not share its interpreter."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# Appended: an engine on $PYTHONPATH wins over this checkout (see bench/run.py).
sys.path.append(str(Path(__file__).resolve().parent.parent))

from bench.apps import make_topia
from bench.db import queue_name
from bench.windows import HOT
from queuetopia import JobRequest

TICKS_PER_SECOND = 100


class Plan:
    """Which jobs are owed by a tick, and the next number of each queue. Integer
    arithmetic, so that `rate` x seconds jobs are sent in all, exactly."""

    def __init__(self, rate: int, queues: int, hot_rate: int) -> None:
        self.rate, self.queues, self.hot_rate = rate, queues, hot_rate
        self.spread = 0  # jobs sent so far over the many queues
        self.hot = 0  # jobs sent so far on the hot queue

    def owed(self, tick: int) -> list[JobRequest]:
        spread = self.rate * tick // TICKS_PER_SECOND
        hot = self.hot_rate * tick // TICKS_PER_SECOND
        out = [
            JobRequest(queue_name(j % self.queues), "noop", {"i": j // self.queues})
            for j in range(self.spread, spread)
        ]
        out += [JobRequest(HOT, "noop", {"i": h}) for h in range(self.hot, hot)]
        self.spread, self.hot = spread, hot
        return out


def produce(args: argparse.Namespace) -> dict[str, float]:
    plan = Plan(args.rate, args.queues, args.hot_rate)
    lags: list[float] = []
    ticks = round(args.seconds * TICKS_PER_SECOND)
    with make_topia(scope=args.scope) as topia:
        start = time.monotonic()
        for tick in range(1, ticks + 1):
            due = tick / TICKS_PER_SECOND
            time.sleep(max(0.0, start + due - time.monotonic()))
            lags.append(time.monotonic() - start - due)
            jobs = plan.owed(tick)
            if jobs:
                topia.enqueue_many(jobs)
        took = time.monotonic() - start
    late = sorted(lags)
    return {
        "spread": plan.spread,
        "hot": plan.hot,
        "jobs": plan.spread + plan.hot,
        "seconds": round(took, 3),
        "ticks": ticks,
        "lag_p99_ms": round(late[int(0.99 * (len(late) - 1))] * 1000, 2) if late else 0.0,
        "lag_max_ms": round(late[-1] * 1000, 2) if late else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scope", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--queues", type=int, default=1000)
    parser.add_argument("--hot-rate", type=int, default=200)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = produce(args)
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
