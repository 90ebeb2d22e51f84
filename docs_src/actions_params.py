"""Actions: typed params validated at enqueue, the `job` parameter, async actions,
sensitive params and results."""

import asyncio
from datetime import date
from typing import Literal

from pydantic import BaseModel

from queuetopia import Job, Queuetopia, ValidationError
from queuetopia.testing import drain

topia = Queuetopia(scope="orders")


class Address(BaseModel):
    street: str
    city: str


@topia.action("ship_order", sensitive=("carrier_token",))
def ship_order(
    order_id: int,
    ship_on: date,
    address: Address,
    carrier_token: str,
    job: Job,  # the running job; not a param
    speed: Literal["standard", "express"] = "standard",
) -> dict[str, object]:
    print(f"attempt {job.attempts}: ship order {order_id} on {ship_on:%d %b} to {address.city}")
    return {"tracking": f"TRK-{order_id}", "speed": speed}


@topia.action("fetch_rates", timeout=10)
async def fetch_rates(currency: str) -> dict[str, float]:
    await asyncio.sleep(0.01)  # an HTTP call, say; cancelled at the timeout
    return {"EUR": 1.0, currency: 1.08}


topia.migrate()

try:
    ship_order.delay("order:17", order_id="seventeen", ship_on="2026-03-02")
except ValidationError as exc:
    print(exc)  # nothing was written
# invalid params: order_id: Input should be a valid integer, unable to parse string as an
# integer; address: Field required; carrier_token: Field required

shipped = ship_order.delay(
    "order:17",
    order_id=17,
    ship_on=date(2026, 3, 2),
    address={"street": "1 Main St", "city": "Springfield"},
    carrier_token="s3cret",
)
print(shipped.params["ship_on"], shipped.params["address"]["city"])  # stored as JSON
# 2026-03-02 Springfield
print(topia.shown_params(shipped)["carrier_token"])  # ***

rates = fetch_rates.delay("rates", currency="USD")
drain(topia)  # attempt 1: ship order 17 on 02 Mar to Springfield
print(topia.get_job(shipped.id).result)  # {'speed': 'standard', 'tracking': 'TRK-17'}
print(topia.get_job(rates.id).result)  # {'EUR': 1.0, 'USD': 1.08}
