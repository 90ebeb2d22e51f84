"""Jobs scheduled for later, and a periodic job."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from queuetopia import Queuetopia, ValidationError
from queuetopia.testing import drain

topia = Queuetopia(scope="reminders")


@topia.action("remind")
def remind(user_id: int, text: str) -> None:
    print(f"user {user_id}: {text}")


# --8<-- [start:periodic]
@topia.periodic("0 6 * * 1-5", queue="reports", params={"kind": "daily"})  # 06:00 UTC, Mon-Fri
def build_report(kind: str) -> None:
    print(f"building the {kind} report")


# --8<-- [end:periodic]


topia.migrate()
soon = remind.schedule(
    "user:42", at=timedelta(minutes=30), user_id=42, text="your trial ends today"
)
paris = datetime(2030, 1, 1, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))
later = remind.schedule("user:42", at=paris, user_id=42, text="happy new year")
print(later.scheduled_at.astimezone(UTC))  # 2030-01-01 08:00:00+00:00

now = remind.delay("user:42", user_id=42, text="welcome")  # due now: runs before the two above
drain(topia)  # user 42: welcome
print(topia.get_job(soon.id).state, topia.get_job(later.id).state)  # pending pending

try:
    remind.schedule("user:42", at=datetime(2030, 1, 1, 9, 0), user_id=42, text="naive")
except ValidationError as exc:
    print(exc)  # scheduled times must be timezone-aware datetimes
