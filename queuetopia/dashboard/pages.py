"""The pages: overview, queue, job and workers. Reads only, through the public API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ..errors import QueuetopiaError, ValidationError
from ..models import Job, MinuteCounts, QueueInfo
from . import charts, readings
from .context import dashboard_of
from .readings import STATUS_ORDER

OVERVIEW_ROWS = 500  # more than a person reads; the filter narrows the rest down
LINE_PAGE = 50
JOB_PAGE_MESSAGES = {
    "retried": "Retried: the job is due now, at its place in its queue.",
    "cancelled": "Cancelled: its queue moves on.",
    "cancelling": "Cancel requested: its worker stops it, then its queue moves on"
    " (unless it is done first).",
}
QUEUE_PAGE_MESSAGES = {
    "paused": "Paused: the queue starts no new job (a running one finishes).",
    "resumed": "Resumed.",
}


async def overview(request: Request) -> Response:
    dashboard = dashboard_of(request)
    pattern = request.query_params.get("q", "").strip()
    status = request.query_params.get("status", "")
    if status and status not in {s.value for s in STATUS_ORDER}:
        status = ""
    queues, rows, counts = await run_in_threadpool(_overview_data, request)
    shown = [row for row in rows if readings.matches(row, pattern, status)]
    per_minute = await _counts(request, None)
    limits = await run_in_threadpool(dashboard.topia.list_limits)
    return dashboard.render(
        request,
        "overview.html",
        "overview_live.html",
        rows=shown[:OVERVIEW_ROWS],
        matching=len(shown),
        total=len(rows),
        counts=counts,
        pattern=pattern,
        status=status,
        statuses=[s.value for s in STATUS_ORDER],
        charts=_charts(request, queues, None, per_minute),
        limits=limits,
    )


def _overview_data(
    request: Request,
) -> tuple[list[QueueInfo], list[readings.QueueRow], dict[str, int]]:
    dashboard = dashboard_of(request)
    queues = dashboard.topia.list_queues()
    dashboard.history.record(datetime.now(UTC), queues)
    rows = readings.queue_rows(dashboard.topia, queues)
    return queues, rows, readings.status_counts(rows)


async def _counts(request: Request, queue: str | None) -> list[MinuteCounts]:
    dashboard = dashboard_of(request)
    return await run_in_threadpool(dashboard.counts.per_minute, dashboard.topia, queue)


def _charts(
    request: Request,
    queues: list[QueueInfo],
    queue: str | None,
    counts_per_minute: list[MinuteCounts],
) -> list[charts.Chart]:
    history = dashboard_of(request).history
    where = f"queue {queue}" if queue else "all queues"
    ages = history.per_minute(datetime.now(UTC), queues, queue)
    return [
        charts.throughput_chart(counts_per_minute, f"Jobs done and failed per minute, {where}"),
        charts.age_chart(ages, f"Oldest blocked head, {where}"),
    ]


async def queue(request: Request) -> Response:
    dashboard = dashboard_of(request)
    name = request.query_params.get("name", "")
    page = _int(request.query_params.get("page", "1"), 1)
    queues, rows, _ = await run_in_threadpool(_overview_data, request)
    row = next((r for r in rows if r.info.queue == name), None)
    if row is None:
        raise HTTPException(404, f"no queue {name!r} in scope {dashboard.topia.scope!r}")
    line, failed = await run_in_threadpool(_queue_jobs, request, name, page)
    per_minute = await _counts(request, name)
    return dashboard.render(
        request,
        "queue.html",
        "queue_live.html",
        row=row,
        line=line[:LINE_PAGE],
        more=len(line) > LINE_PAGE,
        page=page,
        first_position=(page - 1) * LINE_PAGE + 1,
        failed=failed,
        charts=_charts(request, queues, name, per_minute),
        message=QUEUE_PAGE_MESSAGES.get(request.query_params.get("done", ""), ""),
    )


def _queue_jobs(request: Request, name: str, page: int) -> tuple[list[Job], list[Job]]:
    topia = dashboard_of(request).topia
    line = topia.queue_line(name, limit=LINE_PAGE + 1, offset=(page - 1) * LINE_PAGE)
    failed = topia.list_jobs(queue=name, state="failed", limit=LINE_PAGE)
    return (
        [readings.shown(topia, j) for j in line],
        [readings.shown(topia, j) for j in failed],
    )


async def job(request: Request) -> Response:
    dashboard = dashboard_of(request)
    job_id = request.path_params["job_id"]
    found = await run_in_threadpool(dashboard.topia.get_job, job_id)
    if found is None:
        raise HTTPException(404, f"no job {job_id} in scope {dashboard.topia.scope!r}")
    queue = await run_in_threadpool(dashboard.topia.get_queue, found.queue)
    rated = queue if queue and queue.head and queue.head.id == found.id else None
    return dashboard.render(
        request,
        "job.html",
        job=readings.shown(dashboard.topia, found),
        rated=rated if rated and rated.rate_limited_until else None,
        held=rated.held_by if rated else None,
        message=JOB_PAGE_MESSAGES.get(request.query_params.get("done", ""), ""),
        problem="",
    )


async def workers(request: Request) -> Response:
    dashboard = dashboard_of(request)
    leases = await run_in_threadpool(dashboard.topia.list_leases)
    nodes: dict[str, list[Any]] = {}
    for lease in leases:
        nodes.setdefault(lease.owner, []).append(lease)
    return dashboard.render(
        request,
        "workers.html",
        "workers_live.html",
        nodes=nodes,
        lock_ttl=dashboard.topia.lock_ttl,
    )


def _int(text: str, default: int) -> int:
    try:
        return max(int(text), 1)
    except ValueError:
        return default


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _problem(request, exc.status_code, exc.detail)


async def _library_error(request: Request, exc: Exception) -> Response:
    """A failure of the library: one line for the operator (passwords hidden), no
    traceback. Bad input is the visitor's mistake (400); anything else, the database's."""
    status = 400 if isinstance(exc, ValidationError) else 503
    return _problem(request, status, str(exc) or type(exc).__name__)


def _problem(request: Request, status: int, detail: str) -> HTMLResponse:
    return dashboard_of(request).render(
        request, "problem.html", status_code=status, status=status, detail=detail
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    HTTPException: _http_error,
    QueuetopiaError: _library_error,
}
