"""Unmanaged models over queuetopia's tables, for the read-only admin (admin.py).
Queuetopia's SQL owns the tables; Django never creates, alters or writes them."""

from __future__ import annotations

from django.db import models


class Queue(models.Model):
    """A queue of a scope. The table's key is (scope, queue); every query of the admin
    is limited to one scope, where the queue name alone is unique."""

    queue = models.TextField(primary_key=True)
    scope = models.TextField()
    paused = models.BooleanField()
    ready_at = models.DateTimeField(null=True)

    class Meta:
        managed = False
        db_table = "queuetopia_queues"
        ordering = ("queue",)

    def __str__(self) -> str:
        return str(self.queue)


class Job(models.Model):
    id = models.BigIntegerField(primary_key=True)
    scope = models.TextField()
    queue = models.TextField()
    seq = models.BigIntegerField()
    action = models.TextField()
    params = models.JSONField()
    state = models.TextField()
    attempts = models.IntegerField()
    max_attempts = models.IntegerField()
    scheduled_at = models.DateTimeField()
    attempted_at = models.DateTimeField(null=True)
    attempted_by = models.TextField(null=True)
    next_attempt_at = models.DateTimeField(null=True)
    done_at = models.DateTimeField(null=True)
    error = models.TextField(null=True)
    result = models.JSONField(null=True)
    inserted_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "queuetopia_jobs"
        ordering = ("-id",)

    def __str__(self) -> str:
        return f"job {self.id} ({self.action} in {self.queue})"
