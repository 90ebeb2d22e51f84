"""Rate limits: each customer's endpoint at most 5 calls a second, and a partner's
queues together at most 2 a second."""

import time

from queuetopia import Queuetopia

topia = Queuetopia(scope="hooks")
started: dict[str, list[float]] = {}


@topia.action("call")
def call(endpoint: str) -> None:
    started.setdefault(endpoint, []).append(time.monotonic())


topia.migrate()
topia.set_limit("per-customer", queues="customer:*", rate="5/s")  # each on its own budget
topia.set_limit("partner", queues="partner:*", rate="2/s", shared=True)  # one budget
for n in range(5):
    call.delay("customer:1", endpoint="customer 1")
    call.delay("customer:2", endpoint="customer 2")
    call.delay(f"partner:{n % 2}", endpoint="partner")
limits = [f"{lim.name} {lim.rate}" for lim in topia.list_limits()]
print(limits)  # ['partner 2/s', 'per-customer 5/s']

with topia.worker():
    while sum(map(len, started.values())) < 15:
        time.sleep(0.05)
spent = {name: times[-1] - times[0] for name, times in started.items()}
print(spent["customer 1"] > 0.6, spent["customer 2"] > 0.6)  # True True: 5 calls at 5/s
print(spent["partner"] > 1.6)  # True: 5 calls, two queues sharing 2/s
