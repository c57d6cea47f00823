"""add seats

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("rides", sa.Column("seats", sa.Integer, nullable=False, server_default="1"))


def downgrade() -> None:
    op.drop_column("rides", "seats")
