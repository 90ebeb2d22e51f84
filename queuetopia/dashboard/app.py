"""`create_app`: the dashboard's routes, templates and static files for one topia."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import operations, pages
from .context import Dashboard
from .security import Access, AuthHook, Guard, basic_from_env, new_secret

if TYPE_CHECKING:
    from queuetopia import Queuetopia

HERE = Path(__file__).resolve().parent


def create_app(
    topia: Queuetopia,
    *,
    read_only: bool = False,
    auth: AuthHook | None = None,
    basic_auth: tuple[str, str] | None = None,
    csrf_secret: str | bytes | None = None,
    refresh_seconds: float = 3.0,
) -> Starlette:
    """The dashboard of `topia` as an ASGI app, to serve or to mount in your own.

    - `read_only`: no buttons, and every operator action is refused.
    - `auth(request) -> bool` (or an async one): a request it does not allow gets 403.
    - `basic_auth=(user, password)`, else $QUEUETOPIA_DASHBOARD_USER and
      $QUEUETOPIA_DASHBOARD_PASSWORD when both are set: HTTP basic authentication.
    - `csrf_secret`: signs the CSRF tokens; by default a random one per process (give
      the same one to every process that serves the dashboard behind one address).
    - `refresh_seconds`: how often open pages refresh themselves (0: never).
    """
    secret = csrf_secret.encode() if isinstance(csrf_secret, str) else csrf_secret
    access = Access(
        auth=auth,
        basic=basic_auth or basic_from_env(),
        read_only=read_only,
        secret=secret or new_secret(),
    )
    dashboard = Dashboard(topia, access, HERE / "templates", refresh_seconds)
    routes = [
        Route("/", pages.overview, name="overview"),
        Route("/queue", pages.queue, name="queue"),
        Route("/jobs/{job_id:int}", pages.job, name="job"),
        Route("/workers", pages.workers, name="workers"),
        Route("/jobs/{job_id:int}/retry", operations.retry, methods=["POST"], name="retry"),
        Route("/jobs/{job_id:int}/cancel", operations.cancel, methods=["POST"], name="cancel"),
        Route("/queue/pause", operations.pause, methods=["POST"], name="pause"),
        Route("/queue/resume", operations.resume, methods=["POST"], name="resume"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, access=access)],
        exception_handlers=pages.EXCEPTION_HANDLERS,
    )
    app.state.dashboard = dashboard
    return app
