"""A bound on blocking: park a head that holds its queue too long."""

import time
from datetime import timedelta

from queuetopia import Queuetopia
from queuetopia.testing import drain

topia = Queuetopia(scope="blocking")


# --8<-- [start:max_blocked]
@topia.action("sync_crm", max_blocked=timedelta(seconds=1), backoff=lambda job: 0)
def sync_crm(customer_id: int) -> None:
    time.sleep(0.6)
    if customer_id == 7:
        raise ConnectionError("the CRM refuses customer 7")
    print(f"synced customer {customer_id}")


# --8<-- [end:max_blocked]

topia.migrate()
stuck = sync_crm.delay("crm", customer_id=7)
sync_crm.delay("crm", customer_id=8)
drain(topia)  # attempts 1 and 2 fail and retry; attempt 3 is over a second: parked
parked = topia.get_job(stuck.id)
print(parked.state, parked.attempt_log[-1].outcome)  # failed parked
print(parked.error.splitlines()[-1])  # parked: blocked its queue for 1.2s, over max_blocked (1s)
[crm] = topia.list_queues()
print(crm.status, crm.failed)  # idle 1: customer 8 was synced, the parked job is counted
