"""The dashboard's pages and actions through Starlette's TestClient, on the real
PostgreSQL: what each page shows, in which order, what it hides, and who may act."""

from __future__ import annotations

import base64
import html
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape
from starlette.requests import Request
from starlette.testclient import TestClient

from queuetopia import JobState, Queuetopia
from queuetopia.dashboard import create_app
from queuetopia.dashboard.history import BlockedHistory
from queuetopia.testing import drain

from ..helpers import take, wait_for
from .conftest import Shop

TOKEN = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


def client_for(topia: Queuetopia, **options: object) -> TestClient:
    return TestClient(create_app(topia, **options))  # type: ignore[arg-type]


@pytest.fixture
def client(shop: Shop) -> Iterator[TestClient]:
    with client_for(shop.topia) as c:
        yield c


def block(shop: Shop, queue: str = "billing:acme") -> int:
    """A queue whose head failed once and waits an hour for its retry."""
    job = shop.topia.actions["charge"].delay(queue, account="acme", amount_cents=500, card="4242")
    shop.topia.actions["charge"].delay(queue, account="acme", amount_cents=700)
    drain(shop.topia, queue)
    return job.id


def rows(page: str) -> list[str]:
    """The queue names of the overview's rows, in order."""
    return re.findall(r'<a class="queue-name" href="[^"]*">([^<]*)</a>', page)


def token(client: TestClient, path: str) -> str:
    """The CSRF token of a page with a form (a job's or a queue's page)."""
    found = TOKEN.search(client.get(path).text)
    assert found, "no CSRF token on the page"
    return found.group(1)


# -- overview -------------------------------------------------------------------------


def test_overview_puts_blocked_queues_first_with_their_error(
    client: TestClient, shop: Shop
) -> None:
    for queue in ("a-mail", "b-mail"):
        shop.topia.actions["send_mail"].delay(queue, to="ada@example.com")
    shop.topia.actions["send_mail"].schedule("c-later", at=timedelta(hours=1), to="x@y")
    block(shop, "z-billing")
    drain(shop.topia, "a-mail")
    page = client.get("/").text
    assert rows(page) == ["z-billing", "b-mail", "c-later", "a-mail"]  # blocked, waiting x2, idle
    blocked_row = page.split('class="queue-row row-blocked"')[1].split("</tr>")[0]
    assert "payments.example.com answered 503 for acme" in blocked_row
    assert 'charge <span class="attempts">1/20</span>' in blocked_row
    assert re.search(r'class="age age-fresh"[^>]*>(&lt;1|\d+)s<', blocked_row)
    assert "<b>1</b> blocked" in page and "<b>1</b> idle" in page and "<b>2</b> waiting" in page


def test_overview_counts_failed_jobs_of_a_queue_that_moved_on(
    client: TestClient, shop: Shop
) -> None:
    for order in (1, 2):
        shop.topia.actions["refund"].delay("refunds", order=order)
    drain(shop.topia, "refunds")
    row = client.get("/").text.split('class="queue-row row-idle"')[1].split("</tr>")[0]
    assert '<span class="failed-count"' in row and ">2</span>" in row


def test_overview_filters_by_glob_text_and_status(client: TestClient, shop: Shop) -> None:
    for queue in ("billing:1", "billing:2", "mail:1"):
        shop.topia.actions["send_mail"].delay(queue, to="a@b")
    block(shop, "billing:3")
    assert rows(client.get("/", params={"q": "billing:*"}).text) == [
        "billing:3",
        "billing:1",
        "billing:2",
    ]
    assert rows(client.get("/", params={"q": "ail"}).text) == ["mail:1"]
    assert rows(client.get("/", params={"status": "blocked"}).text) == ["billing:3"]
    assert "no queue matches" in client.get("/", params={"q": "nothing*"}).text


def test_a_refresh_gets_only_the_live_part(client: TestClient, shop: Shop) -> None:
    block(shop)
    live = client.get("/", headers={"X-Queuetopia-Partial": "1"}).text
    assert "<html" not in live and "billing:acme" in live and "<svg" in live
    assert "<html" in client.get("/").text


