"""Django migrations that apply queuetopia's own versioned SQL.

Each Django migration of this app stands for one SQL version and has its name
(0002_periodic.py for migrations/0002_periodic.up.sql). It applies the version with
queuetopia's migrator, under its advisory lock, and only if the versions table does not
record it yet: `manage.py migrate` and `queuetopia migrate` may run in either order.
A new SQL version needs a two-line Django migration: `Migration = version_migration(__name__)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import migrations, router
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState

from queuetopia import ConfigurationError
from queuetopia import migrations as sql_migrations
from queuetopia.db.connections import is_sync_connection

if TYPE_CHECKING:
    from queuetopia.db.rows import Conn

APP_LABEL = "queuetopia"


class ApplyVersion(Operation):
    """Apply queuetopia SQL version `version` (and any older one still missing)."""

    reversible = True
    reduces_to_sql = True  # `manage.py sqlmigrate` prints the version's SQL
    atomic = False  # queuetopia's migrator commits the version in its own transaction

    def __init__(self, version: int) -> None:
        self.version = version

    def state_forwards(self, app_label: str, state: ProjectState) -> None:
        pass  # the tables are not Django models' tables; models.py maps them unmanaged

    def database_forwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        if not router.allow_migrate(schema_editor.connection.alias, app_label):
            return
        if schema_editor.collect_sql:
            schema_editor.collected_sql.append(_version(self.version).up)
            return
        sql_migrations.migrate(_raw(schema_editor), upto=self.version)

    def database_backwards(
        self,
        app_label: str,
        schema_editor: BaseDatabaseSchemaEditor,
        from_state: ProjectState,
        to_state: ProjectState,
    ) -> None:
        if not router.allow_migrate(schema_editor.connection.alias, app_label):
            return
        if schema_editor.collect_sql:
            schema_editor.collected_sql.append(_version(self.version).down)
            return
        sql_migrations.unapply(_raw(schema_editor), self.version)

    def describe(self) -> str:
        return f"Apply queuetopia SQL version {self.version}"


def _raw(schema_editor: BaseDatabaseSchemaEditor) -> Conn:
    connection = schema_editor.connection
    connection.ensure_connection()
    raw = connection.connection
    if not is_sync_connection(raw):
        raise ConfigurationError(
            "queuetopia's Django migrations need Django's psycopg 3 backend "
            f"(database {connection.alias!r} uses {type(raw).__module__})"
        )
    return raw


def _version(version: int) -> sql_migrations.Migration:
    (found,) = (m for m in sql_migrations.all_migrations() if m.version == version)
    return found


def django_name(version: int) -> str:
    """The Django migration name of a SQL version: its file name without .up.sql."""
    found = _version(version)
    return f"{found.version:04d}_{found.name}"


def version_migration(
    module_name: str, state_operations: list[Operation] | None = None
) -> type[migrations.Migration]:
    """The Django migration of the SQL version its module is named after, depending
    on the Django migration of the version before it; `state_operations` tell Django
    about unmanaged models over the tables (models.py)."""
    name = module_name.rpartition(".")[2]
    version = int(name.partition("_")[0])
    if django_name(version) != name:
        raise ConfigurationError(f"Django migration {name} must be named {django_name(version)}")
    older = [m.version for m in sql_migrations.all_migrations() if m.version < version]
    attributes = {
        "atomic": False,
        "initial": not older,
        "dependencies": [(APP_LABEL, django_name(max(older)))] if older else [],
        "operations": [ApplyVersion(version), *(state_operations or [])],
    }
    return type("Migration", (migrations.Migration,), attributes)
