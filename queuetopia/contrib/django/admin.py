"""The admin lists the queues and jobs of the QUEUETOPIA topia's scope, read-only:
operators change them with `manage.py queuetopia retry|cancel|pause|resume`."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Model, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from queuetopia import QueueInfo

from .conf import get_topia
from .models import Job, Queue
from .task_actions import shown_action


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """No add, change or delete: the rows belong to queuetopia."""

    def has_add_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).filter(scope=get_topia().scope)


class QueueChangeList(ChangeList):
    """The page's queues with what `list_queues()` says of each (status, head...)."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        infos = {info.queue: info for info in get_topia().list_queues()}
        self.result_list = list(self.result_list)
        for queue in self.result_list:
            queue.info = infos.get(queue.queue)


def _info(queue: Queue) -> QueueInfo | None:
    info: QueueInfo | None = getattr(queue, "info", None)
    return info


@admin.register(Queue)
class QueueAdmin(ReadOnlyAdmin):
    list_display = ("queue_link", "status", "pending", "head", "last_error", "locked_by", "paused")
    list_filter = ("paused",)
    search_fields = ("queue",)
    list_display_links = None  # a queue's page is its jobs: the link in `queue`

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return QueueChangeList

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return obj is None and super().has_view_permission(request, obj)

    @admin.display(description="queue", ordering="queue")
    def queue_link(self, queue: Queue) -> SafeString:
        return _jobs_link(queue.queue)

    @admin.display(description="status")
    def status(self, queue: Queue) -> str:
        info = _info(queue)
        return info.status.value if info else "-"

    @admin.display(description="pending")
    def pending(self, queue: Queue) -> int | str:
        info = _info(queue)
        return info.pending if info else "-"

    @admin.display(description="head")
    def head(self, queue: Queue) -> str:
        info = _info(queue)
        if info is None or info.head is None:
            return "-"
        return f"job {info.head.id} {shown_action(info.head.action, info.head.params)}"

    @admin.display(description="last error")
    def last_error(self, queue: Queue) -> str:
        info = _info(queue)
        return (info.last_error or "-") if info else "-"

    @admin.display(description="locked by")
    def locked_by(self, queue: Queue) -> str:
        info = _info(queue)
        return (info.locked_by or "-") if info else "-"


def _jobs_link(queue: str) -> SafeString:
    url = reverse("admin:queuetopia_job_changelist")
    return format_html('<a href="{}?queue={}">{}</a>', url, queue, queue)


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = ("id", "queue", "shown_action", "state", "attempts", "scheduled_at", "done_at")
    list_filter = ("state",)
    search_fields = ("=queue", "=action")
    show_full_result_count = False  # no second count(*) over the whole table
    exclude = ("params",)
    readonly_fields = ("shown_params",)

    @admin.display(description="action", ordering="action")
    def shown_action(self, job: Job) -> str:
        """A Django task's job shows its task's import path (docs/django.md)."""
        return shown_action(job.action, job.params)

    @admin.display(description="params")
    def shown_params(self, job: Job) -> str:
        """The params with the action's sensitive ones masked, as the CLI shows them."""
        action = get_topia().actions.get(job.action)
        params = action.shown_params(job.params) if action else dict(job.params)
        return ", ".join(f"{k}={v!r}" for k, v in params.items()) or "-"