def test_an_empty_scope_says_so(client: TestClient) -> None:
    assert "no queues in this scope yet" in client.get("/").text


# -- queue and job pages -------------------------------------------------------------------


def test_queue_page_shows_its_line_head_first_in_pages(client: TestClient, shop: Shop) -> None:
    send = shop.topia.actions["send_mail"]
    later = send.schedule("mail", at=timedelta(minutes=5), to="later@x")  # joins first
    jobs = [send.delay("mail", to=f"n{i}@x") for i in range(55)]
    page = client.get("/queue", params={"name": "mail"}).text
    ids = [int(i) for i in re.findall(r'class="job-link" href="/jobs/\d+">#(\d+)<', page)]
    assert ids[:3] == [jobs[0].id, jobs[1].id, jobs[2].id]  # due now runs before later
    assert len(ids) == 50 and "later →" in page
    second = client.get("/queue", params={"name": "mail", "page": "2"}).text
    rest = [int(i) for i in re.findall(r'class="job-link" href="/jobs/\d+">#(\d+)<', second)]
    assert rest == [j.id for j in jobs[50:]] + [later.id]


def test_queue_page_of_an_unknown_queue_is_404(client: TestClient) -> None:
    response = client.get("/queue", params={"name": "nope"})
    assert response.status_code == 404 and "no queue &#39;nope&#39;" in response.text


def test_job_page_shows_every_field_masks_secrets_and_the_whole_error(
    client: TestClient, shop: Shop
) -> None:
    job_id = block(shop)
    page = client.get(f"/jobs/{job_id}").text
    assert "4242" not in page and "&#34;card&#34;: &#34;***&#34;" in page
    assert "Traceback (most recent call last)" in page
    for field in ("scope", "attempted by", "failing since", "next attempt at", "max backoff"):
        assert f"<dt>{field}</dt>" in page
    assert f'id="permalink" href="/jobs/{job_id}"' in page
    assert 'id="retry"' in page and 'id="cancel"' in page


def test_job_page_shows_attempt_history_operator_actions_and_failed_at(
    client: TestClient, shop: Shop
) -> None:
    job = shop.topia.actions["refund"].delay("refunds", order=7)  # one attempt, then failed
    drain(shop.topia)
    shop.topia.retry_job(job.id, by="ada", reason="payment provider is back")
    drain(shop.topia)
    page = client.get(f"/jobs/{job.id}").text
    attempts = page.split('<table id="attempts">')[1].split("</table>")[0]
    assert attempts.count("<tr><td>") == 2 and "ValueError: order 7 was never paid" in attempts
    operators = page.split('<table id="operator-log">')[1].split("</table>")[0]
    assert "<td>retry</td><td>ada</td>" in operators and "payment provider is back" in operators
    assert "<dt>failed at</dt>" in page and "<dt>done at</dt>" not in page


def test_job_page_hides_dsn_passwords_in_errors(client: TestClient, shop: Shop) -> None:
    job = shop.topia.create_job("q", "unknown_here", {})
    with shop.topia.connection() as conn:
        conn.execute(
            "UPDATE queuetopia_jobs SET error = %s WHERE id = %s",
            ("could not connect to postgresql://app:hunter2@db:5432/shop", job.id),
        )
    page = client.get(f"/jobs/{job.id}").text + client.get("/").text
    assert "hunter2" not in page and "postgresql://app:***@db:5432/shop" in page


def test_an_unknown_job_is_404(client: TestClient) -> None:
    assert client.get("/jobs/987654321").status_code == 404


