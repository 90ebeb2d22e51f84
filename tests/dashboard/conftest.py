"""Fixtures of the dashboard tests: a topia whose queues show every status, a client
for it, and (for the browser tests) headless Chromium from the Debian packages."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from queuetopia import Queuetopia

CHROMIUM = os.environ.get("QUEUETOPIA_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("QUEUETOPIA_CHROMEDRIVER", "/usr/bin/chromedriver")
# Set to a directory (docs/img) to have the browser tests write the docs' screenshots.
SCREENSHOTS_ENV = "QUEUETOPIA_SCREENSHOTS"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]


def _missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() or shutil.which(path)):
            return f"{path} missing: apt-get install chromium chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium missing: pip install selenium (in the dev extra)"
    return None


@pytest.fixture(scope="session")
def browser_available() -> None:
    """Skip without Chromium, except in CI (CI=true), where that is a failure."""
    reason = _missing_browser()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser tests must run in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def driver(browser_available: None) -> Iterator[Any]:
    """One headless Chromium per test module, with a fresh profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="queuetopia-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1000"]:
        options.add_argument(flag)
    chrome = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    chrome.set_page_load_timeout(30)
    try:
        yield chrome
    finally:
        chrome.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def screenshot(driver: Any) -> Callable[[str], None]:
    """Write the window as docs' PNG `name` when $QUEUETOPIA_SCREENSHOTS is set."""
    target = os.environ.get(SCREENSHOTS_ENV)

    def take(name: str) -> None:
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            assert driver.save_screenshot(str(Path(target) / name))

    return take


@dataclass
class Shop:
    """A topia whose `charge` action fails until `fixed` is set."""

    topia: Queuetopia
    fixed: threading.Event


@pytest.fixture
def shop(make_topia: Callable[..., Queuetopia]) -> Shop:
    topia = make_topia()
    fixed = threading.Event()

    # Retries an hour apart: in a test, only an operator's retry runs it again.
    @topia.action("charge", max_attempts=20, backoff=lambda job: 3600.0, sensitive=("card",))
    def charge(account: str, amount_cents: int, card: str = "") -> str:
        if not fixed.is_set():
            raise ConnectionError(f"payments.example.com answered 503 for {account}")
        return f"charged {amount_cents} to {account}"

    @topia.action("send_mail")
    def send_mail(to: str, subject: str = "") -> str:
        return f"sent to {to}"

    @topia.action("refund", max_attempts=1)
    def refund(order: int) -> None:
        raise ValueError(f"order {order} was never paid")

    return Shop(topia, fixed)
