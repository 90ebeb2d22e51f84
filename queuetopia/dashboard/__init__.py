"""A web dashboard for one topia: see and fix blocked queues in a browser.

`create_app(topia)` returns a Starlette (ASGI) application, served by
`queuetopia dashboard APP` or mounted in your own application (docs/dashboard.md).
It needs the `dashboard` extra: `pip install 'queuetopia[dashboard]'`.
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by the CLI's message
    raise ImportError(
        "the queuetopia dashboard needs its extra: pip install 'queuetopia[dashboard]'"
    ) from exc

from .app import create_app

__all__ = ["create_app"]