def test_workers_page_shows_who_holds_which_queue(client: TestClient, shop: Shop) -> None:
    started, release = threading.Event(), threading.Event()

    @shop.topia.action("hold")
    def hold() -> None:
        started.set()
        release.wait(20)

    shop.topia.create_job("long-one", "hold", {})
    with shop.topia.worker(name="night-shift") as worker:
        assert started.wait(20)
        page = client.get("/workers").text
        release.set()
    assert f'<h2 class="node-name">{worker.owner}</h2>' in page and "night-shift" in worker.owner
    assert 'href="/queue?name=long-one">long-one</a>' in page
    assert re.search(r"last heartbeat about (&lt;1|\d+)s ago", page)
    assert re.search(r'data-label="lease expires">in (&lt;1|\d+)s<', page)


# -- operator actions ---------------------------------------------------------------------


def test_retry_with_the_pages_token_makes_the_blocked_head_due_now(
    client: TestClient, shop: Shop
) -> None:
    job_id = block(shop)
    response = client.post(
        f"/jobs/{job_id}/retry",
        data={"csrf_token": token(client, f"/jobs/{job_id}")},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/jobs/{job_id}?done=retried"
    shop.fixed.set()
    assert drain(shop.topia).done == 2
    assert "Retried: the job is due now" in client.get(response.headers["location"]).text


def test_cancel_records_the_reason_and_the_queue_moves_on(client: TestClient, shop: Shop) -> None:
    job_id = block(shop)
    client.post(
        f"/jobs/{job_id}/cancel",
        data={"csrf_token": token(client, f"/jobs/{job_id}"), "reason": "refunded <by hand>"},
    )
    job = shop.topia.get_job(job_id)
    assert job is not None and job.state == JobState.CANCELLED
    assert job.error is not None and job.error.startswith("cancelled: refunded <by hand>")
    shop.fixed.set()
    assert drain(shop.topia).done == 1


def test_an_action_that_makes_no_sense_is_a_409_that_says_why(
    client: TestClient, shop: Shop
) -> None:
    job = shop.topia.actions["send_mail"].delay("mail", to="a@b")
    drain(shop.topia)
    form = {"csrf_token": token(client, "/queue?name=mail")}
    response = client.post(f"/jobs/{job.id}/cancel", data=form)
    assert response.status_code == 409
    assert f"cannot cancel job {job.id}: it is done" in response.text


def test_pause_and_resume_a_queue(client: TestClient, shop: Shop) -> None:
    shop.topia.actions["send_mail"].delay("mail", to="a@b")
    form = {"csrf_token": token(client, "/queue?name=mail"), "queue": "mail"}
    response = client.post("/queue/pause", data=form)
    assert response.status_code == 200 and "Paused: the queue starts no new job" in response.text
    assert 'id="resume"' in response.text
    assert drain(shop.topia).ran == 0
    client.post("/queue/resume", data=form)
    assert drain(shop.topia).done == 1


def test_pausing_a_queue_that_does_not_exist_creates_nothing(
    client: TestClient, shop: Shop
) -> None:
    shop.topia.actions["send_mail"].delay("mail", to="a@b")
    form = {"csrf_token": token(client, "/queue?name=mail"), "queue": "ghost"}
    response = client.post("/queue/pause", data=form)
    assert response.status_code == 404
    assert [q.queue for q in shop.topia.list_queues()] == ["mail"]


@pytest.mark.parametrize(
    "form",
    [{}, {"csrf_token": ""}, {"csrf_token": "0" * 64}],
    ids=["no token", "empty token", "forged token"],
)
def test_a_post_without_a_valid_csrf_token_is_refused_and_changes_nothing(
    client: TestClient, shop: Shop, form: dict[str, str]
) -> None:
    job_id = block(shop)
    client.get(f"/jobs/{job_id}")  # the CSRF cookie is set
    before = shop.topia.get_job(job_id)
    response = client.post(f"/jobs/{job_id}/retry", data=form)
    assert response.status_code == 403 and "CSRF token" in response.text
    assert shop.topia.get_job(job_id) == before


def test_a_token_from_another_dashboard_process_is_refused(shop: Shop) -> None:
    job_id = block(shop)
    with client_for(shop.topia) as first, client_for(shop.topia) as second:
        stolen = token(first, f"/jobs/{job_id}")
        second.cookies = first.cookies
        assert second.post(f"/jobs/{job_id}/retry", data={"csrf_token": stolen}).status_code == 403
    with (
        client_for(shop.topia, csrf_secret="shared") as first,
        client_for(shop.topia, csrf_secret="shared") as second,
    ):
        shared = token(first, f"/jobs/{job_id}")
        second.cookies = first.cookies
        response = second.post(f"/jobs/{job_id}/retry", data={"csrf_token": shared})
        assert response.status_code == 200


def test_read_only_shows_no_button_and_refuses_every_action(shop: Shop) -> None:
    job_id = block(shop)
    with client_for(shop.topia, read_only=True) as client:
        pages = [client.get(p).text for p in ("/", f"/jobs/{job_id}", "/queue?name=billing:acme")]
        assert all('method="post"' not in page for page in pages)
        assert all('id="read-only"' in page for page in pages)
        before = shop.topia.get_job(job_id)
        for path in (f"/jobs/{job_id}/retry", f"/jobs/{job_id}/cancel", "/queue/pause"):
            response = client.post(path, data={"csrf_token": "any", "queue": "billing:acme"})
            assert response.status_code == 403 and "read-only" in response.text
        assert shop.topia.get_job(job_id) == before


# -- who may look ---------------------------------------------------------------------------


def test_the_auth_hook_decides_for_every_page_and_action(shop: Shop) -> None:
    def staff(request: Request) -> bool:
        return request.headers.get("x-staff") == "yes"

    with client_for(shop.topia, auth=staff) as client:
        assert client.get("/").status_code == 403
        assert client.get("/static/dashboard.css").status_code == 403
        assert client.post("/queue/pause", data={"queue": "x"}).status_code == 403
        assert client.get("/", headers={"x-staff": "yes"}).status_code == 200


def test_an_async_auth_hook_works_too(shop: Shop) -> None:
    async def nobody(request: Request) -> bool:
        return False

    with client_for(shop.topia, auth=nobody) as client:
        assert client.get("/").status_code == 403


def test_basic_credentials_from_the_environment(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUEUETOPIA_DASHBOARD_USER", "ops")
    monkeypatch.setenv("QUEUETOPIA_DASHBOARD_PASSWORD", "correct horse")
    with client_for(shop.topia) as client:
        refused = client.get("/")
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith(
            "Basic"
        )
        for user, password in (("ops", "wrong"), ("op", "correct horse"), ("", "")):
            assert client.get("/", auth=(user, password)).status_code == 401
        bad = {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe").decode()}
        assert client.get("/", headers=bad).status_code == 401
        assert client.get("/", auth=("ops", "correct horse")).status_code == 200


def test_pages_forbid_inline_scripts_and_framing(client: TestClient) -> None:
    headers = client.get("/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    cookie = headers["set-cookie"]
    assert "queuetopia_csrf=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie


queue_names = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=queue_names)
def test_any_queue_name_is_shown_as_text_and_links_to_its_page(
    client: TestClient, shop: Shop, name: str
) -> None:
    job = shop.topia.actions["send_mail"].delay(name, to="<b>x</b>")
    overview = client.get("/").text
    link = re.search(
        r'<a class="queue-name" href="([^"]+)">' + re.escape(str(escape(name))), overview
    )
    assert link, name
    for page in (overview, client.get(f"/jobs/{job.id}").text):
        assert f">{escape(name)}</a>" in page
        if str(escape(name)) != name:  # where the name is shown, it is never raw
            assert f">{name}</a>" not in page
    queue_page = client.get(html.unescape(link.group(1)))
    assert queue_page.status_code == 200
    assert f'<h1 class="queue-title">{escape(name)}</h1>' in queue_page.text


# -- the reads behind the charts --------------------------------------------------------------


def test_job_counts_per_minute_count_done_and_failed_jobs(shop: Shop) -> None:
    for order in (1, 2, 3):
        shop.topia.actions["send_mail"].delay("mail", to=f"{order}@x")
    shop.topia.actions["refund"].delay("refunds", order=1)  # fails for good
    block(shop)  # a head waiting for its retry
    drain(shop.topia)
    counts = shop.topia.job_counts_per_minute(60)
    assert len(counts) == 60 and counts[0].minute < counts[-1].minute
    assert sum(c.done for c in counts) == 3 and sum(c.failed for c in counts) == 2
    mail = shop.topia.job_counts_per_minute(5, queue="mail")
    assert len(mail) == 5 and sum(c.done for c in mail) == 3 and sum(c.failed for c in mail) == 0
    with pytest.raises(ValueError, match="minutes"):
        shop.topia.job_counts_per_minute(0)


def test_the_blocked_age_chart_fills_the_past_from_heads_blocked_now(shop: Shop) -> None:
    block(shop, "billing:1")
    queues = shop.topia.list_queues()
    (blocked,) = [q for q in queues if q.status == "blocked"]
    assert blocked.blocked_since is not None
    since = blocked.blocked_since
    now = since.replace(second=0, microsecond=0) + timedelta(minutes=10, seconds=30)
    history = BlockedHistory()
    history.record(now, queues)
    points = history.per_minute(now, queues)
    age = (now - since).total_seconds()
    assert len(points) == 60 and points[-1][1] == pytest.approx(age)
    # Eleven minutes before `now` the head was not blocked yet.
    assert points[-12][1] == 0 and points[-11][1] > 0
    assert history.per_minute(now, queues, queue="other")[-1][1] == 0


def test_the_history_keeps_samples_of_blocks_that_ended(shop: Shop) -> None:
    block(shop, "billing:1")
    queues = shop.topia.list_queues()
    since = queues[0].blocked_since
    assert since is not None
    history = BlockedHistory()
    history.record(since + timedelta(minutes=3), queues)
    history.record(since + timedelta(minutes=3, seconds=5), [])  # too soon: not kept
    later = since + timedelta(minutes=20)
    points = history.per_minute(later, [], queue="billing:1")  # unblocked by then
    assert max(v for _, v in points) == pytest.approx(180, abs=1)
    assert all(v == 0 for _, v in history.per_minute(later + timedelta(hours=2), []))


# -- the command ------------------------------------------------------------------------------


def test_importing_queuetopia_needs_no_web_framework() -> None:
    code = "import sys, queuetopia, queuetopia_cli.main; print('starlette' in sys.modules)"
    assert subprocess.check_output([sys.executable, "-c", code], text=True).strip() == "False"


def test_the_command_without_the_extra_says_how_to_install_it() -> None:
    code = (
        "import sys; sys.modules['starlette'] = None; from queuetopia_cli.main import main;"
        "sys.argv = ['queuetopia', 'dashboard', 'tests.apps.shop:topia']; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == (
        "error: the dashboard needs its extra: pip install 'queuetopia[dashboard]'\n"
    )


def test_the_command_serves_the_dashboard_on_localhost(dsn: str) -> None:
    import os
    import signal
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cli = str(__import__("pathlib").Path(sys.executable).with_name("queuetopia"))
    env = {**os.environ, "QUEUETOPIA_DSN": dsn, "QT_TEST_SCOPE": "dash-cli"}
    server = subprocess.Popen(
        [cli, "dashboard", "tests.apps.shop:topia", "--port", str(port), "--read-only"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def page() -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return None

    try:
        html = wait_for(page, timeout=30, interval=0.1, what="the dashboard to answer")
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    assert "scope <code>dash-cli</code>" in html and 'id="read-only"' in html
    assert f"dashboard of scope 'dash-cli' (read-only) on http://127.0.0.1:{port}/" in out
    assert "Traceback" not in err
    assert datetime.now(UTC)  # the page was served, and the server stopped on SIGINT


def test_a_database_outage_is_one_line_without_the_password() -> None:
    topia = Queuetopia(dsn="postgresql://app:hunter2@127.0.0.1:1/shop", pool_size=1)
    with client_for(topia) as client:
        response = client.get("/")
    topia.close()
    assert response.status_code == 503
    assert "hunter2" not in response.text and "database unavailable" in response.text
    assert "Traceback" not in response.text


def test_a_database_without_the_schema_says_how_to_install_it(
    fresh_database: Callable[[], str],
) -> None:
    with Queuetopia(dsn=fresh_database(), pool_size=1) as topia, client_for(topia) as client:
        pages = [client.get(path) for path in ("/", "/workers", "/jobs/1")]
    for page in pages:
        assert page.status_code == 503
        assert (
            "the queuetopia schema is not installed in this database: run "
            "`queuetopia migrate APP` or `topia.migrate()`"
        ) in html.unescape(page.text), page.text
        assert "Traceback" not in page.text


def test_the_charts_reread_only_the_last_minutes_between_full_reads(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    from queuetopia.dashboard import counts

    send = shop.topia.actions["send_mail"]
    first = send.delay("mail", to="1@x")
    drain(shop.topia)
    cache = counts.CountsCache()
    assert sum(c.done for c in cache.per_minute(shop.topia, None)) == 1
    send.delay("mail", to="2@x")
    drain(shop.topia)
    with shop.topia.connection() as conn:  # as if the first had finished 10 minutes ago
        conn.execute(
            "UPDATE queuetopia_jobs SET done_at = done_at - interval '10 minutes' WHERE id = %s",
            (first.id,),
        )
    again = cache.per_minute(shop.topia, None)  # re-reads the last 2 minutes only
    assert len(again) == 60 and sum(c.done for c in again) == 1
    monkeypatch.setattr(counts, "FULL_EVERY", 0.0)
    full = cache.per_minute(shop.topia, None)  # the whole hour: the moved job is found
    assert sum(c.done for c in full[-2:]) == 1 and sum(c.done for c in full) == 2


def test_a_running_job_has_a_cancel_button_that_requests_the_cancel(
    client: TestClient, shop: Shop
) -> None:
    job = shop.topia.actions["send_mail"].delay("mail:running", to="a@b")
    with shop.topia.connection() as conn:  # claimed by a worker (a test's lease)
        assert take(conn, shop.topia.scope, "mail:running").job.id == job.id
    path = f"/jobs/{job.id}"
    assert 'id="cancel"' in client.get(path).text
    response = client.post(
        f"{path}/cancel",
        data={"csrf_token": token(client, path), "reason": "wrong address"},
        follow_redirects=False,
    )
    assert response.status_code == 303
    page = client.get(response.headers["location"]).text
    assert "Cancel requested: its worker stops it" in page
    running = shop.topia.get_job(job.id)
    assert running is not None and running.state == JobState.RUNNING
    assert running.operator_log[-1].reason == "wrong address"


def test_a_queue_waiting_for_its_rate_limit_says_so_and_the_limits_are_listed(
    client: TestClient, shop: Shop
) -> None:
    shop.topia.set_limit("mail-rate", queues="mail:*", rate="1/h", by="ops")
    send = shop.topia.actions["send_mail"]
    send.delay("mail:rated", to="a@b")
    second = send.delay("mail:rated", to="c@d")
    assert drain(shop.topia).done == 1  # the hour's one token is spent
    overview = client.get("/").text
    assert "rate limited (mail-rate), next in 59m" in overview
    assert 'id="limits"' in overview and "mail:*" in overview and "1/h" in overview
    page = client.get(f"/jobs/{second.id}").text
    assert 'id="rated"' in page and "by mail-rate, next at" in page


def test_a_job_waiting_for_others_links_them_and_its_queue_says_why(
    client: TestClient, shop: Shop
) -> None:
    send = shop.topia.actions["send_mail"]
    first = send.schedule("mail:first", at=timedelta(hours=1), to="a@b")
    waiting = send.options(after=[first]).delay("mail:after", to="c@d")
    page = client.get(f"/jobs/{waiting.id}").text
    assert f'href="/jobs/{first.id}">#{first.id}</a>' in page
    assert f"waits for job {first.id} (pending)" in page
    assert f"waits for job {first.id} (pending)" in client.get("/").text
