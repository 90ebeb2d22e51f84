"""Example jobs, a worker and the dashboard in one process, on the embedded PostgreSQL
(or $QUEUETOPIA_DSN): `python demo.py`, then open http://127.0.0.1:8080/.

The webhook endpoint is down for the first DOWN_SECONDS: the queue webhooks:customer-42
blocks behind its head, and the other queues keep moving. Once the endpoint is back,
open the blocked head and press Retry now: the queue drains."""

import os
import time
import uuid
from datetime import timedelta

import uvicorn

from queuetopia import Queuetopia
from queuetopia.dashboard import create_app

PORT = int(os.environ.get("PORT", "8080"))
DOWN_SECONDS = float(os.environ.get("DOWN_SECONDS", "60"))
STARTED = time.monotonic()

topia = Queuetopia(scope=f"dashboard-demo-{uuid.uuid4().hex[:6]}")


@topia.action("send_mail")
def send_mail(to: str, subject: str) -> str:
    return f"sent {subject!r} to {to}"


@topia.action("deliver_webhook", backoff=lambda job: 3600.0, sensitive=("secret",))
def deliver_webhook(url: str, event: str, secret: str) -> None:
    if time.monotonic() - STARTED < DOWN_SECONDS:
        raise ConnectionError(f"{url} answered 503")


def enqueue() -> None:
    for n in range(8):
        send_mail.delay(f"mail:customer-{n % 4}", to=f"customer-{n % 4}@example.com", subject="hi")
    for event in ("invoice.created", "invoice.paid", "invoice.sent"):
        deliver_webhook.delay(
            "webhooks:customer-42", url="https://hooks.example.com", event=event, secret="s3"
        )
    send_mail.schedule("newsletter", at=timedelta(days=1), to="all@example.com", subject="news")


if __name__ == "__main__":
    topia.migrate()
    enqueue()
    print(f"dashboard of scope {topia.scope!r}: http://127.0.0.1:{PORT}/", flush=True)
    with topia.worker(concurrency=4):
        uvicorn.run(create_app(topia), host="127.0.0.1", port=PORT, log_level="warning")
    topia.close()
