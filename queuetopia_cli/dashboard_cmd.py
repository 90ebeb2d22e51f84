"""`queuetopia dashboard`: serve the web dashboard of APP (the `dashboard` extra, imported
only when this command runs: the rest of the CLI works without it)."""

from __future__ import annotations

import ipaddress
import sys
from typing import Annotated

import typer

from . import render
from .common import App, Dsn, LogFormat, LogFormatOption, Verbose, open_topia
from .errors import fail

EXTRA_MISSING = "the dashboard needs its extra: pip install 'queuetopia[dashboard]'"


def dashboard(
    app_spec: App,
    host: Annotated[
        str, typer.Option(help="Address to listen on; only this machine by default.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Show no buttons; refuse every action.")
    ] = False,
    dsn: Dsn = None,
    verbose: Verbose = False,
    log_format: LogFormatOption = LogFormat.text,
) -> None:
    """Serve the web dashboard: blocked queues first, jobs, workers, with buttons.

    The buttons retry and cancel jobs, pause and resume queues (none with --read-only).
    HTTP basic authentication when $QUEUETOPIA_DASHBOARD_USER and
    $QUEUETOPIA_DASHBOARD_PASSWORD are set."""
    try:
        import uvicorn

        from queuetopia.dashboard import create_app
        from queuetopia.dashboard.security import basic_from_env
    except ImportError:
        raise fail(EXTRA_MISSING) from None
    with open_topia(app_spec, dsn, verbose, log_format) as topia:
        app = create_app(topia, read_only=read_only)
        mode = " (read-only)" if read_only else ""
        render.say(f"dashboard of scope {topia.scope!r}{mode} on http://{_url_host(host)}:{port}/")
        if not _loopback(host) and basic_from_env() is None:
            print(
                f"warning: listening on {host} without authentication; set "
                "QUEUETOPIA_DASHBOARD_USER and QUEUETOPIA_DASHBOARD_PASSWORD",
                file=sys.stderr,
            )
        uvicorn.run(app, host=host, port=port, log_level="warning" if not verbose else "info")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
