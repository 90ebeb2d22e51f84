"""OpenTelemetry: the perform span is a child of the enqueue span, across the queue."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from queuetopia import JobState, Queuetopia

from .helpers import wait_for


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


def test_perform_span_continues_the_enqueue_trace(
    topia: Queuetopia, spans: InMemorySpanExporter
) -> None:
    seen: list[int] = []

    @topia.action("traced")
    def traced() -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)

    @topia.action("broken")
    def broken() -> None:
        raise ValueError("nope")

    with trace.get_tracer("test").start_as_current_span("request") as request:
        job = traced.delay("q")
    bad = broken.delay("other")
    assert job.meta["trace"]["traceparent"]
    with topia.worker():
        wait_for(lambda: topia.get_job(job.id).state == JobState.DONE)
        wait_for(lambda: topia.get_job(bad.id).error)
    trace_id = request.get_span_context().trace_id
    assert seen == [trace_id]
    finished = {s.name: s for s in spans.get_finished_spans()}
    perform, enqueue = finished["perform traced"], finished["enqueue traced"]
    assert perform.context.trace_id == trace_id
    assert perform.parent is not None and perform.parent.span_id == enqueue.context.span_id
    assert perform.attributes["queuetopia.job_id"] == job.id
    assert not finished["perform broken"].status.is_ok
