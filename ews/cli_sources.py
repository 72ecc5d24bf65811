"""Commands that produce agency data packages: convert (adapters) and synth."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the source commands to the ``ews`` app."""
