"""Sensitive params: masked when shown, never searchable, scrubbed from errors."""

from queuetopia import Queuetopia
from queuetopia.testing import drain

topia = Queuetopia(scope="payments")


@topia.action("charge_card", sensitive=("card.number", "card.cvc"), max_attempts=1)
def charge_card(customer: str, card: dict[str, str], cents: int) -> None:
    raise RuntimeError(f"card {card['number']} was declined")  # quotes the secret


topia.migrate()
job = charge_card.delay(
    "customer:7",
    customer="Ada",
    card={"number": "4111111111111111", "cvc": "737", "holder": "Ada"},
    cents=1250,
)
print(topia.shown_params(job))
# {'card': {'cvc': '***', 'holder': 'Ada', 'number': '***'}, 'cents': 1250, 'customer': 'Ada'}
print(len(topia.list_jobs(search="4111")), len(topia.list_jobs(search="Ada")))  # 0 1

drain(topia)
print(topia.get_job(job.id).error.splitlines()[0])  # RuntimeError: card *** was declined
