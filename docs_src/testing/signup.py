"""Application code under test: signing up enqueues a welcome mail."""

from queuetopia import Queuetopia

topia = Queuetopia(scope="accounts")
outbox: list[str] = []


@topia.action("send_mail")
def send_mail(to: str, subject: str) -> None:
    outbox.append(f"{subject} -> {to}")


def sign_up(email: str) -> None:
    send_mail.delay(f"mail:{email}", to=email, subject="Welcome")
