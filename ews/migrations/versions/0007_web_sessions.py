"""Server-side page sessions (``web_sessions``) and the token prefix the sign-in limiter
tells users' tokens from guesses by (``users.token_prefix``).

Revision ID: 0007_web_sessions
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_web_sessions"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("session_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("last_seen_at", sa.DateTime, nullable=False),
        sa.Column("expires_at", sa.DateTime, nullable=False),
        sa.Column("ended_at", sa.DateTime, nullable=True),
        sa.Column("end_reason", sa.String(50), nullable=True),
    )
    op.create_index("ix_web_sessions_user_id", "web_sessions", ["user_id"])
    op.add_column("users", sa.Column("token_prefix", sa.String(16), nullable=True))
    op.create_index("ix_users_token_prefix", "users", ["token_prefix"])


def downgrade() -> None:
    op.drop_index("ix_users_token_prefix", table_name="users")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("token_prefix")
    op.drop_index("ix_web_sessions_user_id", table_name="web_sessions")
    op.drop_table("web_sessions")
