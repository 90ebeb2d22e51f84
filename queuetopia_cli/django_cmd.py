"""The arguments `manage.py queuetopia` (queuetopia.contrib.django) hands the command
line: the topia of the QUEUETOPIA setting in place of APP, and Django's database for the
commands without APP. Imported by the management command once Django is set up."""

from __future__ import annotations

import os

import typer

from queuetopia.contrib.django import conf
from queuetopia.db.connections import DSN_ENV

from .main import app


def cli_args(args: list[str]) -> list[str]:
    if not args or args[0].startswith("-"):
        return args  # --help, or no command: the command line's own usage
    commands = getattr(typer.main.get_command(app), "commands", {})
    sub = commands.get(args[0])
    if sub is None or _asks_for_help(args):
        return args
    names = [p.name for p in sub.params]
    app_param = next((p for p in sub.params if p.name == "app_spec"), None)
    # `migrate` takes APP optionally: without a topia configured, Django's database.
    if app_param is not None and (app_param.required or conf.app_spec()):
        return [args[0], conf.required_app_spec(), *args[1:]]
    if "dsn" in names and not os.environ.get(DSN_ENV) and not _has_dsn(args):
        return [*args, "--dsn", _django_dsn()]
    return args


def _asks_for_help(args: list[str]) -> bool:
    return "--help" in args


def _has_dsn(args: list[str]) -> bool:
    return any(a == "--dsn" or a.startswith("--dsn=") for a in args)


def _django_dsn() -> str:
    """The DSN of the topia if one is configured, else of Django's database."""
    from django.db import connections

    if conf.app_spec():
        return conf.get_topia().dsn
    alias = conf.setting("DATABASE")
    return conf.setting("DSN") or conf.django_dsn(connections[alias].settings_dict)
