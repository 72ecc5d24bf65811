"""CLI commands of the service: `ews serve` and `ews users`."""

from __future__ import annotations

import typer

users = typer.Typer(
    help="Manage who may use the service (roles and unit scopes).", no_args_is_help=True
)


@users.command("add")
def users_add(
    username: str = typer.Argument(..., help="A unique user name."),
    role: str = typer.Option(..., help="supervisor, reviewer, data_scientist or admin."),
    agency: str | None = typer.Option(None, help="Limit the user to one agency."),
    unit: list[str] | None = typer.Option(None, help="A unit a supervisor oversees (repeat)."),
) -> None:
    """Create a user and print their token (shown once; only its hash is stored)."""
    from api.security import UserError, create_user
    from ews.db import open_app_database

    db = open_app_database()
    try:
        token = create_user(db, username, role, agency, unit or [])
    except UserError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    finally:
        db.dispose()
    typer.echo(token)


@users.command("list")
def users_list() -> None:
    """List users with their roles and scopes."""
    from api.security import list_users
    from ews.db import open_app_database

    db = open_app_database()
    try:
        for u in list_users(db):
            scope = f"agency={u.agency or '*'} units={','.join(u.units) or '*'}"
            typer.echo(f"{u.username}\t{u.role}\t{scope}\t{'active' if u.active else 'inactive'}")
    finally:
        db.dispose()


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
) -> None:
    """Serve the API and the supervisors' web page (http://HOST:PORT/)."""
    import uvicorn

    from api.app import create_app

    typer.echo(f"ews serving on http://{host}:{port}/  (API docs at /docs; Ctrl-C stops)")
    uvicorn.run(create_app(), host=host, port=port, log_level="info")


def register(app: typer.Typer) -> None:
    """Add the service commands to the ``ews`` app."""
    app.command("serve")(serve)
    app.add_typer(users, name="users")
