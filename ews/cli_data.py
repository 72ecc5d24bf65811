"""Data commands: validate, ingest, convert, synth, status."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the data commands to the ``ews`` app."""
