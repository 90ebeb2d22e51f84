"""The dashboard in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`) driven by Selenium, against a worker and the dashboard served by
uvicorn on the test PostgreSQL.

`QUEUETOPIA_SCREENSHOTS=docs/img python3 dev.py test tests/dashboard -m browser` also
writes the screenshots that docs/dashboard.md shows."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from queuetopia import JobState, QueueStatus, Queuetopia
from queuetopia.dashboard import create_app

from ..helpers import wait_for
from .conftest import Shop
from .serving import serve

pytestmark = pytest.mark.browser

XSS = "<script>alert(1)</script>"


def css(driver: Any, selector: str) -> list[Any]:
    return driver.find_elements("css selector", selector)


# Read in one script, so a live refresh cannot replace the rows halfway through.
ROWS_SCRIPT = """
return [...document.querySelectorAll('table.queues tbody tr')].map(tr =>
    Object.fromEntries([...tr.cells].map(td => [td.dataset.label, td.innerText.trim()])));
"""


def rows_of(driver: Any) -> list[dict[str, str]]:
    """The overview's rows, each as {column label: text}."""
    rows: list[dict[str, str]] = driver.execute_script(ROWS_SCRIPT)
    return rows


def click(driver: Any, selector: str) -> None:
    """Click the first element matching `selector`, again if a refresh replaced it."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(10):
        try:
            css(driver, selector)[0].click()
            return
        except StaleElementReferenceException:
            continue
    raise AssertionError(f"{selector} kept being replaced")


def until(driver: Any, condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    """Wait for what the page shows (live refreshes included), without fixed sleeps.
    An element that a refresh replaced while it was read counts as not there yet."""
    from selenium.common.exceptions import StaleElementReferenceException

    def check() -> Any:
        try:
            return condition()
        except (StaleElementReferenceException, IndexError):
            return None

    return wait_for(check, timeout=timeout, interval=0.2, what=what)


def no_alert(driver: Any) -> bool:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        driver.switch_to.alert  # noqa: B018 - raises when there is none
    except NoAlertPresentException:
        return True
    return False


@contextmanager
def dashboard(topia: Queuetopia, **options: Any) -> Iterator[str]:
    with serve(create_app(topia, refresh_seconds=0.5, **options)) as url:
        yield url


def fill_scope(shop: Shop) -> dict[str, int]:
    """Queues in every status, like a real scope: one blocked, one running a slow job,
    one waiting for a scheduled job, one paused, some idle with jobs done."""
    topia = shop.topia
    send = topia.actions["send_mail"]
    for n in range(12):
        send.delay(f"mail:customer-{n % 4}", to=f"customer-{n % 4}@example.com", subject="hi")
    send.schedule("newsletter", at=timedelta(hours=2), to="all@example.com", subject="news")
    send.delay("reports", to="cfo@example.com", subject="monthly")
    topia.pause_queue("reports")
    topia.actions["refund"].delay("refunds", order=17)  # fails for good: parked
    charge = topia.actions["charge"]
    blocked = charge.delay("billing:acme", account="acme", amount_cents=4200, card="4242")
    for cents in (700, 900):
        charge.delay("billing:acme", account="acme", amount_cents=cents)
    return {"blocked": blocked.id}


def test_an_operator_unblocks_a_queue_from_the_browser(
    shop: Shop, driver: Any, screenshot: Callable[[str], None]
) -> None:
    topia = shop.topia
    busy, release = threading.Event(), threading.Event()

    @topia.action("export")
    def export(table: str) -> None:
        busy.set()
        release.wait(60)

    topia.create_job("exports", "export", {"table": "orders"})
    ids = fill_scope(shop)
    with topia.worker(concurrency=4), dashboard(topia) as url:
        try:
            unblock_from_the_browser(driver, url, shop, ids, busy, screenshot)
        finally:
            release.set()
    blocked = topia.get_job(ids["blocked"])
    assert blocked is not None and blocked.state == JobState.DONE
    assert [j.state for j in topia.list_jobs(queue="billing:acme")] == [JobState.DONE] * 3


def unblock_from_the_browser(
    driver: Any,
    url: str,
    shop: Shop,
    ids: dict[str, int],
    busy: threading.Event,
    screenshot: Callable[[str], None],
) -> None:
    topia = shop.topia
    wait_for(
        lambda: (
            {q.queue: q.status for q in topia.list_queues()}.get("billing:acme")
            == QueueStatus.BLOCKED
            and busy.is_set()
        ),
        timeout=30,
        what="billing:acme to block",
    )
    wait_for(lambda: topia.list_jobs(queue="refunds", state="failed"), timeout=30)
    driver.set_window_size(1280, 1150)
    driver.get(url + "/")
    first = rows_of(driver)[0]
    assert first["queue"] == "billing:acme" and first["status"] == "blocked"
    assert "payments.example.com answered 503 for acme" in first["last error"]
    assert first["head"] == f"#{ids['blocked']} charge 1/20"
    statuses = [row["status"] for row in rows_of(driver)]
    assert statuses[:2] == ["blocked", "running"] and "paused" in statuses
    screenshot("dashboard-overview.png")
    driver.set_window_size(390, 844)  # a phone
    screenshot("dashboard-overview-phone.png")
    driver.set_window_size(1280, 1400)

    click(driver, "table.queues tbody tr:first-child a.job-link")
    until(driver, lambda: css(driver, "#retry"), "the job page")
    assert "Traceback (most recent call last)" in css(driver, "#error")[0].text
    assert '"card": "***"' in css(driver, "#params")[0].text
    screenshot("dashboard-job.png")

    shop.fixed.set()  # the payment provider is back
    css(driver, "#retry")[0].click()
    until(driver, lambda: "Retried" in driver.page_source, "the retry message")
    click(driver, "header nav a")  # back to the queues
    until(
        driver,
        lambda: any(
            c.get("queue") == "billing:acme" and c.get("status") == "idle" for c in rows_of(driver)
        ),
        "billing:acme to drain (seen by the live refresh)",
    )


def test_pause_and_resume_a_queue_from_its_page(shop: Shop, driver: Any) -> None:
    topia = shop.topia
    send = topia.actions["send_mail"]
    send.delay("mail", to="a@example.com")
    with topia.worker(concurrency=2), dashboard(topia) as url:
        wait_for(lambda: topia.list_queues()[0].status == QueueStatus.IDLE, timeout=30)
        driver.get(url + "/queue?name=mail")
        click(driver, "#pause")
        until(driver, lambda: css(driver, "#resume"), "the resume button")
        assert "Paused" in css(driver, ".message")[0].text
        job = send.delay("mail", to="b@example.com")
        until(driver, lambda: "pending\n1" in css(driver, "dl.fields")[0].text, "1 pending")
        assert topia.get_job(job.id).state == JobState.PENDING  # type: ignore[union-attr]
        click(driver, "#resume")
        until(driver, lambda: css(driver, "#pause"), "the pause button")
        wait_for(lambda: topia.get_job(job.id).state == JobState.DONE, timeout=30)  # type: ignore[union-attr]


def test_the_live_refresh_keeps_the_filter_and_the_scroll(shop: Shop, driver: Any) -> None:
    send = shop.topia.actions["send_mail"]
    for n in range(60):
        send.schedule(f"mail:{n:02d}", at=timedelta(hours=1), to="a@example.com")
    with dashboard(shop.topia) as url:
        driver.set_window_size(1280, 600)
        driver.get(url + "/?q=mail:*&status=waiting")
        driver.execute_script("window.scrollTo(0, 500)")
        stamp = css(driver, "#live .meta")[0].text
        send.schedule("mail:60", at=timedelta(hours=1), to="b@example.com")
        until(driver, lambda: "61 of 61 queues" in css(driver, "#live .meta")[0].text, "a refresh")
        assert css(driver, "#live .meta")[0].text != stamp
        assert driver.execute_script("return window.scrollY") == 500
        assert driver.current_url == url + "/?q=mail:*&status=waiting"
        assert css(driver, "select[name=status] option[selected]")[0].text == "waiting"
        assert len(rows_of(driver)) == 61


def test_read_only_shows_no_button(shop: Shop, driver: Any) -> None:
    ids = fill_scope(shop)
    with dashboard(shop.topia, read_only=True) as url:
        for path in ("/", f"/jobs/{ids['blocked']}", "/queue?name=billing:acme", "/workers"):
            driver.get(url + path)
            assert css(driver, "#read-only")
            assert not css(driver, "form[method=post]") and not css(driver, "#retry, #cancel")
        refused = driver.execute_async_script(
            "const done = arguments[0];"
            f"fetch('/jobs/{ids['blocked']}/retry', {{method: 'POST'}}).then(r => done(r.status));"
        )
    assert refused == 403


def test_a_post_without_the_csrf_token_is_refused(shop: Shop, driver: Any) -> None:
    ids = fill_scope(shop)
    before = shop.topia.get_job(ids["blocked"])
    with dashboard(shop.topia) as url:
        driver.get(url + f"/jobs/{ids['blocked']}")
        driver.execute_script(
            "document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())"
        )
        css(driver, "#retry")[0].click()
        until(driver, lambda: "CSRF token" in driver.page_source, "the refusal")
        assert "403" in css(driver, "h1")[0].text
    assert shop.topia.get_job(ids["blocked"]) == before


def test_a_queue_named_like_a_script_renders_as_text(shop: Shop, driver: Any) -> None:
    topia = shop.topia
    job = topia.actions["refund"].delay(XSS, order=1)
    topia.actions["send_mail"].delay(XSS, to="<img src=x onerror=alert(2)>")
    from queuetopia.testing import drain

    drain(topia, XSS)
    with dashboard(topia) as url:
        for path in ("/", f"/jobs/{job.id}"):
            driver.get(url + path)
            names = [a.text for a in css(driver, "a.queue-name")]
            assert XSS in names
            assert no_alert(driver)
        driver.get(url + "/")
        click(driver, "a.queue-name")
        until(driver, lambda: css(driver, "h1.queue-title"), "the queue page")
        assert css(driver, "h1.queue-title")[0].text == XSS
        assert no_alert(driver)
        assert not css(driver, "img[src=x]")
