"""CLI commands of this package (registered by ews.cli)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this package's commands to the ``ews`` app."""
