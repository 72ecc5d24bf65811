"""The audit trail proves itself (issue 15, item 2): entries carry an HMAC under a key kept
outside the database, anchors are signed, and a head kept elsewhere catches truncation. Each
test replays an attack of the issue, with only the rights the application has (SQLite: the
file; PostgreSQL: the service's role), or with the owner's where the issue says so."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from ews.audit import archive, content, entry_hash, load_key, verify
from ews.cli import app
from ews.db import AppDatabase


def _fill(db: AppDatabase, n: int = 5) -> None:
    for i in range(n):
        db.audit("sgt.lee", "supervisor", "read", f"/api/officers/demo/{i}", "demo", str(i))


@pytest.fixture
def db(db_url: str) -> Iterator[AppDatabase]:
    d = AppDatabase(db_url)
    _fill(d)
    yield d
    d.dispose()


@pytest.fixture
def cli_env(db: AppDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from ews.settings import get_settings

    monkeypatch.setenv("EWS_DATABASE_URL", db.url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def _row(db: AppDatabase, i: int) -> dict[str, object]:
    with db.engine.begin() as c:
        return dict(c.execute(text(f"SELECT * FROM audit_log WHERE id = {i}")).mappings().one())


def _insert(db: AppDatabase, row: dict[str, object]) -> None:
    if not db.sqlite and not isinstance(row["detail"], str):
        row = {**row, "detail": json.dumps(row["detail"])}
    cols = ", ".join(row)
    with db.engine.begin() as c:
        c.execute(text(f"INSERT INTO audit_log ({cols}) VALUES (:{', :'.join(row)})"), row)


def test_forged_anchor_then_delete_is_caught(db: AppDatabase, cli_env: None) -> None:
    """The issue's attack: insert an anchor claiming an archive through the newest entry,
    then delete the entries (the delete trigger lets entries under an anchor go)."""
    head = _row(db, 5)
    with db.engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO audit_anchor (at, through_id, through_hash, entries, "
                "archive_sha256, archive_name) VALUES (:at, 5, :h, 5, :s, 'audit-x.jsonl')"
            ),
            {"at": dt.datetime(2024, 1, 1), "h": head["entry_hash"], "s": "0" * 64},
        )
        c.execute(text("DELETE FROM audit_log WHERE id <= 5"))  # the trigger allows it
    v = verify(db)
    assert not v.ok and "not signed by the audit key" in (v.problem or "")
    code, out = _cli("audit", "verify")
    assert code == 1 and "BROKEN" in out and "forged archive" in out


def test_appended_entry_with_a_recomputed_sha256_is_caught(db: AppDatabase) -> None:
    """The issue's attack: append an entry whose plain SHA-256 chain hash is recomputed."""
    last = _row(db, 5)
    forged = {**last, "id": 6, "actor": "ghost", "prev_hash": last["entry_hash"]}
    detail = (
        forged["detail"]
        if not isinstance(forged["detail"], str)
        else json.loads(str(forged["detail"]))
    )
    at = (
        forged["at"]
        if isinstance(forged["at"], dt.datetime)
        else dt.datetime.fromisoformat(str(forged["at"]))
    )
    forged["entry_hash"] = entry_hash(
        str(last["entry_hash"]),
        content(type("E", (), {**forged, "at": at, "detail": detail})),
    )
    _insert(db, forged)
    v = verify(db)
    assert not v.ok and v.first_bad_id == 6 and "MAC does not match" in (v.problem or "")


def _disable_guards(db: AppDatabase) -> None:
    """What the tables' owner can do."""
    with db.engine.begin() as c:
        if db.sqlite:
            c.execute(text("DROP TRIGGER audit_log_no_delete"))
        else:
            c.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))


def test_deleting_the_newest_entries_fails_verify_expect(db: AppDatabase, cli_env: None) -> None:
    """The issue's attack: with the triggers off, delete the newest entries; the chain that
    is left is intact, but not the head printed before."""
    code, head = _cli("audit", "head")
    assert code == 0 and head.strip().startswith("5:") and len(head.strip()) == 2 + 64
    code, out = _cli("audit", "verify", "--expect", head.strip())
    assert code == 0 and "still holds the expected head" in out
    _disable_guards(db)
    with db.engine.begin() as c:
        c.execute(text("DELETE FROM audit_log WHERE id >= 4"))
    code, out = _cli("audit", "verify")
    assert code == 0  # what is left is a valid chain: only the head kept elsewhere shows it
    code, out = _cli("audit", "verify", "--expect", head.strip())
    assert code == 1 and "the newest 2 entries were deleted" in out
    code, out = _cli("audit", "verify", "--expect", "5:nothex")
    assert code == 2 and "Traceback" not in out


