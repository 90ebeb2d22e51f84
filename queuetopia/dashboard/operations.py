"""Operator actions: retry or cancel a job, pause or resume a queue. Each is a POST that
must carry the CSRF token of the page it came from, and is refused in read-only mode;
each goes through the same public call as the CLI."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..errors import InvalidTransition, JobNotFound
from ..models import JobState
from . import readings
from .context import dashboard_of, path_for

MAX_FORM_BYTES = 16_384  # a reason and a token; anything larger is not ours


async def retry(request: Request) -> Response:
    await _checked_form(request)
    job_id = request.path_params["job_id"]
    return await _on_job(request, job_id, "retried", dashboard_of(request).topia.retry_job)


async def cancel(request: Request) -> Response:
    form = await _checked_form(request)
    job_id = request.path_params["job_id"]
    reason = form.get("reason", "").strip() or "by operator"
    topia = dashboard_of(request).topia

    def cancel_job(job_id: int) -> str:
        running = topia.cancel_job(job_id, reason).state == JobState.RUNNING
        return "cancelling" if running else "cancelled"

    return await _on_job(request, job_id, "cancelled", cancel_job)


async def pause(request: Request) -> Response:
    form = await _checked_form(request)
    return await _on_queue(request, form, "paused", dashboard_of(request).topia.pause_queue)


async def resume(request: Request) -> Response:
    form = await _checked_form(request)
    return await _on_queue(request, form, "resumed", dashboard_of(request).topia.resume_queue)


async def _on_job(request: Request, job_id: int, done: str, call: Callable[[int], Any]) -> Response:
    """Run `call(job_id)`; back to the job page, saying what happened (`done`, or
    what `call` returns, if a string) or why not."""
    dashboard = dashboard_of(request)
    try:
        said = await run_in_threadpool(call, job_id)
    except JobNotFound:
        raise HTTPException(404, f"no job {job_id} in scope {dashboard.topia.scope!r}") from None
    except InvalidTransition as exc:
        job = await run_in_threadpool(dashboard.topia.get_job, job_id)
        return dashboard.render(
            request,
            "job.html",
            status_code=409,
            job=readings.shown(dashboard.topia, job) if job else None,
            rated=None,
            held=None,
            message="",
            problem=str(exc),
        )
    done = said if isinstance(said, str) else done
    return RedirectResponse(path_for(request, "job", job_id=job_id, done=done), 303)


async def _on_queue(
    request: Request, form: dict[str, str], done: str, call: Callable[[str], None]
) -> Response:
    dashboard = dashboard_of(request)
    name = form.get("queue", "")
    queues = await run_in_threadpool(dashboard.topia.list_queues)
    if name not in {q.queue for q in queues}:  # pausing would create the queue
        raise HTTPException(404, f"no queue {name!r} in scope {dashboard.topia.scope!r}")
    await run_in_threadpool(call, name)
    return RedirectResponse(path_for(request, "queue", name=name, done=done), 303)


async def _checked_form(request: Request) -> dict[str, str]:
    """The form of an operator action, once it has passed read-only mode and CSRF."""
    dashboard = dashboard_of(request)
    if dashboard.access.read_only:
        raise HTTPException(403, "this dashboard is read-only")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "form too large")
    form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    if not dashboard.access.csrf_valid(request, form):
        raise HTTPException(403, "missing or invalid CSRF token: reload the page and try again")
    return form
