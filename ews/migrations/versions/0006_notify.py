"""Notifications: users' e-mail addresses, what `ews notify` sent (notices and the flags each
named), and each agency's reminder and escalation days.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("email", sa.String(320), nullable=True))
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sent_at", sa.DateTime, nullable=False),
        sa.Column("agency", sa.String(64), nullable=False, index=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("address", sa.String(320)),
        sa.Column("dedup_key", sa.String(300), nullable=False, unique=True),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("officers", sa.JSON, nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("audit_id", sa.Integer),
    )
    op.create_table(
        "notice_items",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("notice_id", sa.Integer, sa.ForeignKey("notices.id"), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("agency", sa.String(64), nullable=False),
        sa.Column("officer_id", sa.String(200), nullable=False),
        sa.Column("as_of_date", sa.Date, nullable=False),
        sa.UniqueConstraint(
            "channel",
            "kind",
            "recipient",
            "agency",
            "officer_id",
            "as_of_date",
            name="uq_notice_items_once",
        ),
    )
    op.create_index("ix_notice_items_flag", "notice_items", ["agency", "officer_id", "as_of_date"])
    op.create_table(
        "notify_policy",
        sa.Column("agency", sa.String(64), primary_key=True),
        sa.Column("remind_days", sa.Integer, nullable=False),
        sa.Column("escalate_days", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notify_policy")
    op.drop_index("ix_notice_items_flag", "notice_items")
    op.drop_table("notice_items")
    op.drop_table("notices")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("email")
