"""Prometheus metrics for a worker (the `metrics` extra: prometheus-client).

    metrics = PrometheusMetrics(topia)
    worker = topia.worker()
    worker.observers.append(metrics)
    metrics.serve(9464)

Counters and the duration histogram come from the worker's events; the blocked-queue
gauges are read from the database at each scrape, so every worker reports the whole
scope and any one of them can be scraped for alerts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .db import store
from .errors import ConfigurationError

if TYPE_CHECKING:
    from queuetopia import Queuetopia

    from .models import Job, Outcome

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
    from prometheus_client.core import GaugeMetricFamily

    HAVE_PROMETHEUS = True
except ImportError:  # pragma: no cover - exercised only without the extra
    HAVE_PROMETHEUS = False


class PrometheusMetrics:
    def __init__(self, topia: Queuetopia, registry: Any = None) -> None:
        if not HAVE_PROMETHEUS:
            raise ConfigurationError(
                "metrics need prometheus-client: pip install 'queuetopia[metrics]'"
            )
        self.topia = topia
        self.registry = registry if registry is not None else CollectorRegistry()
        labels = ["scope", "action"]
        self.started = Counter(
            "queuetopia_jobs_started", "Attempts started.", labels, registry=self.registry
        )
        self.succeeded = Counter(
            "queuetopia_jobs_succeeded", "Attempts that succeeded.", labels, registry=self.registry
        )
        self.failed = Counter(
            "queuetopia_jobs_failed", "Attempts that failed.", labels, registry=self.registry
        )
        self.snoozed = Counter(
            "queuetopia_jobs_snoozed",
            "Attempts that snoozed (not counted as attempts).",
            labels,
            registry=self.registry,
        )
        self.cancelled = Counter(
            "queuetopia_jobs_cancelled_running",
            "Attempts an operator cancelled while they ran.",
            labels,
            registry=self.registry,
        )
        self.duration = Histogram(
            "queuetopia_job_duration_seconds", "Attempt duration.", labels, registry=self.registry
        )
        self.leases_lost = Counter(
            "queuetopia_lease_renewals_lost",
            "Leases this worker lost before it released them.",
            ["scope"],
            registry=self.registry,
        )
        self.parked = Counter(
            "queuetopia_jobs_parked",
            "Heads parked for blocking their queue longer than max_blocked.",
            labels,
            registry=self.registry,
        )
        self.listener = Gauge(
            "queuetopia_listener_healthy",
            "1 while the worker's LISTEN connection is up, else 0 (it wakes only by polls).",
            ["scope"],
            registry=self.registry,
        )
        self.registry.register(_BlockedCollector(topia))

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Serve /metrics over HTTP from a daemon thread."""
        start_http_server(port, addr=addr, registry=self.registry)

    # -- Observer --------------------------------------------------------------------

    def job_started(self, job: Job) -> None:
        self.started.labels(job.scope, job.action).inc()

    def job_ended(self, job: Job, outcome: Outcome, seconds: float) -> None:
        if outcome.ok:
            counter = self.succeeded
        elif outcome.snooze is not None:
            counter = self.snoozed
        else:
            counter = self.failed if outcome.failed else self.cancelled
        counter.labels(job.scope, job.action).inc()
        self.duration.labels(job.scope, job.action).observe(seconds)

    def lease_lost(self, queue: str) -> None:
        self.leases_lost.labels(self.topia.scope).inc()

    def job_parked(self, job: Job) -> None:
        self.parked.labels(job.scope, job.action).inc()

    def listener_health(self, healthy: bool) -> None:
        self.listener.labels(self.topia.scope).set(1 if healthy else 0)


class _BlockedCollector:
    def __init__(self, topia: Queuetopia) -> None:
        self.topia = topia

    def describe(self) -> Iterator[Any]:
        return iter(())  # collected live; nothing to describe up front

    def collect(self) -> Iterator[Any]:
        with self.topia.connection() as conn:
            blocked, oldest, rated = store.queue_blocked_stats(conn, scope=self.topia.scope)
        labels = ["scope"]
        count = GaugeMetricFamily(
            "queuetopia_queues_blocked", "Queues whose head is failing.", labels=labels
        )
        count.add_metric([self.topia.scope], blocked)
        age = GaugeMetricFamily(
            "queuetopia_oldest_blocked_head_seconds",
            "How long the oldest blocked head has been failing.",
            labels=labels,
        )
        age.add_metric([self.topia.scope], oldest)
        waiting = GaugeMetricFamily(
            "queuetopia_queues_rate_limited",
            "Queues whose due head waits for a rate limit's budget.",
            labels=labels,
        )
        waiting.add_metric([self.topia.scope], rated)
        yield count
        yield age
        yield waiting
