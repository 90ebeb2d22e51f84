"""What every command that takes APP shares: its options, opening the topia, durations."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from enum import StrEnum
from typing import Annotated

import typer

from queuetopia import Job, QueueInfo, Queuetopia

from .errors import user_errors
from .loader import load_app
from .logs import setup_logging


class LogFormat(StrEnum):
    text = "text"
    json = "json"


App = Annotated[str, typer.Argument(metavar="APP", help="The topia to use, as module:attribute.")]
OptionalApp = Annotated[
    str | None,
    typer.Argument(
        metavar="APP",
        show_default=False,
        help="The topia whose database to use, as module:attribute; else --dsn.",
    ),
]
Dsn = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        envvar="QUEUETOPIA_DSN",
        show_envvar=True,
        help="PostgreSQL DSN; overrides the topia's own.",
    ),
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
LogFormatOption = Annotated[
    LogFormat, typer.Option("--log-format", help="Log lines as text or JSON (on stderr).")
]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


@contextmanager
def open_topia(
    app_spec: str, dsn: str | None, verbose: bool, log_format: LogFormat
) -> Iterator[Queuetopia]:
    """Set up logging and load APP; close it afterwards. Every failure a person can
    fix inside the block becomes one line on stderr."""
    setup_logging(verbose, log_format.value)
    with user_errors(app_spec):
        topia = load_app(app_spec, dsn)
        try:
            yield topia
        finally:
            topia.close()


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """'90', '30s', '15m', '12h', '7d', '2w' or a sum like '1h30m', as a timedelta."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise typer.BadParameter(f"{text!r} is not a duration like 30s, 15m, 12h or 7d")
    return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))


def shown(topia: Queuetopia, job: Job) -> Job:
    """The job as people may see it: params its action marks sensitive are masked."""
    return job.model_copy(update={"params": topia.shown_params(job)})


def shown_queue(topia: Queuetopia, info: QueueInfo) -> QueueInfo:
    """The queue with its head's sensitive params masked."""
    if info.head is None:
        return info
    return info.model_copy(update={"head": shown(topia, info.head)})
