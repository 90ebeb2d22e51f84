"""The order in which a drain's jobs arrive: each key's jobs as one block ("key by
key"), or round-robin across keys, as customers' events arrive ("interleaved": key0
job0, key1 job0, ..., key0 job1, ...). Which one is the fast case differs between
systems, so the ordered drains report both."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from queuetopia import JobRequest, Queuetopia

KEY_BY_KEY = "key by key"
INTERLEAVED = "interleaved"
ARRIVALS = (KEY_BY_KEY, INTERLEAVED)

Params = Callable[[int, int], dict[str, Any]]  # (key, position in its key) -> params


def arrival_order(keys: int, per_key: int, arrival: str) -> list[tuple[int, int]]:
    """(key, position in its key) for every job, in the order they arrive."""
    if arrival == KEY_BY_KEY:
        return [(k, i) for k in range(keys) for i in range(per_key)]
    if arrival == INTERLEAVED:
        return [(k, i) for i in range(per_key) for k in range(keys)]
    raise ValueError(f"unknown arrival order {arrival!r}")


def enqueue_arrival(
    topia: Queuetopia,
    conn: Any,
    action: str,
    shape: tuple[int, int, str],
    queue: Callable[[int], str],
    params: Params,
) -> None:
    """Enqueue keys x per_key jobs (`shape`: keys, per_key, arrival) in the caller's
    transaction `conn`. Key by key: one `delay_many` per key, as the drains always
    did; interleaved: one `enqueue_many` of the whole round-robin list."""
    keys, per_key, arrival = shape
    if arrival == KEY_BY_KEY:
        bound = topia.actions[action].options(connection=conn)
        for k in range(keys):
            bound.delay_many(queue(k), [params(k, i) for i in range(per_key)])
        return
    pairs = arrival_order(keys, per_key, arrival)
    requests = [JobRequest(queue(k), action, params(k, i)) for k, i in pairs]
    topia.enqueue_many(requests, connection=conn)
