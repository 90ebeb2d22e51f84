"""Failed attempts, a custom backoff, failure hooks, on_exhausted="block", and the
operator's retry and cancel."""

from queuetopia import Job, Queuetopia
from queuetopia.testing import drain


def report(job: Job, error: BaseException) -> None:
    """Every failed attempt of every action: send it to your error tracker."""
    print(f"job {job.id} attempt {job.attempts}/{job.max_attempts} failed: {error}")


topia = Queuetopia(scope="billing", on_failure=report)
limits = {"acme": 500, "globex": 500}


def linear(job: Job) -> float:
    return 60.0 * job.attempts  # seconds: 60, 120, 180, ...


def warn_account_manager(job: Job, error: BaseException) -> None:
    if job.attempts == job.max_attempts:
        print(f"charge {job.params['cents']} for {job.params['account']} gave up")


@topia.action(
    "charge",
    max_attempts=3,
    backoff=linear,
    on_exhausted="block",  # keep the account's queue blocked for an operator
    on_failure=warn_account_manager,
)
def charge(account: str, cents: int) -> None:
    if cents > limits[account]:
        raise RuntimeError(f"{cents} cents is over the limit of {account}")


topia.migrate()
big = charge.options(max_attempts=1).delay("account:acme", account="acme", cents=800)
small = charge.delay("account:acme", account="acme", cents=100)
drain(topia)
# charge 800 for acme gave up
# job 1 attempt 1/1 failed: 800 cents is over the limit of acme
[acme] = topia.list_queues()
print(acme.status, acme.head.id == big.id, acme.head.state)  # blocked True failed

# The operator either fixes the cause and retries: the job keeps its place in line
limits["acme"] = 1000
topia.retry_job(big.id)  # pending, attempts back to 0, due now
drain(topia)
print(topia.get_job(big.id).state, topia.get_job(small.id).state)  # done done

# ... or gives up on the job: the queue moves on
stuck = charge.delay("account:globex", account="globex", cents=900)
after = charge.delay("account:globex", account="globex", cents=200)
drain(topia)  # attempt 1 of 3 fails; the next is due in 60 s
topia.cancel_job(stuck.id, reason="refunded by hand")
drain(topia)
print(topia.get_job(stuck.id).error.splitlines()[0])  # cancelled: refunded by hand
print(topia.get_job(after.id).state)  # done
