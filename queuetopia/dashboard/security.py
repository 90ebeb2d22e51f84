"""Who may look and who may act: the auth hook, HTTP basic credentials, read-only mode
and CSRF tokens for operator actions (docs/dashboard.md#security-model)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import inspect
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

AuthHook = Callable[[Request], "bool | Awaitable[bool]"]

USER_ENV = "QUEUETOPIA_DASHBOARD_USER"
PASSWORD_ENV = "QUEUETOPIA_DASHBOARD_PASSWORD"
CSRF_COOKIE = "queuetopia_csrf"
CSRF_FIELD = "csrf_token"


def basic_from_env() -> tuple[str, str] | None:
    """HTTP basic credentials from the environment, when both are set."""
    user, password = os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV)
    return (user, password) if user and password else None


@dataclass(frozen=True)
class Access:
    """The rules one dashboard app applies to every request."""

    auth: AuthHook | None
    basic: tuple[str, str] | None
    read_only: bool
    secret: bytes

    async def allows(self, request: Request) -> bool:
        if self.basic is not None and not _basic_matches(request, self.basic):
            return False
        if self.auth is None:
            return True
        verdict: Any = self.auth(request)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return verdict is True

    def csrf_token(self, cookie: str) -> str:
        """The form token that goes with a CSRF cookie: signed with the app's secret, so
        a cookie planted by someone else (a sibling subdomain) comes with no valid token."""
        return hmac.new(self.secret, cookie.encode(), hashlib.sha256).hexdigest()

    def csrf_valid(self, request: Request, form: dict[str, str]) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        sent = form.get(CSRF_FIELD, "")
        return bool(cookie and sent) and hmac.compare_digest(sent, self.csrf_token(cookie))


def new_csrf_cookie() -> str:
    return secrets.token_urlsafe(32)


def new_secret() -> bytes:
    """A secret for this process: tokens die with it. Several processes behind one
    address need a shared `csrf_secret`."""
    return secrets.token_bytes(32)


def _basic_matches(request: Request, expected: tuple[str, str]) -> bool:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Compare both, always: the time taken tells nothing about which one was wrong.
    user_ok = hmac.compare_digest(user.encode(), expected[0].encode())
    password_ok = hmac.compare_digest(password.encode(), expected[1].encode())
    return user_ok and password_ok


class Guard:
    """ASGI middleware: every HTTP request must pass `access.allows`; and every page is
    sent with headers that keep browsers from running or framing anything foreign."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not await self.access.allows(Request(scope, receive)):
            await self._refuse()(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _refuse(self) -> Response:
        if self.access.basic is not None:
            return PlainTextResponse(
                "authentication required",
                401,
                headers={"WWW-Authenticate": 'Basic realm="queuetopia", charset="UTF-8"'},
            )
        return PlainTextResponse("forbidden", 403)


# Only our own script, styles and images; no inline script (a missed escape could not
# run); no framing (clickjacking of the buttons); no referrer leaving the dashboard.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
