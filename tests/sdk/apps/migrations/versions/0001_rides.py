"""create rides

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "rides",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rider", sa.String(50), nullable=False, unique=True),
    )


def downgrade() -> None:
    op.drop_table("rides")
