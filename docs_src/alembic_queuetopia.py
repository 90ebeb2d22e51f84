"""add queuetopia's tables

An Alembic revision (alembic/versions/): queuetopia's schema, owned by Alembic.

Revision ID: 7a1f0c2e9b3d
Revises:
"""

from alembic import op

from queuetopia.migrations import down_sql, up_sql

revision = "7a1f0c2e9b3d"
down_revision = None


def upgrade() -> None:
    op.execute(up_sql())


def downgrade() -> None:
    op.execute(down_sql())
