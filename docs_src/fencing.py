"""A fencing token: the action passes `job.fence` to the system it writes to, which
keeps the highest token it has seen and refuses a write that carries a lower one."""

from queuetopia import Job, Queuetopia
from queuetopia.testing import drain

topia = Queuetopia(scope="ledger")
topia.migrate()

# The other system. Here a table; any store with a conditional write will do.
with topia.connection() as conn:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS partner_balance"
        " (account text PRIMARY KEY, cents bigint NOT NULL, fence bigint NOT NULL)"
    )


def write_balance(account: str, cents: int, fence: int) -> bool:
    """Write unless a later holder of the queue has written already."""
    with topia.connection() as conn:
        row = conn.execute(
            "INSERT INTO partner_balance AS b VALUES (%s, %s, %s)"
            " ON CONFLICT (account) DO UPDATE SET cents = EXCLUDED.cents, fence = EXCLUDED.fence"
            " WHERE b.fence <= EXCLUDED.fence RETURNING true",
            (account, cents, fence),
        ).fetchone()
    return row is not None


fences: list[int] = []


@topia.action("sync_balance")
def sync_balance(account: str, cents: int, job: Job) -> None:
    assert job.fence is not None  # set in every attempt
    fences.append(job.fence)
    if not write_balance(account, cents, job.fence):
        raise RuntimeError("a later holder of this queue wrote first")


sync_balance.delay("account:7", account="7", cents=1200)
drain(topia)
# A worker frozen since an older lease of the queue wakes up and writes: refused.
print(write_balance("7", 999, fence=fences[0] - 1))
# False
with topia.connection() as conn:
    print(conn.execute("SELECT cents FROM partner_balance").fetchone())
# (1200,)