def test_rewritten_head_with_the_same_count_fails_expect(db: AppDatabase, cli_env: None) -> None:
    head = _cli("audit", "head")[1].strip()
    _disable_guards(db)
    with db.engine.begin() as c:
        c.execute(text("DELETE FROM audit_log WHERE id = 5"))
    db.audit("someone", "supervisor", "read", "/api/x", "demo")  # a new entry 5, validly keyed
    assert verify(db).ok and verify(db).head_id == 5
    code, out = _cli("audit", "verify", "--expect", head)
    assert code == 1 and "not the expected head" in out


def test_archive_anchor_is_signed_and_its_manifest_checked(
    db: AppDatabase, cli_env: None, tmp_path: Path
) -> None:
    manifest = archive(db, dt.date.today() + dt.timedelta(days=1), tmp_path, actor="test")
    assert verify(db).ok
    archived = tmp_path / manifest["file"]
    code, out = _cli("audit", "verify", "--archive", str(archived))
    assert code == 0 and "archive audit-" in out and "intact: 5 entries" in out
    # a manifest rewritten to match an edited archive is not the one the anchor signed
    data = archived.read_text().replace("sgt.lee", "sgt.lie")
    archived.write_text(data)
    m = json.loads(Path(f"{archived}.manifest.json").read_text())
    import hashlib

    m["sha256"] = hashlib.sha256(data.encode()).hexdigest()
    Path(f"{archived}.manifest.json").write_text(json.dumps(m))
    code, out = _cli("audit", "verify", "--archive", str(archived))
    assert code == 1 and "not the manifest its anchor signed" in out


