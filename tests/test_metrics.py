"""Prometheus metrics from a worker's events and from the database."""

from __future__ import annotations

import socket
import urllib.request

from queuetopia import JobState, Queuetopia
from queuetopia.metrics import PrometheusMetrics

from .helpers import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_count_attempts_and_report_blocked_queues(topia: Queuetopia) -> None:
    @topia.action("ok")
    def ok() -> None: ...

    @topia.action("fail")
    def fail() -> None:
        raise RuntimeError("down")

    ok.delay("a")
    ok.delay("a")
    bad = fail.delay("b")
    metrics = PrometheusMetrics(topia)
    port = free_port()
    metrics.serve(port, addr="127.0.0.1")
    worker = topia.worker()
    worker.observers.append(metrics)
    with worker:
        wait_for(
            lambda: topia.get_job(bad.id).error and len(topia.list_jobs(state=JobState.DONE)) == 2
        )
    scope = topia.scope
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert f'queuetopia_jobs_started_total{{action="ok",scope="{scope}"}} 2.0' in text
    assert f'queuetopia_jobs_succeeded_total{{action="ok",scope="{scope}"}} 2.0' in text
    assert f'queuetopia_jobs_failed_total{{action="fail",scope="{scope}"}} 1.0' in text
    assert f'queuetopia_queues_blocked{{scope="{scope}"}} 1.0' in text
    assert f'queuetopia_job_duration_seconds_count{{action="ok",scope="{scope}"}} 2.0' in text
    assert "queuetopia_oldest_blocked_head_seconds" in text


def test_worker_command_serves_metrics(dsn: str, topia: Queuetopia) -> None:
    import psycopg

    from .procs import LOG_TABLE, workers

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(LOG_TABLE)
    port = free_port()
    with workers(dsn, topia.scope) as group:
        worker = group.start("--metrics-port", str(port))
        worker.wait_ready()
        job = topia.create_job("q", "step", {"n": 1})
        wait_for(lambda: topia.get_job(job.id).state == JobState.DONE, timeout=20)
        url = f"http://127.0.0.1:{port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
    assert f'queuetopia_jobs_succeeded_total{{action="step",scope="{topia.scope}"}} 1.0' in text
