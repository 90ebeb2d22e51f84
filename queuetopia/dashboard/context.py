"""What every page handler needs: the topia, the access rules, the templates, and how
a page is rendered (whole, or only its live part for a refresh)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..durations import span
from . import display
from .counts import CountsCache
from .history import BlockedHistory
from .security import CSRF_COOKIE, CSRF_FIELD, Access, new_csrf_cookie

if TYPE_CHECKING:
    from queuetopia import Queuetopia

PARTIAL_HEADER = "x-queuetopia-partial"


@dataclass
class Dashboard:
    topia: Queuetopia
    access: Access
    templates_dir: Path
    refresh_seconds: float
    history: BlockedHistory = field(default_factory=BlockedHistory)
    counts: CountsCache = field(default_factory=CountsCache)
    env: jinja2.Environment = field(init=False)

    def __post_init__(self) -> None:
        # Autoescape everything: queue names, params and errors are written by anyone
        # who can enqueue a job.
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.templates_dir),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters.update(
            when=display.when,
            age=display.age,
            age_class=display.age_class,
            stamp=display.stamp,
            first_line=display.first_line,
            error_text=display.error_text,
            pretty_json=display.pretty_json,
            span=span,
            age_of_renewal=display.renewed,
        )

    def render(
        self,
        request: Request,
        template_name: str,
        live_name: str | None = None,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """Render a page; a refresh request (PARTIAL_HEADER) gets only its live part.
        Every page carries a CSRF token; the cookie it pairs with is set if missing."""
        cookie = request.cookies.get(CSRF_COOKIE) or new_csrf_cookie()
        partial = live_name and request.headers.get(PARTIAL_HEADER)
        template = live_name if partial and live_name else template_name
        values = {
            "request": request,
            "url": lambda route, **params: path_for(request, route, **params),
            "scope_name": self.topia.scope,
            "read_only": self.access.read_only,
            "csrf_field": CSRF_FIELD,
            "csrf_token": self.access.csrf_token(cookie),
            "refresh_seconds": self.refresh_seconds,
            "now": datetime.now(UTC),
            **context,
        }
        html = self.env.get_template(template).render(values)
        response = HTMLResponse(html, status_code, headers={"cache-control": "no-store"})
        if request.cookies.get(CSRF_COOKIE) != cookie:
            response.set_cookie(
                CSRF_COOKIE,
                cookie,
                path=path_for(request, "overview"),
                httponly=True,
                samesite="strict",
                secure=request.url.scheme == "https",
            )
        return response


def dashboard_of(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def path_for(request: Request, route: str, **params: Any) -> str:
    """The path of the dashboard's route `route`, under the prefix it is mounted at,
    with the other params as a query: `path_for(request, "queue", name="a/b")` gives
    '/prefix/queue?name=a%2Fb'. Looked up in the dashboard's own router, so the host
    app's route names (or the name of its mount) never get in the way."""
    path_params = {k: v for k, v in params.items() if k in _PATH_PARAMS}
    query = {k: v for k, v in params.items() if k not in _PATH_PARAMS and v is not None}
    root: str = request.scope.get("root_path", "")
    path = root + str(request.app.router.url_path_for(route, **path_params))
    return path + ("?" + urlencode(query) if query else "")


_PATH_PARAMS = {"job_id", "path"}
