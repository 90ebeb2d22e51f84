"""The smallest complete program: register an action, enqueue, run a worker until done.

    QUEUETOPIA_DSN=postgresql://... python examples/quickstart.py
(without QUEUETOPIA_DSN it uses the embedded PostgreSQL under ./.queuetopia/)
"""

from __future__ import annotations

import os
import time

from queuetopia import JobState, Queuetopia

topia = Queuetopia(scope=os.environ.get("EXAMPLE_SCOPE", "quickstart"))


@topia.action("send_mail", timeout=30, max_attempts=5)
def send_mail(to: str, body: str = "") -> str:
    print(f"mail to {to}: {body}")
    return "sent"


def main() -> None:
    topia.migrate()
    jobs = [
        send_mail.delay("customer:42", to="ada@example.com", body="welcome"),
        send_mail.delay("customer:42", to="ada@example.com", body="your invoice"),
        send_mail.delay("customer:7", to="alan@example.com", body="welcome"),
    ]
    with topia.worker(concurrency=2):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(topia.get_job(j.id).state == JobState.DONE for j in jobs):  # type: ignore[union-attr]
                break
            time.sleep(0.05)
    for job in jobs:
        print(job.id, topia.get_job(job.id).state.value)  # type: ignore[union-attr]
    topia.close()


if __name__ == "__main__":
    main()
