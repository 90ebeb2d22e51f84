"""An APP for CLI tests. `topia` is built on each access from $QUEUETOPIA_DSN and
$QT_TEST_SCOPE, so every test (and every subprocess) picks its own scope."""

from __future__ import annotations

import os
from typing import Any

from queuetopia import Queuetopia

SCOPE_ENV = "QT_TEST_SCOPE"

not_a_topia = "just a string"


def build() -> Queuetopia:
    topia = Queuetopia(
        dsn=os.environ.get("QUEUETOPIA_DSN"),
        scope=os.environ.get(SCOPE_ENV, "cli-test"),
        lock_ttl=3.0,
        pool_size=2,
    )

    @topia.action("send_mail")
    def send_mail(to: str, body: str = "") -> str:
        return f"sent to {to}"

    @topia.action("charge", max_attempts=3)
    def charge(account: str, amount_cents: int) -> None:
        raise RuntimeError(f"card declined for {account}")

    @topia.action("sign_in", sensitive=("password", "card.number"))
    def sign_in(user: str, password: str, card: dict[str, str] | None = None) -> None: ...

    return topia


def __getattr__(name: str) -> Any:
    if name == "topia":
        return build()
    raise AttributeError(name)
