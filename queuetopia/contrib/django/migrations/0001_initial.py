"""SQL version 1, and the state of the unmanaged models over its tables."""

from django.db import migrations, models

from queuetopia.contrib.django.schema import version_migration

_UNMANAGED = {"managed": False}

Migration = version_migration(
    __name__,
    [
        migrations.CreateModel(
            name="Queue",
            fields=[
                ("queue", models.TextField(primary_key=True, serialize=False)),
                ("scope", models.TextField()),
                ("paused", models.BooleanField()),
                ("ready_at", models.DateTimeField(null=True)),
            ],
            options={**_UNMANAGED, "db_table": "queuetopia_queues", "ordering": ("queue",)},
        ),
        migrations.CreateModel(
            name="Job",
            fields=[
                ("id", models.BigIntegerField(primary_key=True, serialize=False)),
                ("scope", models.TextField()),
                ("queue", models.TextField()),
                ("seq", models.BigIntegerField()),
                ("action", models.TextField()),
                ("params", models.JSONField()),
                ("state", models.TextField()),
                ("attempts", models.IntegerField()),
                ("max_attempts", models.IntegerField()),
                ("scheduled_at", models.DateTimeField()),
                ("attempted_at", models.DateTimeField(null=True)),
                ("attempted_by", models.TextField(null=True)),
                ("next_attempt_at", models.DateTimeField(null=True)),
                ("done_at", models.DateTimeField(null=True)),
                ("error", models.TextField(null=True)),
                ("result", models.JSONField(null=True)),
                ("inserted_at", models.DateTimeField()),
                ("updated_at", models.DateTimeField()),
            ],
            options={**_UNMANAGED, "db_table": "queuetopia_jobs", "ordering": ("-id",)},
        ),
    ],
)
