"""Waiting for a job's result, like Celery's AsyncResult.get()."""

from queuetopia import JobFailed, Queuetopia

topia = Queuetopia(scope="results")


@topia.action("add")
def add(a: int, b: int) -> int:
    return a + b


@topia.action("divide", max_attempts=1)
def divide(a: int, b: int) -> float:
    return a / b


topia.migrate()
with topia.worker():
    # --8<-- [start:wait]
    job = add.delay("math", a=2, b=3)
    print(job.wait(timeout=10))  # 5

    broken = divide.delay("math", a=1, b=0)
    try:
        broken.wait(timeout=10)
    except JobFailed as exc:
        print(exc)  # job 2 is failed: ZeroDivisionError: division by zero
    # --8<-- [end:wait]

    # --8<-- [start:history]
    [attempt] = topia.get_job(broken.id).attempt_log
    print(attempt.attempt, attempt.outcome, attempt.error.splitlines()[0])
    # --8<-- [end:history]
