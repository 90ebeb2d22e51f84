"""Order and blocking, run step by step: a failing job holds back its own queue only."""

from queuetopia import Job, Queuetopia
from queuetopia.testing import drain

topia = Queuetopia(scope="webhooks")
delivered: list[str] = []


@topia.action("deliver")
def deliver(customer: int, event: str, job: Job) -> None:
    if event == "order.paid" and job.attempts == 1:
        raise ConnectionError("the endpoint answered 503")
    delivered.append(f"customer {customer}: {event}")


topia.migrate()
for event in ("order.created", "order.paid", "order.shipped"):
    deliver.delay("customer:1", customer=1, event=event)
deliver.delay("customer:2", customer=2, event="order.created")

drain(topia)  # runs every due job in this thread, by the workers' rules
print(delivered)
# ['customer 1: order.created', 'customer 2: order.created']
for queue in topia.list_queues():
    print(queue.queue, queue.status, queue.pending)
# customer:1 blocked 2
# customer:2 idle 0

head = topia.list_queues()[0].head
assert head is not None
print(head.state, head.attempts, head.error.splitlines()[0])
# pending 1 ConnectionError: the endpoint answered 503
topia.retry_job(head.id)  # due now, instead of after its backoff
drain(topia)
print(delivered[2:])
# ['customer 1: order.paid', 'customer 1: order.shipped']
