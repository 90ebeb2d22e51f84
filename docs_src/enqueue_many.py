"""One call that enqueues for many queues: a fan-out to every customer."""

from datetime import timedelta

from queuetopia import JobRequest, Queuetopia, ValidationError
from queuetopia.testing import drain

topia = Queuetopia(scope="fanout")


@topia.action("notify")
def notify(customer_id: int, text: str) -> None:
    print(f"customer {customer_id}: {text}")


@topia.action("audit")
def audit(event: str) -> None:
    print(f"audit: {event}")


topia.migrate()
# --8<-- [start:fanout]
customers = [1, 2, 3]
jobs = topia.enqueue_many(
    [
        JobRequest(f"customer:{c}", "notify", {"customer_id": c, "text": "new terms"})
        for c in customers
    ]
    + [
        JobRequest("audit", "audit", {"event": "terms sent"}, scheduled_at=timedelta(seconds=0)),
        JobRequest("customer:1", "notify", {"customer_id": 1, "text": "reminder"}, max_attempts=3),
    ]
)
print(len(jobs), sorted({job.queue for job in jobs}))  # one round trip, one transaction
# --8<-- [end:fanout]
drain(topia)

# --8<-- [start:bad]
try:
    topia.enqueue_many(
        [
            JobRequest("customer:4", "notify", {"customer_id": 4, "text": "hi"}),
            JobRequest("customer:5", "notify", {"customer_id": "five", "text": "hi"}),
        ]
    )
except ValidationError as exc:
    print(exc)  # item 1: invalid params: customer_id: ...
print(topia.list_jobs(queue="customer:4"))  # [] : nothing was written
# --8<-- [end:bad]

# --8<-- [start:together]
with topia.transaction() as conn:  # both jobs, or neither
    notify.options(connection=conn).delay("customer:6", customer_id=6, text="hello")
    topia.enqueue_many([JobRequest("audit", audit, {"event": "greeted 6"})], connection=conn)
print([job.action for job in topia.list_jobs(queue="audit", state="pending")])
# --8<-- [end:together]
