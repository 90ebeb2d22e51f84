from queuetopia import Queuetopia
from queuetopia.testing import assert_job_created, drain, refute_job_created

from signup import outbox, sign_up


def test_sign_up_sends_one_welcome_mail(topia: Queuetopia) -> None:
    sign_up("ada@example.com")

    assert_job_created(topia, queue="mail:ada@example.com", params={"to": "ada@example.com"})
    refute_job_created(topia, action="charge")

    result = drain(topia)  # runs the due jobs here, by the workers' rules
    assert (result.done, result.failed, result.retried) == (1, 0, 0)
    assert outbox == ["Welcome -> ada@example.com"]


def test_each_test_starts_with_no_jobs(topia: Queuetopia) -> None:
    refute_job_created(topia)
