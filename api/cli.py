"""CLI commands of the service: `ews serve`, `ews users`, and `ews audit verify|archive`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from ews.cli_style import parse_date

if TYPE_CHECKING:
    from ews.db import AppDatabase

users = typer.Typer(
    help="Manage who may use the service: roles, scopes, tokens (shown once), expiry.",
    no_args_is_help=True,
)
EXPIRES_HELP = "Token lifetime: 90d, 12h, 4w (default: no expiry)."


@contextmanager
def _database() -> Iterator[AppDatabase]:
    """The workspace's application database; a user error ends the command with exit 2."""
    from api.security import UserError
    from ews.db import open_app_database

    db = open_app_database()
    try:
        yield db
    except UserError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from e
    finally:
        db.dispose()


@users.command("add")
def users_add(
    username: str = typer.Argument(..., help="A unique user name."),
    role: str = typer.Option(..., help="supervisor, reviewer, data_scientist or admin."),
    agency: str | None = typer.Option(None, help="Limit the user to one agency."),
    unit: list[str] | None = typer.Option(None, help="A unit a supervisor oversees (repeat)."),
    expires: str | None = typer.Option(None, help=EXPIRES_HELP),
) -> None:
    """Create a user and print their token (shown once; only its hash is stored)."""
    from api.security import create_user

    with _database() as db:
        token = create_user(db, username, role, agency, unit or [], expires=expires)
    typer.echo(token)


@users.command("list")
def users_list() -> None:
    """List users with their roles, scopes, state and token expiry."""
    from api.security import list_users
    from ews.db import utcnow

    with _database() as db:
        rows = list_users(db)
    now = utcnow()
    for u in rows:
        scope = f"agency={u.agency or '*'} units={','.join(u.units) or '*'}"
        state = "active" if u.active else "disabled"
        if u.revoked_at is not None:
            state = f"revoked {u.revoked_at:%Y-%m-%d}"
        elif u.expires_at is not None:
            ends = "expired" if u.expires_at <= now else "expires"
            state += f", {ends} {u.expires_at:%Y-%m-%d %H:%M}"
        typer.echo(f"{u.username}\t{u.role}\t{scope}\t{state}")


def _user_change(name: str, doc: str, change: Callable[[AppDatabase, str], None]) -> None:
    def command(username: str = typer.Argument(..., help="The user.")) -> None:
        with _database() as db:
            change(db, username)
        typer.echo(f"{username}: {name}d")

    command.__doc__ = doc
    users.command(name)(command)


def _revoke(db: AppDatabase, username: str) -> None:
    from api.security import revoke_token

    revoke_token(db, username)


def _disable(db: AppDatabase, username: str) -> None:
    from api.security import set_active

    set_active(db, username, False)


def _enable(db: AppDatabase, username: str) -> None:
    from api.security import set_active

    set_active(db, username, True)


_user_change(
    "revoke",
    "Revoke the user's token for good (`rotate` issues a new one); their page sessions end.",
    _revoke,
)
_user_change(
    "disable",
    "Disable the user: their token stops working until `enable`; their page sessions end.",
    _disable,
)
_user_change("enable", "Enable a disabled user again.", _enable)


@users.command("rotate")
def users_rotate(
    username: str = typer.Argument(..., help="The user."),
    expires: str | None = typer.Option(
        None, help="A new token lifetime: 90d, 12h, 4w or never (default: keep the expiry)."
    ),
) -> None:
    """Issue a new token for the user and print it (the old one and the user's page sessions
    stop working at once; the user keeps their expiry unless --expires gives a new one)."""
    from api.security import rotate_token

    with _database() as db:
        token = rotate_token(db, username, expires=expires)
    typer.echo(token)


def audit_verify(
    archive: Path | None = typer.Option(
        None, "--archive", help="Also check an archive file written by `ews audit archive`."
    ),
) -> None:
    """Walk the hash chain of the audit log and say whether it is intact. Exit 1 and name the
    first entry that was altered, deleted or inserted otherwise."""
    from ews.audit import verify, verify_archive

    with _database() as db:
        result = verify(db)
    typer.echo(result.summary())
    ok = result.ok
    if archive is not None:
        if not Path(f"{archive}.manifest.json").is_file():
            typer.secho(f"error: {archive}: no manifest beside it", fg=typer.colors.RED, err=True)
            raise typer.Exit(2)
        checked = verify_archive(archive)
        typer.echo(f"archive {archive.name}: {checked.summary()}")
        ok = ok and checked.ok
    if not ok:
        raise typer.Exit(1)


def audit_archive(
    before: dt.date = typer.Option(
        ...,
        "--before",
        parser=parse_date,
        metavar="DATE",
        help="Archive entries older than this date (YYYY-MM-DD).",
    ),
    out: Path = typer.Option(
        None, "--out", help="Folder of the archive (default: EWS_HOME/audit-archive)."
    ),
) -> None:
    """Move audit entries older than a date out of the database into a JSON-lines file with a
    SHA-256 manifest; the chain that stays verifies from the archive's last hash."""
    from ews.audit import ArchiveError, archive
    from ews.db import current_actor
    from ews.settings import get_settings

    day = before
    folder = out or get_settings().home / "audit-archive"
    with _database() as db:
        try:
            manifest = archive(db, day, folder, actor=f"cli:{current_actor()}")
        except ArchiveError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1) from e
    typer.echo(
        f"archived {manifest['entries']} entries (through entry {manifest['through_id']}) "
        f"to {folder / manifest['file']} (sha256 {manifest['sha256']})"
    )


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    workers: int = typer.Option(1, min=1, help="Worker processes (they share the database)."),
    forwarded_allow_ips: str = typer.Option(
        "",
        "--forwarded-allow-ips",
        envvar="EWS_FORWARDED_ALLOW_IPS",
        help="Proxies whose X-Forwarded-For/-Proto are believed (comma-separated addresses "
        "or networks). Default: none; the address the server sees is the client's.",
    ),
) -> None:
    """Serve the API and the pages (http://HOST:PORT/; API documentation at /docs).

    Says "serving" once the port is bound; a busy port is an error (exit 1)."""
    from api.server import uvicorn_options

    serve_or_exit(host=host, port=port, workers=workers, **uvicorn_options(forwarded_allow_ips))


def serve_or_exit(**options: Any) -> None:
    """Run :func:`api.server.run_server`; a :class:`~api.server.ServeError` ends the command
    with its message and exit 1 (``ews serve`` and ``ews demo`` share this)."""
    from api.server import ServeError, run_server

    try:
        run_server(announce=typer.echo, **options)
    except ServeError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from e


def register(app: typer.Typer) -> None:
    """Add the service commands to the ``ews`` app."""
    from models.cli import audit_app

    app.command("serve")(serve)
    app.add_typer(users, name="users")
    audit_app.command("verify")(audit_verify)
    audit_app.command("archive")(audit_archive)
