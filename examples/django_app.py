"""Django with queuetopia.contrib.django: `.delay()` inside `transaction.atomic()` joins
Django's transaction, so the job commits or rolls back with the model change.

    python examples/django_app.py
"""

from __future__ import annotations

import contextlib
import os
import time

import django
from django.conf import settings
from psycopg.conninfo import conninfo_to_dict

from queuetopia import JobState, Queuetopia

# No DSN: the Django app points the topia at Django's database.
topia = Queuetopia(scope=os.environ.get("EXAMPLE_SCOPE", "django"))
sent: list[str] = []


@topia.action("send_welcome")
def send_welcome(user_id: int, email: str) -> None:
    sent.append(f"welcome {email}")


def configure_django() -> None:
    info = conninfo_to_dict(os.environ["QUEUETOPIA_DSN"])
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": info.get("dbname", "postgres"),
                "USER": info.get("user", ""),
                "PASSWORD": info.get("password", ""),
                "HOST": info.get("host", ""),
                "PORT": info.get("port", ""),
            }
        },
        INSTALLED_APPS=["queuetopia.contrib.django"],
        QUEUETOPIA={"APP": "__main__:topia"},
    )
    django.setup()


def sign_up(email: str, fail: bool = False) -> int:
    from django.db import connection, transaction

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO example_users (email) VALUES (%s) RETURNING id", [email])
            user_id: int = cursor.fetchone()[0]
        send_welcome.delay(f"user:{user_id}", user_id=user_id, email=email)  # in this transaction
        if fail:
            raise RuntimeError("sign-up failed after the enqueue")
    return user_id


def main() -> None:
    configure_django()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)  # queuetopia's tables, if `queuetopia migrate` has not
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS example_users (id serial PRIMARY KEY, email text NOT NULL)"
        )
    user_id = sign_up("ada@example.com")
    with contextlib.suppress(RuntimeError):  # rolled back: no user, no job
        sign_up("mallory@example.com", fail=True)
    with topia.worker():
        deadline = time.monotonic() + 20
        while not topia.list_jobs(queue=f"user:{user_id}", state=JobState.DONE):
            assert time.monotonic() < deadline, "the welcome job did not run"
            time.sleep(0.05)
    print("\n".join(sent))
    print(f"jobs in scope: {len(topia.list_jobs())}")


if __name__ == "__main__":
    main()
