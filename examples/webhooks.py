"""Webhooks per customer: events of one customer are delivered in order, and a failing
endpoint holds back that customer's later events (never another customer's) until it
recovers. Here customer 2's endpoint is down for its first two attempts.

    python examples/webhooks.py
"""

from __future__ import annotations

import os
import time

from queuetopia import Job, Queuetopia

topia = Queuetopia(scope=os.environ.get("EXAMPLE_SCOPE", "webhooks"))
delivered: list[tuple[str, str]] = []


def quick_retry(job: Job) -> float:
    return 0.2  # seconds; production code would keep the default exponential backoff


@topia.action("deliver", backoff=quick_retry, timeout=10)
def deliver(customer: str, event: str, job: Job) -> None:
    if customer == "customer-2" and job.attempts <= 2:
        raise ConnectionError(f"{customer}'s endpoint answered 503")
    delivered.append((customer, event))


def main() -> None:
    topia.migrate()
    for customer in ("customer-1", "customer-2"):
        for event in ("order.created", "order.paid", "order.shipped"):
            deliver.delay(f"webhooks:{customer}", customer=customer, event=event)
    with topia.worker(concurrency=2):
        deadline = time.monotonic() + 30
        while len(delivered) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
    for customer in ("customer-1", "customer-2"):
        events = [e for c, e in delivered if c == customer]
        print(customer, "->", ", ".join(events))
    topia.close()


if __name__ == "__main__":
    main()
