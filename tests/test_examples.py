"""Every example in examples/ runs, against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXPECTED = {
    "fastapi_app.py": [
        "receipt to ada@example.com",
        "failed order: HTTP 500, jobs for it: 0",
    ],
    "django_app.py": ["welcome ada@example.com", "jobs in scope: 1"],
    "quickstart.py": ["mail to ada@example.com: welcome", "done"],
    "webhooks.py": [
        "customer-1 -> order.created, order.paid, order.shipped",
        "customer-2 -> order.created, order.paid, order.shipped",
    ],
}


def test_every_example_is_covered() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py")}
    assert scripts == set(EXPECTED), "add the new example to EXPECTED"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, dsn: str) -> None:
    env = {**os.environ, "QUEUETOPIA_DSN": dsn, "EXAMPLE_SCOPE": f"ex-{uuid.uuid4().hex[:8]}"}
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for line in EXPECTED[name]:
        assert line in result.stdout
