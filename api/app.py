"""The FastAPI application: flags with explanations for supervisors, the audit for reviewers.

Run it with ``ews serve`` (uvicorn on 127.0.0.1:8000 by default). Every endpoint checks who
asks (a bearer token from ``ews users add``) and what they may see; every read and write of an
officer's record goes to the audit log of the application database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from api.routes import audit, flags, officers
from ews import __version__
from ews.db import AppDatabase
from ews.settings import Settings, get_settings

WEB = Path(__file__).with_name("web")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = AppDatabase(settings.app_database_url)
        yield
        app.state.db.dispose()

    app = FastAPI(
        title="ews: early-intervention system",
        version=__version__,
        description="Flags of officers who may need support, with the reasons in plain words. "
        "A flag is an invitation to support an officer, never a finding against one.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    for module in (flags, officers, audit):
        app.include_router(module.router)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return (WEB / "index.html").read_text(encoding="utf-8")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
