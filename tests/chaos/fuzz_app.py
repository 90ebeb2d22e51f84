"""An APP for the CLI fuzzing in tests/chaos/test_security.py: `tests.chaos.fuzz_app:topia`.
Built on each access from $QUEUETOPIA_DSN and $QT_CHAOS_FUZZ_SCOPE."""

from __future__ import annotations

import os
from typing import Any

from queuetopia import Queuetopia

SCOPE_ENV = "QT_CHAOS_FUZZ_SCOPE"


def build() -> Queuetopia:
    topia = Queuetopia(
        dsn=os.environ.get("QUEUETOPIA_DSN"),
        scope=os.environ.get(SCOPE_ENV, "chaos-fuzz"),
        pool_size=1,
        max_params_bytes=4096,
    )

    @topia.action("typed")
    def typed(count: int, name: str, tags: list[str] | None = None) -> None: ...

    @topia.action("loose")
    def loose(**params: Any) -> None: ...

    return topia


def __getattr__(name: str) -> Any:
    if name == "topia":
        return build()
    raise AttributeError(name)
