"""The listener is fed untrusted input: any role may NOTIFY the channel with anything
(docs/decisions.md). No payload stops it, a listener thread that dies anyway is started
again, and its health is a metric (docs/monitoring.md)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import psycopg
import pytest

from queuetopia import Queuetopia
from queuetopia.db.notify import Listener
from queuetopia.db.queries import CHANNEL
from queuetopia.metrics import PrometheusMetrics

from .helpers import wait_for

# The worker polls once a minute here: only a notification explains a fast start.
POLL = 60.0
WAKE_BOUND = 5.0  # seconds from an enqueue to its job's start, with room for a busy machine


def hostile_payloads(scope: str) -> list[str]:
    return [
        "not json",
        "",
        json.dumps([scope, {"a": 1}]),  # a queue that is not a string
        json.dumps([scope, ["q"]]),
        json.dumps([scope, None]),
        json.dumps([scope, 7]),
        json.dumps([{"a": 1}, "q"]),  # a scope that is not a string
        json.dumps([scope]),  # wrong arity
        json.dumps([scope, "q", "extra", ""]),  # several queues, and "every queue"
        json.dumps([scope, "", "x" * 300]),  # a name too long to be a queue
        json.dumps({"scope": scope, "queue": "q"}),
        json.dumps("just a string"),
        "null",
        "[" * 3000 + "]" * 3000,  # nested deeper than the json module recurses
        json.dumps([scope, "x" * 7000]),  # huge (the limit is 8000 bytes)
        json.dumps([scope, "\u2603 \U0001f600 \u0000"]),  # unicode, NUL escaped in JSON
        json.dumps([scope, "q\ud800"]),  # a lone surrogate, escaped
        # Cancels (docs/flow-control.md): of no job here, or not well formed.
        json.dumps({"scope": scope, "cancel": [[999_999_999, "2026-12-06T10:00:00+00:00"]]}),
        json.dumps({"scope": scope, "cancel": [[1, "2026-13-45T99:00:00+00:00"]]}),
        json.dumps({"scope": scope, "cancel": [[1, None]]}),
        json.dumps({"scope": scope, "cancel": {"1": "x"}}),
        json.dumps({"scope": [scope], "cancel": []}),
    ]


def notify_raw(dsn: str, payloads: list[str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for payload in payloads:
            conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))


def started_within(topia: Queuetopia, seconds: float) -> float:
    """Enqueue a job into a new queue and return how long it took to start."""
    started = threading.Event()
    name = f"probe{time.monotonic_ns()}"

    @topia.action(name)
    def probe() -> None:
        started.set()

    began = time.monotonic()
    probe.delay(name)
    assert started.wait(seconds), f"an idle worker did not start a job within {seconds}s"
    return time.monotonic() - began


def test_no_payload_stops_the_listener(dsn: str, make_topia: Any) -> None:
    topia = make_topia(poll_interval=POLL)
    with topia.worker(concurrency=2) as worker:
        wait_for(lambda: worker.listener_healthy, timeout=10, what="the listener")
        started_within(topia, WAKE_BOUND)  # warm: the worker is idle and listening
        # A queue to skip: what made a non-string queue raise in the dispatch.
        worker._dispatcher.skips.add("someone-elses")  # type: ignore[union-attr]
        notify_raw(dsn, hostile_payloads(topia.scope))
        time.sleep(0.5)  # let the listener read them all
        assert worker.listener_healthy
        took = started_within(topia, WAKE_BOUND)
        assert worker.listener_healthy
    assert took < WAKE_BOUND


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_listener_thread_that_dies_is_started_again(
    make_topia: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever ends the thread (here a BaseException out of its connection loop),
    the worker starts a new listener; meanwhile `listener_healthy` says false."""
    original = Listener._listen
    deaths: list[float] = []

    def dies_once(self: Listener, *args: Any) -> None:
        if not deaths:
            deaths.append(time.monotonic())
            raise SystemExit("the listener thread ends")
        original(self, *args)

    monkeypatch.setattr(Listener, "_listen", dies_once)
    topia = make_topia(poll_interval=POLL)
    metrics = PrometheusMetrics(topia)
    worker = topia.worker(concurrency=1)
    worker.observers.append(metrics)
    with worker:
        wait_for(lambda: deaths, timeout=10, what="the listener to die")
        wait_for(lambda: worker.listener_healthy, timeout=10, what="a new listener")
        assert (
            metrics.registry.get_sample_value("queuetopia_listener_healthy", {"scope": topia.scope})
            == 1.0
        )
        started_within(topia, WAKE_BOUND)


def test_listener_health_is_a_metric_that_follows_the_connection(dsn: str, make_topia: Any) -> None:
    topia = make_topia(poll_interval=POLL)
    metrics = PrometheusMetrics(topia)
    worker = topia.worker(concurrency=1)
    worker.observers.append(metrics)

    def gauge() -> float | None:
        return metrics.registry.get_sample_value(
            "queuetopia_listener_healthy", {"scope": topia.scope}
        )

    with worker:
        wait_for(lambda: gauge() == 1.0, timeout=10, what="the gauge to say healthy")
        # Break the listener's connection: the gauge drops, then comes back.
        seen_down = threading.Event()

        def watch() -> None:
            while not seen_down.is_set() and gauge() != 0.0:
                time.sleep(0.001)
            seen_down.set()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query = %s AND pid <> pg_backend_pid()",
                (f"LISTEN {CHANNEL}",),
            )
        assert seen_down.wait(10), "the gauge never said unhealthy"
        wait_for(lambda: gauge() == 1.0, timeout=10, what="the gauge to recover")
        started_within(topia, WAKE_BOUND)
