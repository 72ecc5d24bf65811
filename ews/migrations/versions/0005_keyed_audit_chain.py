"""The audit chain is keyed: entries from here on carry an HMAC-SHA-256 under the audit key
(a file outside the database, created now if missing), anchors carry the HMAC of their
archive's manifest, and one signed row records where the keyed chain starts.

The rule for chains older than this revision: the entries up to the head at this migration
keep their plain SHA-256; ``audit_chain_start`` records the first keyed entry (``from_id``),
the hash before it and the newest anchor written before it, with the HMAC of the three, so
that the legacy part is fixed by the key too (see :func:`ews.audit.verify`).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

import datetime as dt
from pathlib import Path

import sqlalchemy as sa
from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    from ews.audit import key_id, load_key, sign

    dialect = op.get_bind().dialect.name
    op.add_column("audit_anchor", sa.Column("manifest_sha256", sa.String(64)))
    op.add_column("audit_anchor", sa.Column("mac", sa.String(64)))
    op.create_table(
        "audit_chain_start",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime, nullable=False),
        sa.Column("from_id", sa.Integer, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("legacy_anchor_id", sa.Integer, nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("mac", sa.String(64), nullable=False),
    )
    if dialect == "sqlite":
        for what in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_chain_start_no_{what.lower()} BEFORE {what} ON "
                "audit_chain_start BEGIN SELECT RAISE(ABORT, 'audit_chain_start is "
                "append-only'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE TRIGGER audit_chain_start_append_only BEFORE UPDATE OR DELETE ON "
            "audit_chain_start FOR EACH ROW EXECUTE FUNCTION ews_audit_append_only()"
        )
        op.execute(
            "CREATE TRIGGER audit_chain_start_no_truncate BEFORE TRUNCATE ON audit_chain_start "
            "FOR EACH STATEMENT EXECUTE FUNCTION ews_audit_append_only()"
        )

    bind = op.get_bind()
    head = bind.execute(
        sa.text("SELECT id, entry_hash FROM audit_log ORDER BY id DESC LIMIT 1")
    ).first()
    anchor = bind.execute(
        sa.text("SELECT id, through_id, through_hash FROM audit_anchor ORDER BY id DESC LIMIT 1")
    ).first()
    if head is not None:
        last_id, prev = int(head[0]), str(head[1])
    elif anchor is not None:
        last_id, prev = int(anchor[1]), str(anchor[2])
    else:
        last_id, prev = 0, GENESIS
    fields = {
        "from_id": last_id + 1,
        "prev_hash": prev,
        "legacy_anchor_id": int(anchor[0]) if anchor is not None else 0,
    }
    path = context.config.attributes.get("audit_key_file")
    if path is None:
        from ews.settings import get_settings

        path = get_settings().audit_key_path
    key = load_key(Path(path), create=True)

    bind.execute(
        sa.text(
            "INSERT INTO audit_chain_start (at, from_id, prev_hash, legacy_anchor_id, key_id, "
            "mac) VALUES (:at, :from_id, :prev_hash, :legacy_anchor_id, :key_id, :mac)"
        ),
        {
            **fields,
            "at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
            "key_id": key_id(key),
            "mac": sign(key, "chain-start", fields),
        },
    )


def downgrade() -> None:
    raise NotImplementedError("the keyed audit chain is not downgraded")