def test_the_key_file_is_created_0600_in_ews_home(
    ews_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ews.db import open_app_database
    from ews.settings import get_settings

    monkeypatch.delenv("EWS_AUDIT_KEY_FILE")
    get_settings.cache_clear()
    db = open_app_database()
    try:
        key = ews_home / "audit.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        db.audit("a", "admin", "read", "/x")
        assert verify(db).ok
        with db.engine.begin() as c:  # the key is in no table
            for table in ("audit_log", "audit_anchor", "audit_chain_start"):
                rows = c.execute(text(f"SELECT * FROM {table}")).all()
                assert key.read_text().strip() not in json.dumps([list(map(str, r)) for r in rows])
    finally:
        db.dispose()
    # another key cannot verify the chain, and says so; no key at all is exit 2
    other = ews_home / "other.key"
    load_key(other, create=True)
    monkeypatch.setenv("EWS_AUDIT_KEY_FILE", str(other))
    get_settings.cache_clear()
    code, out = _cli("audit", "verify")
    assert code == 1 and "is not the key this chain was keyed with" in out
    monkeypatch.setenv("EWS_AUDIT_KEY_FILE", str(ews_home / "missing.key"))
    get_settings.cache_clear()
    code, out = _cli("audit", "verify")
    assert code == 2 and "no audit key at" in out and "Traceback" not in out
    get_settings.cache_clear()


def test_a_legacy_chain_switches_to_hmac_at_a_signed_entry(db_url: str) -> None:
    """A database of revision 0004 (plain SHA-256 chain) is keyed by the upgrade: its old
    entries keep their hashes, new ones carry MACs, and rewriting the whole legacy part with
    recomputed SHA-256 hashes (what the owner could do) is caught at the switch."""
    from alembic import command
    from alembic.config import Config

    from ews.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", db_url)
    command.upgrade(cfg, "0004")
    engine = create_engine(db_url)
    prev = "0" * 64
    with engine.begin() as c:
        for i in range(1, 4):
            at = dt.datetime(2024, 1, 1, 8, i)
            e: dict[str, object] = {
                "id": i,
                "at": at,
                "actor": "sgt",
                "role": "supervisor",
                "action": "read",
                "resource": f"/x/{i}",
                "agency": "demo",
                "officer_id": str(i),
                "detail": {},
            }
            h = entry_hash(prev, {**e, "at": at.isoformat(timespec="microseconds")})
            c.execute(
                text(
                    "INSERT INTO audit_log (id, at, actor, role, action, resource, agency, "
                    "officer_id, detail, prev_hash, entry_hash) VALUES (:id, :at, :actor, "
                    ":role, :action, :resource, :agency, :officer_id, '{}', :p, :h)"
                ),
                {**e, "p": prev, "h": h},
            )
            prev = h
    engine.dispose()
    db = AppDatabase(db_url)  # upgrades: the chain is keyed from entry 4
    try:
        db.audit("sgt", "supervisor", "read", "/x/4", "demo")
        v = verify(db)
        assert v.ok and v.entries == 4 and v.keyed_from == 4
        assert _row(db, 4)["entry_hash"] != entry_hash(prev, {})  # a MAC, not a hash
        # the owner rewrites entry 2 and recomputes the legacy chain and entry 4's link
        _disable_guards(db)
        with db.engine.begin() as c:
            if db.sqlite:
                c.execute(text("DROP TRIGGER audit_log_no_update"))
            p = "0" * 64
            for i in range(1, 4):
                r = _row(db, i) if i != 2 else {**_row(db, 2), "actor": "nobody"}
                at = (
                    r["at"]
                    if isinstance(r["at"], dt.datetime)
                    else dt.datetime.fromisoformat(str(r["at"]))
                )
                h = entry_hash(p, content(type("E", (), {**r, "at": at, "detail": {}})))
                c.execute(
                    text(
                        "UPDATE audit_log SET actor = :a, prev_hash = :p, entry_hash = :h "
                        "WHERE id = :i"
                    ),
                    {"a": r["actor"], "p": p, "h": h, "i": i},
                )
                p = h
            c.execute(text("UPDATE audit_log SET prev_hash = :p WHERE id = 4"), {"p": p})
        v = verify(db)
        assert not v.ok and v.first_bad_id == 4 and "were rewritten" in (v.problem or "")
    finally:
        db.dispose()


# -- PostgreSQL roles --------------------------------------------------------------------


@pytest.fixture
def roles(pg_url: str) -> Iterator[tuple[str, str, str]]:
    """An owner and a service role made by `ews db roles` (run as the superuser), the
    database migrated by the owner with `ews db migrate --service`; the two URLs."""
    from sqlalchemy.engine import make_url

    from ews.db import roles_sql

    tag = uuid.uuid4().hex[:8]
    owner, service = f"ews_owner_{tag}", f"ews_service_{tag}"
    url = make_url(pg_url)
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    code, sql = _cli_env(
        {"EWS_DATABASE_URL": pg_url}, "db", "roles", "--owner", owner, "--service", service
    )
    assert code == 0 and "CREATE ROLE" in sql
    with admin.connect() as c:
        c.exec_driver_sql(sql)
    owner_url = url.set(username=owner).render_as_string(hide_password=False)
    service_url = url.set(username=service).render_as_string(hide_password=False)
    code, out = _cli_env({"EWS_DATABASE_URL": owner_url}, "db", "migrate", "--service", service)
    assert code == 0 and "may read and append to the audit tables" in out, out
    assert roles_sql(str(url.database), owner, service) == sql
    try:
        yield owner_url, service_url, service
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP OWNED BY {owner}, {service} CASCADE")
        admin.dispose()
        base = create_engine(pg_url.rpartition("/")[0] + "/postgres", isolation_level="AUTOCOMMIT")
        with base.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            c.exec_driver_sql(f"DROP ROLE IF EXISTS {owner}")
            c.exec_driver_sql(f"DROP ROLE IF EXISTS {service}")
        base.dispose()


def _cli_env(env: dict[str, str], *args: str) -> tuple[int, str]:
    from ews.settings import get_settings

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(app, list(args))
        return r.exit_code, r.stdout
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


@pytest.mark.postgres
def test_the_service_role_cannot_change_the_audit_tables(roles: tuple[str, str, str]) -> None:
    """The issue: on PostgreSQL the application's role owned the tables, so it could disable
    or drop the triggers. The service role now can only read and append."""
    owner_url, service_url, _ = roles
    db = AppDatabase(service_url)  # the service works with it: no migration needed
    try:
        _fill(db)
        assert verify(db).ok and verify(db).entries == 5
        attempts = [
            "ALTER TABLE audit_log DISABLE TRIGGER USER",
            "ALTER TABLE audit_log DISABLE TRIGGER ALL",
            "DROP TRIGGER audit_log_append_only ON audit_log",
            "UPDATE audit_log SET actor = 'x' WHERE id = 2",
            "DELETE FROM audit_log WHERE id = 5",
            "TRUNCATE audit_log",
            "UPDATE audit_anchor SET through_id = 0",
            "DELETE FROM audit_anchor",
            "TRUNCATE audit_anchor",
            "DELETE FROM audit_chain_start",
            "DROP TABLE audit_log",
        ]
        for statement in attempts:
            with pytest.raises(DBAPIError) as e, db.engine.begin() as c:
                c.execute(text(statement))
            assert "permission denied" in str(e.value) or "must be owner" in str(e.value), statement
        assert verify(db).ok and verify(db).entries == 5
        # the service still writes the application's own tables, with their audit entries
        from api.security import create_user, rotate_token

        create_user(db, "sgt.lee", "supervisor", "demo", ["12"])
        rotate_token(db, "sgt.lee")
        assert verify(db).ok and verify(db).entries == 7
    finally:
        db.dispose()
