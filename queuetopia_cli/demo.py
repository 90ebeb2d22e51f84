"""`queuetopia demo`: example jobs over several queues on the embedded PostgreSQL,
one of which fails a few times and blocks its queue, with a live view."""

from __future__ import annotations

import random
import time
import uuid

from rich.console import Console

from queuetopia import Queuetopia

from .render import live_view, queues_table


def build_topia(dsn: str | None) -> Queuetopia:
    topia = Queuetopia(dsn=dsn, scope=f"demo-{uuid.uuid4().hex[:6]}", poll_interval=1.0)
    topia.migrate()
    attempts: dict[str, int] = {}

    @topia.action("send_mail", timeout=10)
    def send_mail(to: str, subject: str) -> str:
        time.sleep(random.uniform(0.05, 0.3))
        return f"sent {subject!r} to {to}"

    @topia.action("post_ledger", timeout=10)
    def post_ledger(account: str, amount_cents: int) -> int:
        time.sleep(random.uniform(0.05, 0.2))
        return amount_cents

    @topia.action("deliver_webhook", timeout=10, max_backoff=2)
    def deliver_webhook(url: str, event: str) -> None:
        attempts[event] = attempts.get(event, 0) + 1
        if event == "invoice.paid" and attempts[event] <= 3:
            raise ConnectionError(f"{url} answered 503 (attempt {attempts[event]})")
        time.sleep(0.1)

    for i in range(6):
        send_mail.delay("mail:customer-1", to="ada@example.com", subject=f"update {i}")
        post_ledger.delay(f"ledger:account-{i % 3}", account=f"account-{i % 3}", amount_cents=i)
    for event in ("invoice.created", "invoice.paid", "invoice.sent", "invoice.closed"):
        deliver_webhook.delay("webhooks:customer-42", url="https://hooks.example.com", event=event)
    return topia


def run_demo(dsn: str | None, seconds: float, console: Console) -> int:
    topia = build_topia(dsn)
    console.print(
        f"[bold]queuetopia demo[/] on {'the embedded PostgreSQL' if not dsn else 'your database'}"
        f", scope {topia.scope!r}: webhooks:customer-42 fails 3 times and blocks, "
        "the other queues keep moving."
    )
    deadline = time.monotonic() + seconds
    with topia.worker(concurrency=4) as _worker, live_view() as live:
        while time.monotonic() < deadline:
            queues = topia.list_queues()
            live.update(queues_table(queues, title="queuetopia inspect"), refresh=True)
            if all(q.status.value == "idle" for q in queues):
                break
            time.sleep(0.25)
    done = len(topia.list_jobs(state="done", limit=1000))
    total = len(topia.list_jobs(limit=1000))
    console.print(f"{done} of {total} jobs done.")
    topia.close()
    return 0 if done == total else 1
