"""CLI commands of the service: `ews serve`, `ews users`, `ews audit verify|head|archive` and
`ews db migrate|roles`."""

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
UNIT_HELP = "A unit a supervisor or commander oversees (repeat)."
UNITS_FROM_HELP = (
    "KIND=VALUE, e.g. district=D7: the current units of the officers who hold that "
    "assignment in the data (at the newest scored date)."
)
EXPIRES_HELP = "Token lifetime: 90d, 12h, 4w (default: no expiry)."


@contextmanager
def _database() -> Iterator[AppDatabase]:
    """The workspace's application database; a user error ends the command with exit 2."""
    from api.security import UserError
    from ews.audit import AuditKeyError
    from ews.db import MigrationNeeded, PoolTooSmall, open_app_database

    try:
        db = open_app_database()
    except (AuditKeyError, MigrationNeeded, PoolTooSmall) as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from e
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
    role: str = typer.Option(..., help="supervisor, commander, reviewer, data_scientist or admin."),
    agency: str | None = typer.Option(
        None, help="Limit the user to one agency (one the workspace holds, once it holds any)."
    ),
    unit: list[str] | None = typer.Option(None, help=UNIT_HELP),
    expires: str | None = typer.Option(None, help=EXPIRES_HELP),
    email: str | None = typer.Option(None, help="Where `ews notify` writes to."),
    units_from: str | None = typer.Option(None, help=UNITS_FROM_HELP),
) -> None:
    """Create a user and print their token (shown once; only its hash is stored). A commander
    oversees the units given (none: the whole agency) and receives escalations."""
    from api.security import create_user
    from ews.cli_style import check_agency
    from ews.store import Workspace

    if Workspace().agencies():  # users may be set up before the first ingest
        check_agency(agency)
    with _database() as db:
        units = list(unit or [])
        if units_from:
            units += _units_from(db, agency, units_from)
        token = create_user(db, username, role, agency, units, expires=expires, email=email)
    typer.echo(token)


def _units_from(db: AppDatabase, agency: str | None, spec: str) -> list[str]:
    """The units of an assignment kind in the data (``district=D7``), or exit 2."""
    from ews.notify import NotifyError, units_from_assignment

    if not agency:
        typer.secho("error: --units-from needs a user of one agency", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    try:
        units, day = units_from_assignment(db, agency, spec)
    except NotifyError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from e
    typer.echo(f"{spec} on {day}: units {', '.join(units)}", err=True)
    return units


@users.command("update")
def users_update(
    username: str = typer.Argument(..., help="The user."),
    email: str | None = typer.Option(None, help="A new e-mail address."),
    no_email: bool = typer.Option(False, "--no-email", help="Remove the e-mail address."),
    unit: list[str] | None = typer.Option(None, help=UNIT_HELP + " Replaces the list."),
    units_from: str | None = typer.Option(None, help=UNITS_FROM_HELP + " Replaces the list."),
) -> None:
    """Change a user's e-mail address or units (an audit entry records the change)."""
    from api.security import list_users
    from ews.notify import NotifyError, update_user

    with _database() as db:
        try:
            units = list(unit or [])
            if units_from:
                agency = next((u.agency for u in list_users(db) if u.username == username), None)
                units += _units_from(db, agency, units_from)
            changes = update_user(
                db, username, email, units or None, clear_email=no_email, units_from=units_from
            )
        except NotifyError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from e
    typer.echo(f"{username}: updated {', '.join(sorted(changes))}")


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
        scope += f" email={u.email}" * bool(u.email)
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
    archive: list[Path] | None = typer.Option(
        None,
        "--archive",
        help="Also check an archive file written by `ews audit archive` (repeat).",
    ),
    expect: str | None = typer.Option(
        None,
        "--expect",
        metavar="HEAD",
        help="A head printed by `ews audit head` earlier (ID:MAC): fail unless the log "
        "still holds it, so deleting the newest entries is caught.",
    ),
) -> None:
    """Check the audit log with the audit key (EWS_AUDIT_KEY_FILE): the signed start of the
    keyed chain, every archive anchor's signature, then every entry's MAC (or, before the
    chain was keyed, its SHA-256). Exit 1 and name the first entry that was altered, deleted
    or inserted, or the anchor that was forged; exit 2 for a missing key or a bad HEAD."""
    from ews.audit import AuditKeyError, HeadError, parse_head, verify, verify_archive

    if expect is not None:
        try:
            parse_head(expect)
        except HeadError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from e
    for path in archive or []:
        if not Path(f"{path}.manifest.json").is_file() or not path.is_file():
            typer.secho(
                f"error: {path}: no such archive with a manifest beside it",
                fg=typer.colors.RED,
                err=True,
            )
            raise typer.Exit(2)
    with _database() as db:
        try:
            result = verify(db, expect=expect)
            checked = [(path, verify_archive(path, db)) for path in archive or []]
        except AuditKeyError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from e
    typer.echo(result.summary())
    ok = result.ok
    for path, one in checked:
        typer.echo(f"archive {path.name}: {one.summary()}")
        ok = ok and one.ok
    if expect is not None and result.ok:
        typer.echo(f"the log still holds the expected head {expect.strip()}")
    if not ok:
        raise typer.Exit(1)


