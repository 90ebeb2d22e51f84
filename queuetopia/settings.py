"""A topia's settings, checked once when it is made and frozen: what the engine reads
of its configuration (docs/api.md, "Queuetopia")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .durations import positive_seconds
from .validation import check_concurrency, check_name


@dataclass(frozen=True)
class Settings:
    """Each default lives in the signature of `Queuetopia`, the one place that makes
    these."""

    scope: str
    poll_interval: float
    concurrency: int
    lock_ttl: float
    job_retention: timedelta | None
    max_params_bytes: int
    # A larger result is dropped with a warning and stored as None (docs/decisions.md).
    max_result_bytes: int
    pool_size: int
    # How long the pools' and workers' connections wait for any reply, commits
    # included, which PostgreSQL's statement_timeout does not cover: a commit that
    # waits for a synchronous standby that is gone (docs/deploying.md, "Failover").
    commit_timeout: float | None
    prepared_statements: bool

    def __post_init__(self) -> None:
        check_name("scope", self.scope)
        check_concurrency(self.concurrency)
        positive_seconds(self.poll_interval, "poll_interval")
        positive_seconds(self.lock_ttl, "lock_ttl")
        if self.commit_timeout is not None:
            positive_seconds(self.commit_timeout, "commit_timeout")

    @classmethod
    def of(
        cls,
        *,
        poll_interval: float | timedelta,
        lock_ttl: float | timedelta,
        commit_timeout: float | timedelta | None,
        **rest: Any,
    ) -> Settings:
        """The settings, from durations given as seconds or timedeltas."""
        return cls(
            poll_interval=positive_seconds(poll_interval, "poll_interval"),
            lock_ttl=positive_seconds(lock_ttl, "lock_ttl"),
            commit_timeout=(
                None
                if commit_timeout is None
                else positive_seconds(commit_timeout, "commit_timeout")
            ),
            **rest,
        )

    @property
    def prepare_threshold(self) -> int | None:
        """psycopg's: behind PgBouncer in transaction mode, no prepared statements."""
        return 5 if self.prepared_statements else None
