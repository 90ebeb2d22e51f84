import uuid
from collections.abc import Iterator

import pytest

from queuetopia import Queuetopia

from signup import topia as app_topia


@pytest.fixture(scope="session", autouse=True)
def schema() -> None:
    app_topia.migrate()  # the test database comes from $QUEUETOPIA_DSN


@pytest.fixture
def topia(monkeypatch: pytest.MonkeyPatch) -> Iterator[Queuetopia]:
    """The app's topia, in a scope of its own for each test: no test sees another's jobs."""
    monkeypatch.setattr(app_topia, "scope", f"test-{uuid.uuid4().hex[:8]}")
    yield app_topia