def audit_head() -> None:
    """Print the head of the audit log (entries ever written and the newest entry's MAC, as
    ID:MAC) after verifying the chain. Keep it outside the database (a ticket, a signed mail)
    and check it later with `ews audit verify --expect ID:MAC`."""
    from ews.audit import AuditKeyError, verify

    with _database() as db:
        try:
            result = verify(db)
        except AuditKeyError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from e
    if not result.ok:
        typer.secho(result.summary(), fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.echo(result.head)


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


db_app = typer.Typer(
    help="The application database: schema migrations and PostgreSQL roles.",
    no_args_is_help=True,
)


@db_app.command("migrate")
def db_migrate(
    service: str | None = typer.Option(
        None,
        "--service",
        help="PostgreSQL: the service's role, granted the tables after the migration "
        "(only SELECT and INSERT on the audit tables).",
    ),
) -> None:
    """Bring the database (EWS_DATABASE_URL) to the newest schema. On PostgreSQL run it as
    the owner role (`ews db roles`), with --service naming the role `ews serve` uses."""
    from ews.db import grant_service, migrate
    from ews.settings import get_settings

    settings = get_settings()
    url = settings.app_database_url
    if service is not None and url.startswith("sqlite"):
        typer.secho("error: --service is for PostgreSQL", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)
    migrate(url, settings.audit_key_path)
    if service is not None:
        try:
            grant_service(url, service)
        except ValueError as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from e
    typer.echo(
        "database at the newest schema"
        + (
            f"; {service} may read and append to the audit tables, not change them"
            if service
            else ""
        )
    )


@db_app.command("roles")
def db_roles(
    owner: str = typer.Option("ews_owner", help="The role that owns the tables and migrates."),
    service: str = typer.Option("ews_service", help="The role `ews serve` connects as."),
    database: str | None = typer.Option(
        None, help="The database (default: the one of EWS_DATABASE_URL)."
    ),
) -> None:
    """Print the SQL that creates the PostgreSQL owner and service roles (run it once as a
    superuser: `ews db roles | psql ...`), then migrate as the owner with
    `ews db migrate --service SERVICE` and serve as the service role."""
    from sqlalchemy.engine import make_url

    from ews.db import roles_sql
    from ews.settings import get_settings

    url = get_settings().database_url
    name = database or (make_url(url).database if url and url.startswith("postgres") else None)
    if not name:
        typer.secho(
            "error: name the database (--database) or set EWS_DATABASE_URL to PostgreSQL",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2)
    try:
        typer.echo(roles_sql(name, owner, service), nl=False)
    except ValueError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from e


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

    Says "serving" once the port is bound; a busy port is an error (exit 1). On PostgreSQL
    each worker's connection pools are sized so that the workers fit the server's
    max_connections; when they cannot, exit 2 naming the figures."""
    import os

    from ews.db import PoolTooSmall, pg_pools
    from ews.settings import get_settings

    os.environ["EWS_WORKERS"] = str(workers)  # each worker sizes its pools by it
    get_settings.cache_clear()
    settings = get_settings()
    url = settings.app_database_url
    if not url.startswith("sqlite"):
        try:
            pools = pg_pools(url, workers, settings.db_pool)
        except PoolTooSmall as e:
            typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(2) from e
        typer.echo(f"PostgreSQL: {workers} worker(s) x {pools['total']} connections")
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
    audit_app.command("head")(audit_head)
    app.add_typer(db_app, name="db")
    audit_app.command("archive")(audit_archive)
