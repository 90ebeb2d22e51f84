"""Unique jobs: one unfinished job per key and queue."""

from queuetopia import Queuetopia
from queuetopia.testing import drain

topia = Queuetopia(scope="unique")


@topia.action("send_welcome")
def send_welcome(user_id: int) -> None:
    print(f"welcome, user {user_id}")


topia.migrate()
# --8<-- [start:unique]
first = send_welcome.options(unique_key="welcome:42").delay("mail", user_id=42)
again = send_welcome.options(unique_key="welcome:42").delay("mail", user_id=42)
print(again.id == first.id, first.deduplicated, again.deduplicated)  # True False True

drain(topia)  # welcome, user 42 (once)
later = send_welcome.options(unique_key="welcome:42").delay("mail", user_id=42)
print(later.id == first.id, later.deduplicated)  # False False: a done job frees its key
# --8<-- [end:unique]
