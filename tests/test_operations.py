"""Operations on many jobs and queues (docs/operations.md), in the API and the CLI:
selections by queue glob, state, action and time; dry runs that print exactly what
would change; confirmation above a threshold; who did what and why, recorded and
shown; inspect's failed counts and --status filter; bare `@topia.action` names."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from queuetopia import InvalidTransition, JobState, Queuetopia, Selection, ValidationError
from queuetopia.operations import operator
from queuetopia.testing import drain
from queuetopia_cli import ops_cmd
from queuetopia_cli.main import app

from .apps.shop import SCOPE_ENV, build
from .test_cli import as_json, cli, ok

APP = "tests.apps.shop:topia"


@pytest.fixture
def shop(dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Queuetopia]:
    monkeypatch.setenv("QUEUETOPIA_DSN", dsn)
    monkeypatch.setenv(SCOPE_ENV, f"ops-{uuid.uuid4().hex[:10]}")
    topia = build()
    yield topia
    topia.close()


def failed_charges(topia: Queuetopia, queues: list[str]) -> list[int]:
    charge = topia.actions["charge"].options(max_attempts=1)
    ids = [charge.delay(q, account="acme", amount_cents=1).id for q in queues]
    drain(topia)
    return ids


# -- API ------------------------------------------------------------------------------


def test_retry_jobs_over_a_selection_records_who_and_why(shop: Queuetopia) -> None:
    ids = failed_charges(shop, ["webhooks:1", "webhooks:2", "billing"])
    selection = Selection(queue_pattern="webhooks:*")
    would = shop.retry_jobs(selection, dry_run=True)
    assert [j.id for j in would] == ids[:2] and all(j.state == JobState.FAILED for j in would)
    assert shop.get_job(ids[0]).state == JobState.FAILED  # type: ignore[union-attr]

    done = shop.retry_jobs(selection, by="ana", reason="partner is back")
    assert [j.id for j in done] == ids[:2] and all(j.state == JobState.PENDING for j in done)
    [entry] = done[0].operator_log
    assert (entry.action, entry.by, entry.reason) == ("retry", "ana", "partner is back")
    assert shop.get_job(ids[2]).state == JobState.FAILED  # type: ignore[union-attr]
    assert shop.retry_jobs(selection) == []  # nothing failed there any more


def test_selections_filter_by_action_state_and_time(shop: Queuetopia) -> None:
    failed_charges(shop, ["a"])
    mail = shop.actions["send_mail"].delay("a", to="x@example.com")
    assert [j.id for j in shop.select_jobs(Selection(states=("pending",)))] == [mail.id]
    assert shop.select_jobs(Selection(action="send_mail")) == []  # default: failed only
    assert len(shop.select_jobs(Selection(action="charge", since=timedelta(hours=1)))) == 1
    future = datetime.now(UTC) + timedelta(hours=1)
    assert shop.select_jobs(Selection(since=future)) == []
    with pytest.raises(ValidationError, match="cannot cancel cancelled jobs"):
        shop.select_jobs(Selection(states=("cancelled",)), verb="cancel")
    with pytest.raises(ValidationError, match="unknown job state 'stuck'"):
        shop.select_jobs(Selection(states=("stuck",)))


def test_cancel_jobs_and_the_glob_is_not_sql(shop: Queuetopia) -> None:
    ids = failed_charges(shop, ["a_b", "axb", "a%b"])
    assert [j.queue for j in shop.cancel_jobs(Selection(queue_pattern="a_b"))] == ["a_b"]
    rest = shop.cancel_jobs(Selection(queue_pattern="a?b"))
    assert sorted(j.queue for j in rest) == ["a%b", "axb"]
    assert all(shop.get_job(i).state == JobState.CANCELLED for i in ids)  # type: ignore[union-attr]


def test_pause_and_resume_queues_by_pattern(shop: Queuetopia) -> None:
    for queue in ("webhooks:1", "webhooks:2", "mail"):
        shop.actions["send_mail"].delay(queue, to="x@example.com")
    assert shop.pause_queues("webhooks:*", dry_run=True) == ["webhooks:1", "webhooks:2"]
    assert not any(q.paused for q in shop.list_queues())
    assert shop.pause_queues("webhooks:*", by="ops", reason="partner outage") == [
        "webhooks:1",
        "webhooks:2",
    ]
    assert shop.pause_queues("webhooks:*") == []  # already paused
    assert drain(shop).ran == 1
    info = {q.queue: q for q in shop.list_queues()}
    [entry] = info["webhooks:1"].operator_log
    assert (entry.action, entry.by, entry.reason) == ("pause", "ops", "partner outage")
    assert shop.resume_queues(["webhooks:2"]) == ["webhooks:2"]
    assert drain(shop).ran == 1


def test_single_operator_calls_are_recorded_with_the_os_user(shop: Queuetopia) -> None:
    [job_id] = failed_charges(shop, ["a"])
    retried = shop.retry_job(job_id)
    assert retried.operator_log[-1].by == operator()
    cancelled = shop.cancel_job(job_id, "wrong amount", by="bo")
    assert [(e.action, e.by) for e in cancelled.operator_log] == [
        ("retry", operator()),
        ("cancel", "bo"),
    ]
    with pytest.raises(InvalidTransition, match="it is cancelled"):
        shop.cancel_job(job_id)


# -- CLI ------------------------------------------------------------------------------


def test_cli_dry_run_prints_what_would_change_and_changes_nothing(shop: Queuetopia) -> None:
    ids = failed_charges(shop, ["webhooks:1", "webhooks:2"])
    out = ok("retry", APP, "--queue-pattern", "webhooks:*", "--dry-run").stdout
    assert f"dry run: would retry 2 job(s): job {ids[0]}, job {ids[1]}" in out
    data = as_json("retry", APP, "--queue-pattern", "webhooks:*", "--dry-run")
    assert data["dry_run"] is True and [j["id"] for j in data["retry"]] == ids
    assert all(shop.get_job(i).state == JobState.FAILED for i in ids)  # type: ignore[union-attr]

    data = as_json("retry", APP, "--queue-pattern", "webhooks:*", "--by", "cy", "--reason", "ok")
    assert [j["state"] for j in data["retry"]] == ["pending", "pending"]
    assert data["retry"][0]["operator_log"][0]["by"] == "cy"


def test_cli_dry_run_of_one_job_or_queue_changes_nothing(shop: Queuetopia) -> None:
    [job_id] = failed_charges(shop, ["webhooks:1"])
    out = ok("retry", APP, str(job_id), "--dry-run").stdout
    assert f"dry run: would retry 1 job(s): job {job_id}" in out
    assert as_json("cancel", APP, str(job_id), "--dry-run")["cancel"][0]["id"] == job_id
    assert (
        "would pause 1 queue(s): webhooks:1" in ok("pause", APP, "webhooks:1", "--dry-run").stdout
    )
    assert shop.get_job(job_id).state == JobState.FAILED  # type: ignore[union-attr]
    assert [q.paused for q in shop.list_queues()] == [False]
    shop.cancel_job(job_id)
    assert as_json("cancel", APP, str(job_id), "--dry-run") == {"dry_run": True, "cancel": []}


def test_cli_asks_above_ten_and_refuses_without_a_terminal(
    shop: Queuetopia, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = failed_charges(shop, [f"q{i:02d}" for i in range(12)])
    result = cli("cancel", APP, "--state", "failed")
    assert result.exit_code == 1 and "12 jobs selected: pass --yes" in result.stderr
    assert all(shop.get_job(i).state == JobState.FAILED for i in ids)  # type: ignore[union-attr]

    monkeypatch.setattr(ops_cmd, "_interactive", lambda: True)
    result = cli("cancel", APP, "--state", "failed", input="n\n")
    assert result.exit_code == 1 and "not confirmed" in result.stderr
    out = ok("cancel", APP, "--state", "failed", "--reason", "cleanup", input="y\n").stdout
    assert "cancelled 12 job(s) in 12 queue(s)" in out
    assert all(shop.get_job(i).state == JobState.CANCELLED for i in ids)  # type: ignore[union-attr]

    ids = failed_charges(shop, [f"r{i:02d}" for i in range(11)])
    monkeypatch.setattr(ops_cmd, "_interactive", lambda: False)
    ok("retry", APP, "--state", "failed", "--yes")
    assert all(shop.get_job(i).state == JobState.PENDING for i in ids)  # type: ignore[union-attr]


def test_cli_pause_and_resume_by_pattern(shop: Queuetopia) -> None:
    for queue in ("webhooks:1", "webhooks:2"):
        shop.actions["send_mail"].delay(queue, to="x@example.com")
    assert "would pause 2 queue(s): webhooks:1, webhooks:2" in (
        ok("pause", APP, "--queue-pattern", "webhooks:*", "--dry-run").stdout
    )
    data = as_json("pause", APP, "--queue-pattern", "webhooks:*", "--reason", "outage")
    assert data == {"dry_run": False, "pause": ["webhooks:1", "webhooks:2"]}
    assert "resumed 1 queue(s): webhooks:1" in (
        ok("resume", APP, "--queue-pattern", "webhooks:1").stdout
    )
    result = cli("pause", APP)
    assert result.exit_code == 2 and "give QUEUE or --queue-pattern" in result.stderr


def test_cli_refuses_an_id_with_a_selection(shop: Queuetopia) -> None:
    result = cli("retry", APP, "1", "--queue-pattern", "x")
    assert result.exit_code == 2 and "an ID or a selection, not both" in result.stderr
    result = cli("retry", APP)
    assert result.exit_code == 2 and "give an ID or a selection" in result.stderr


def test_job_shows_attempts_and_operators_and_failed_at(shop: Queuetopia) -> None:
    [job_id] = failed_charges(shop, ["billing"])
    shop.cancel_job(job_id, "refunded", by="dee")
    out = CliRunner().invoke(app, ["job", APP, str(job_id)], env={"COLUMNS": "200"}).stdout
    assert "attempts" in out and "card declined for acme" in out
    assert "operators" in out and "dee" in out and "refunded" in out
    assert "cancelled at" in out and "done at" not in out
    data = as_json("job", APP, str(job_id))
    assert [a["outcome"] for a in data["attempt_log"]] == ["failed"]
    assert data["operator_log"][0]["action"] == "cancel"

    [failed_id] = failed_charges(shop, ["billing"])
    out = CliRunner().invoke(app, ["job", APP, str(failed_id)], env={"COLUMNS": "200"}).stdout
    assert "failed at" in out and "done at" not in out


def test_inspect_counts_failed_jobs_and_filters_by_status(shop: Queuetopia) -> None:
    failed_charges(shop, ["billing", "billing"])
    shop.actions["send_mail"].delay("mail", to="x@example.com")
    shop.actions["charge"].delay("blocked", account="a", amount_cents=1)
    drain(shop, "blocked")
    queues = {q["queue"]: q for q in as_json("inspect", APP)}
    assert queues["billing"]["failed"] == 2 and queues["billing"]["status"] == "idle"
    assert queues["billing"]["oldest_failed_at"] is not None
    assert queues["mail"]["failed"] == 0 and queues["mail"]["oldest_failed_at"] is None
    names = [q["queue"] for q in as_json("inspect", APP, "--status", "blocked,failed")]
    assert sorted(names) == ["billing", "blocked"]
    assert [q["queue"] for q in as_json("inspect", APP, "--status", "waiting")] == ["mail"]
    result = cli("inspect", APP, "--status", "stuck")
    assert result.exit_code == 2 and "unknown stuck" in result.stderr
    table = CliRunner().invoke(app, ["inspect", APP], env={"COLUMNS": "200"}).stdout
    assert "2 (oldest" in table


# -- bare @topia.action -----------------------------------------------------------------


def test_a_bare_action_is_named_after_its_module_and_function(topia: Queuetopia) -> None:
    @topia.action
    def send_welcome(user: int) -> int:
        return user

    @topia.action(timeout=5)
    def other() -> None: ...

    assert send_welcome.name == f"{__name__}.{send_welcome.fn.__qualname__}"
    assert send_welcome.name.startswith("tests.test_operations.test_a_bare_action")
    assert other.name.endswith(".other") and other.config.timeout == 5
    assert send_welcome(3) == 3  # still callable directly
    job = send_welcome.delay("q", user=7)
    assert job.action == send_welcome.name
    drain(topia)
    assert topia.wait(job.id, timeout=5) == 7
    with pytest.raises(ValidationError, match="already registered"):
        topia.action(send_welcome.fn)


def test_single_forms_print_json_and_record_by(shop: Queuetopia) -> None:
    [job_id] = failed_charges(shop, ["billing"])
    data = as_json("retry", APP, str(job_id), "--by", "eve", "--reason", "card updated")
    assert data["state"] == "pending" and data["operator_log"][0]["by"] == "eve"
    data = as_json("cancel", APP, str(job_id), "--reason", "refunded")
    assert data["state"] == "cancelled" and data["operator_log"][1]["action"] == "cancel"
    data = as_json("pause", APP, "billing", "--reason", "audit")
    assert data["paused"] is True and data["operator_log"][0]["reason"] == "audit"
    assert as_json("resume", APP, "billing")["paused"] is False
