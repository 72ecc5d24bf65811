"""`ews users` and `ews audit verify|archive` as an administrator runs them."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from api.security import user_for_token
from ews.cli import app
from ews.db import open_app_database


def _run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def test_users_lifecycle(ews_home: Path) -> None:
    code, token = _run(
        "users",
        "add",
        "sgt.lee",
        "--role",
        "supervisor",
        "--agency",
        "demo",
        "--unit",
        "12",
        "--expires",
        "90d",
    )
    assert code == 0
    token = token.strip()
    db = open_app_database()
    try:
        assert user_for_token(db, token)[0] is not None
        code, out = _run("users", "list")
        assert code == 0 and "sgt.lee\tsupervisor\tagency=demo units=12\tactive, expires" in out
        assert _run("users", "disable", "sgt.lee") == (0, "sgt.lee: disabled\n")
        assert user_for_token(db, token) == (None, "user disabled")
        assert _run("users", "enable", "sgt.lee")[0] == 0
        assert user_for_token(db, token)[0] is not None
        code, new = _run("users", "rotate", "sgt.lee")
        assert code == 0 and user_for_token(db, token)[1] == "unknown token"
        assert user_for_token(db, new.strip())[0] is not None
        assert _run("users", "revoke", "sgt.lee")[0] == 0
        assert user_for_token(db, new.strip())[1] == "unknown token"
        assert "revoked" in _run("users", "list")[1]
        # bad input: exit 2 with a sentence, no traceback
        for args in (
            ("users", "add", "x", "--role", "chief"),
            ("users", "add", "y", "--role", "reviewer", "--expires", "soon"),
            ("users", "revoke", "nobody"),
        ):
            code, out = _run(*args)
            assert code == 2 and out.startswith("error: ") and "Traceback" not in out, args
        # every administrative change is in the audit chain, and the chain holds
        actions = [e.resource for e in db.audit_entries() if e.action == "admin"]
        assert actions == [
            "ews users add sgt.lee",
            "ews users disable sgt.lee",
            "ews users enable sgt.lee",
            "ews users rotate sgt.lee",
            "ews users revoke sgt.lee",
        ]
    finally:
        db.dispose()
    code, out = _run("audit", "verify")
    assert code == 0 and "intact: 5 entries" in out


def test_audit_archive_command(ews_home: Path) -> None:
    _run("users", "add", "auditor", "--role", "reviewer")
    code, out = _run("audit", "archive", "--before", "2999-01-01")
    assert code == 0 and "archived 1 entries" in out
    archive = next((ews_home / "audit-archive").glob("*.jsonl"))
    code, out = _run("audit", "verify", "--archive", str(archive))
    assert code == 0 and "archive" in out and "intact" in out
    assert _run("audit", "archive", "--before", "1/1/2020")[0] == 2
    assert _run("audit", "archive", "--before", "2000-01-01")[0] == 1
