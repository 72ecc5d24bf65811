"""Flags in the database, the review workflow, token expiry, and the hash-chained,
append-only audit log.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

import datetime as dt
import json
from types import SimpleNamespace

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def _when(value: object) -> dt.datetime | None:
    """A datetime as read back by the driver (SQLite gives text)."""
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value))


def _day(value: object) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def _audit_chain() -> None:
    """Hash the entries written before the chain existed, in id order."""
    from ews.audit import content, entry_hash

    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT id, at, actor, role, action, resource, agency, officer_id, detail "
            "FROM audit_log ORDER BY id"
        )
    ).mappings()
    prev = GENESIS
    updates = []
    for r in rows:
        at = _when(r["at"])
        detail = r["detail"] if not isinstance(r["detail"], str) else json.loads(r["detail"])

        h = entry_hash(prev, content(SimpleNamespace(**{**dict(r), "at": at, "detail": detail})))
        updates.append({"id": r["id"], "p": prev, "h": h})
        prev = h
    for u in updates:
        bind.execute(
            sa.text("UPDATE audit_log SET prev_hash = :p, entry_hash = :h WHERE id = :id"), u
        )


def _append_only(dialect: str) -> None:
    if dialect == "sqlite":
        op.execute(
            "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )
        op.execute(
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
            "WHEN OLD.id > (SELECT coalesce(max(through_id), 0) FROM audit_anchor) "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: "
            "archive old entries with ews audit archive'); END"
        )
        for what in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_anchor_no_{what.lower()} BEFORE {what} ON audit_anchor "
                "BEGIN SELECT RAISE(ABORT, 'audit_anchor is append-only'); END"
            )
        return
    if dialect != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION ews_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_log'
             AND OLD.id <= (SELECT coalesce(max(through_id), 0) FROM audit_anchor) THEN
            RETURN OLD;
          END IF;
          RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP;
        END $$
        """
    )
    for table in ("audit_log", "audit_anchor"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ews_audit_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ews_audit_append_only()"
        )


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "agencies",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.execute(
        "INSERT INTO agencies (name, created_at) SELECT agency, min(at) FROM ingest_log "
        "GROUP BY agency"
    )
    op.create_table(
        "scoring_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("agency", sa.String(64), sa.ForeignKey("agencies.name"), nullable=False),
        sa.Column("as_of_date", sa.Date, nullable=False),
        sa.Column("scored_at", sa.DateTime, nullable=False),
        sa.Column("current", sa.Boolean, nullable=False),
        sa.Column("officers", sa.Integer, nullable=False),
        sa.Column("flagged", sa.Integer, nullable=False),
        sa.Column("model_name", sa.String(200)),
        sa.Column("model_version", sa.String(50)),
        sa.Column("snapshot_id", sa.String(64)),
        sa.Column("label", sa.String(100)),
        sa.Column("provenance", sa.JSON, nullable=False),
    )
    op.create_index("ix_scoring_runs_agency_date", "scoring_runs", ["agency", "as_of_date"])
    op.create_table(
        "flags",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("scoring_runs.id"), nullable=False),
        sa.Column("agency", sa.String(64), nullable=False),
        sa.Column("as_of_date", sa.Date, nullable=False),
        sa.Column("officer_id", sa.String(200), nullable=False),
        sa.Column("unit", sa.String(200)),
        sa.Column("peer_rank", sa.String(200)),
        sa.Column("score", sa.Float),
        sa.Column("rank", sa.Integer),
        sa.Column("percentile", sa.Float),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("explanation", sa.Text, nullable=False),
        sa.Column("factors", sa.JSON, nullable=False),
        sa.Column("rules_fired", sa.JSON, nullable=False),
        sa.Column("extra", sa.JSON, nullable=False),
    )
    op.create_index("ix_flags_run_rank", "flags", ["run_id", "rank"])
    op.create_index("ix_flags_agency_officer", "flags", ["agency", "officer_id"])
    op.create_table(
        "officer_units",
        sa.Column("agency", sa.String(64), primary_key=True),
        sa.Column("officer_id", sa.String(200), primary_key=True),
        sa.Column("unit", sa.String(200)),
        sa.Column("as_of_date", sa.Date, nullable=False),
    )
    op.create_index("ix_officer_units_unit", "officer_units", ["unit"])

    # users: expiry and revocation
    with op.batch_alter_table("users") as b:
        b.add_column(sa.Column("expires_at", sa.DateTime))
        b.add_column(sa.Column("token_issued_at", sa.DateTime))
        b.add_column(sa.Column("revoked_at", sa.DateTime))

    # reviews: one row per workflow step; the old decisions become steps
    op.rename_table("reviews", "reviews_v1")
    reviews = op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("agency", sa.String(64), nullable=False),
        sa.Column("officer_id", sa.String(200), nullable=False),
        sa.Column("as_of_date", sa.Date, nullable=False),
        sa.Column("flagged_at", sa.DateTime),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("from_status", sa.String(30), nullable=False),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("intervention_type", sa.String(50)),
        sa.Column("due_date", sa.Date),
        sa.Column("reason", sa.String(500)),
        sa.Column("note", sa.String(4000), nullable=False),
        sa.Column("factor_feedback", sa.JSON, nullable=False),
        sa.Column("model_version", sa.String(200)),
        sa.Column("idempotency_key", sa.String(100)),
    )
    op.create_index("ix_reviews_flag", "reviews", ["agency", "officer_id", "as_of_date"])
    op.create_index(
        "ix_reviews_idempotency", "reviews", ["reviewer", "idempotency_key"], unique=True
    )
    status = op.create_table(
        "flag_status",
        sa.Column("agency", sa.String(64), primary_key=True),
        sa.Column("officer_id", sa.String(200), primary_key=True),
        sa.Column("as_of_date", sa.Date, primary_key=True),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("first_reviewed_at", sa.DateTime),
        sa.Column("due_date", sa.Date),
        sa.Column("last_review_id", sa.Integer, nullable=False),
    )
    bind = op.get_bind()
    old = bind.execute(sa.text("SELECT * FROM reviews_v1 ORDER BY id")).mappings().all()
    steps = {"intervention": "intervention_assigned", "monitor": "under_review"}
    state: dict[tuple[str, str, object], dict[str, object]] = {}
    rows = []
    for raw in old:
        r = {**raw, "at": _when(raw["at"]), "flagged_at": _when(raw["flagged_at"])}
        r["as_of_date"] = _day(r["as_of_date"])
        key = (r["agency"], r["officer_id"], r["as_of_date"])
        before = state.get(key, {}).get("status", "new")
        after = steps.get(r["decision"], "dismissed")
        note = r["note"] or ""
        if r["intervention"]:
            note = f"{note} (intervention recorded before the workflow: {r['intervention']})"
        rows.append(
            {
                "id": r["id"],
                "at": r["at"],
                "agency": r["agency"],
                "officer_id": r["officer_id"],
                "as_of_date": r["as_of_date"],
                "flagged_at": r["flagged_at"],
                "reviewer": r["reviewer"],
                "from_status": before,
                "status": after,
                "intervention_type": "other" if after == "intervention_assigned" else None,
                "due_date": None,
                "reason": "no action needed" if after == "dismissed" else None,
                "note": note.strip()[:4000],
                "factor_feedback": [],
                "model_version": r["model_version"],
                "idempotency_key": None,
            }
        )
        prior = state.get(key, {})
        state[key] = {
            "status": after,
            "updated_at": r["at"],
            "first_reviewed_at": prior.get("first_reviewed_at", r["at"]),
            "last_review_id": r["id"],
        }
    if rows:
        op.bulk_insert(reviews, rows)
        op.bulk_insert(
            status,
            [
                {"agency": a, "officer_id": o, "as_of_date": d, "due_date": None, **v}
                for (a, o, d), v in state.items()
            ],
        )
    op.drop_table("reviews_v1")

    # the audit chain and its archive anchors
    with op.batch_alter_table("audit_log") as b:
        b.add_column(sa.Column("prev_hash", sa.String(64), nullable=False, server_default=""))
        b.add_column(sa.Column("entry_hash", sa.String(64), nullable=False, server_default=""))
        b.create_index("ix_audit_log_agency", ["agency"])
    _audit_chain()
    op.create_table(
        "audit_anchor",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("through_id", sa.Integer, nullable=False),
        sa.Column("through_hash", sa.String(64), nullable=False),
        sa.Column("entries", sa.Integer, nullable=False),
        sa.Column("archive_sha256", sa.String(64), nullable=False),
        sa.Column("archive_name", sa.String(500), nullable=False),
    )
    _append_only(dialect)


def downgrade() -> None:
    raise NotImplementedError("the audit chain and the review workflow are not downgraded")
