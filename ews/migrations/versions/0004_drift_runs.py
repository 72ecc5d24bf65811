"""Drift runs: each `ews drift` of an agency's model, for the history and the alerts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drift_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("agency", sa.String(64), sa.ForeignKey("agencies.name"), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(50), nullable=False),
        sa.Column("snapshot_id", sa.String(64)),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("reference_dates", sa.JSON, nullable=False),
        sa.Column("columns", sa.Integer, nullable=False),
        sa.Column("drifted_columns", sa.Integer, nullable=False),
        sa.Column("drifted_share", sa.Float, nullable=False),
        sa.Column("drifted_names", sa.JSON, nullable=False),
        sa.Column("score_drift", sa.Float),
        sa.Column("score_ks_pvalue", sa.Float),
        sa.Column("score_drifted", sa.Boolean, nullable=False),
        sa.Column("flag_rate_reference", sa.Float),
        sa.Column("flag_rate_current", sa.Float),
        sa.Column("k_pct", sa.Float),
        sa.Column("precision_at_k", sa.Float),
        sa.Column("validation_precision_at_k", sa.Float),
        sa.Column("alert", sa.Boolean, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("score_threshold", sa.Float),
        sa.Column("report_path", sa.String(500)),
    )
    op.create_index("ix_drift_runs_agency_created", "drift_runs", ["agency", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_drift_runs_agency_created", table_name="drift_runs")
    op.drop_table("drift_runs")
