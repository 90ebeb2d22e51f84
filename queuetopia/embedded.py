"""The embedded PostgreSQL default: a pgserver instance under ./.queuetopia/."""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

from .errors import ConfigurationError

logger = logging.getLogger("queuetopia")
DEFAULT_DIR = Path(".queuetopia")

_lock = threading.Lock()
_servers: dict[Path, str] = {}


def embedded_dsn(directory: Path | str = DEFAULT_DIR) -> str:
    """Start or reuse the embedded server in `directory` and return its DSN."""
    path = Path(directory).resolve()
    with _lock:
        if path not in _servers:
            _servers[path] = _start(path)
            logger.info(
                "using the embedded PostgreSQL in %s (set QUEUETOPIA_DSN for production)", path
            )
        return _servers[path]


def _start(path: Path) -> str:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
            import pgserver
    except ImportError:
        raise ConfigurationError(
            "no database configured: set QUEUETOPIA_DSN (or pass dsn=...), or install "
            "the embedded server with: pip install 'queuetopia[embedded]'"
        ) from None
    path.mkdir(parents=True, exist_ok=True)
    # 'stop': the server stops when the last process that uses it exits.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pgserver.get_server(path, cleanup_mode="stop")  # type: ignore[attr-defined]
    return str(server.get_uri())
