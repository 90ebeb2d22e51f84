"""OpenTelemetry spans around enqueue and perform, when opentelemetry-api is installed
(the `otel` extra). The enqueue's trace context travels in the job's `meta`, so the
perform span is a child of the span that enqueued the job, on whichever node."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import context, propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode

    HAVE_OTEL = True
except ImportError:  # pragma: no cover - exercised only without the extra
    HAVE_OTEL = False

if TYPE_CHECKING:
    from .models import Job, Outcome

TRACE_KEY = "trace"


def tracing_configured() -> bool:
    """Whether an application installed a tracer provider. Without one, spans would
    be non-recording, and building them for every job is pure cost."""
    return HAVE_OTEL and not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


@contextmanager
def enqueue_span(scope: str, queue: str, action: str, count: int) -> Iterator[dict[str, Any]]:
    """A producer span; yields the job meta that carries its context."""
    if not tracing_configured():
        yield {}
        return
    tracer = trace.get_tracer("queuetopia")
    attributes: dict[str, Any] = {
        "queuetopia.scope": scope,
        "queuetopia.queue": queue,
        "queuetopia.action": action,
        "queuetopia.jobs": count,
    }
    with tracer.start_as_current_span(
        f"enqueue {action}", kind=SpanKind.PRODUCER, attributes=attributes
    ):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield {TRACE_KEY: carrier} if carrier else {}


class TracingObserver:
    """A consumer span around each attempt, current while the action runs."""

    def __init__(self) -> None:
        self._local = threading.local()

    def job_started(self, job: Job) -> None:
        parent = propagate.extract(job.meta.get(TRACE_KEY) or {})
        span = trace.get_tracer("queuetopia").start_span(
            f"perform {job.action}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "queuetopia.scope": job.scope,
                "queuetopia.queue": job.queue,
                "queuetopia.action": job.action,
                "queuetopia.job_id": job.id,
                "queuetopia.attempt": job.attempts,
            },
        )
        token = context.attach(trace.set_span_in_context(span))
        self._local.current = (span, token)

    def job_ended(self, job: Job, outcome: Outcome, seconds: float) -> None:
        current = getattr(self._local, "current", None)
        if current is None:
            return
        span, token = current
        self._local.current = None
        if outcome.failed:
            span.set_status(Status(StatusCode.ERROR, (outcome.error or "").splitlines()[0]))
        span.end()
        context.detach(token)

    def lease_lost(self, queue: str) -> None:
        pass
