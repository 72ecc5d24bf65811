"""Users with roles and unit scopes; supervisors' reviews and interventions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(200), nullable=False, unique=True),
        sa.Column("role", sa.String(50), nullable=False),
        sa.Column("agency", sa.String(200), nullable=True),
        sa.Column("units", sa.JSON, nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("agency", sa.String(200), nullable=False, index=True),
        sa.Column("officer_id", sa.String(200), nullable=False, index=True),
        sa.Column("as_of_date", sa.Date, nullable=False),
        sa.Column("flagged_at", sa.DateTime, nullable=True),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("decision", sa.String(50), nullable=False),
        sa.Column("intervention", sa.String(200), nullable=True),
        sa.Column("note", sa.String(4000), nullable=False),
        sa.Column("model_version", sa.String(200), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("reviews")
    op.drop_table("users")
