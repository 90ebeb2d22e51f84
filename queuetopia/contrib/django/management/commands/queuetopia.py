"""`manage.py queuetopia worker|inspect|jobs|...`: the queuetopia command line, with
Django set up, on the topia of QUEUETOPIA["APP"] and Django's database (docs/django.md)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandParser

# Options `manage.py` itself reads before it runs a command.
_DJANGO_OPTIONS = ("--settings", "--pythonpath")


class Command(BaseCommand):
    help = (
        "Run a queuetopia command (worker, inspect, jobs, ...: `manage.py queuetopia "
        "--help` lists them) on the topia of QUEUETOPIA['APP'] and Django's database."
    )
    requires_system_checks = []  # noqa: RUF012 (BaseCommand declares it a list)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("cli_args", nargs=argparse.REMAINDER, metavar="COMMAND ...")

    def run_from_argv(self, argv: list[str]) -> None:
        # Every argument, --help included, is the queuetopia command line's to parse.
        run_cli(_without_django_options(argv[2:]))

    def handle(self, *args: Any, **options: Any) -> None:
        run_cli(list(options["cli_args"]))


def _without_django_options(args: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _DJANGO_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{o}=" for o in _DJANGO_OPTIONS)):
            kept.append(arg)
    return kept


def run_cli(args: list[str]) -> None:
    """Run the command line in this process; exit with its code when it fails, and
    with one line on stderr when the settings are wrong."""
    from queuetopia_cli.django_cmd import cli_args
    from queuetopia_cli.main import app

    try:
        full = cli_args(args)
    except ImproperlyConfigured as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        app(args=full, prog_name="manage.py queuetopia")
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
