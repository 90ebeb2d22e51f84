"""Operations on many queues at once, from Python."""

from queuetopia import Queuetopia, Selection
from queuetopia.testing import drain

topia = Queuetopia(scope="ops")


@topia.action("deliver", max_attempts=1)
def deliver(url: str) -> None:
    raise ConnectionError(f"{url} is down")


topia.migrate()
for shop in ("acme", "globex", "initech"):
    deliver.delay(f"webhooks:{shop}", url=f"https://{shop}.example/hook")
drain(topia)

# --8<-- [start:selection]
failed_webhooks = Selection(queue_pattern="webhooks:*", states=("failed",))
would = topia.retry_jobs(failed_webhooks, dry_run=True)  # what would change; nothing written
print([job.queue for job in would])

retried = topia.retry_jobs(failed_webhooks, by="ana", reason="partner fixed their endpoint")
entry = retried[0].operator_log[-1]
print(entry.action, entry.by, entry.reason)  # retry ana partner fixed their endpoint

print(topia.pause_queues("webhooks:*", reason="partner outage"))  # the queues that changed
# --8<-- [end:selection]
