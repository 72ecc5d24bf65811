"""The FastAPI application: flags with explanations for supervisors, the audit for reviewers.

Run it with ``ews serve`` (uvicorn on 127.0.0.1:8000 by default). Every endpoint checks who
asks (a bearer token from ``ews users add``) and what they may see (:mod:`api.scope`); every
read and write of an officer's record, and every refusal, is an entry of the hash-chained
audit log of the application database. The API documentation at ``/docs`` is served by the
app itself (no CDN), so it works offline.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import pages, pages_drift, pages_report
from api.hardening import RefusalAudit, SecurityHeaders
from api.refusals import RefusalLog
from api.routes import audit, drift, flags, officers
from api.routes.audit import RebuildGate
from api.routes.flags import RunCache, freeze_long_lived, warm_run_cache
from api.security import FailureLimiter, TokenCache
from ews import __version__
from ews.db import open_app_database
from ews.settings import Settings, get_settings

STATIC = Path(__file__).with_name("static")
MAX_BODY = 1024 * 1024  # bytes
OFFICER_CACHE = 5000  # officers' records kept by the officer page (api.routes.officers)
log = logging.getLogger("ews.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ErrorBody(BaseModel):
    """Every error of the service has this shape; ``detail`` is a sentence, or for invalid
    input (422) a list of the fields at fault."""

    detail: str | list[dict[str, Any]]


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Not signed in, or the token does not work."},
    403: {"model": ErrorBody, "description": "Your role may not do this."},
    404: {"model": ErrorBody, "description": "Not found, or outside your scope (the same)."},
    409: {"model": ErrorBody, "description": "Not allowed in the record's current state."},
    413: {"model": ErrorBody, "description": "The request body is over 1 MiB."},
    422: {"model": ErrorBody, "description": "Invalid input."},
    429: {
        "model": ErrorBody,
        "description": "Too many failed sign-ins from this client, or a rebuild asked too soon.",
    },
}


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, by Content-Length or, for a
    streamed body, as soon as more has arrived."""

    def __init__(self, app: Any, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.limit:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"detail": "the request body is over 1 MiB"}, status_code=413)
        await response(scope, receive, send)


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Validation errors without the offending input (it may be what cannot be encoded)."""
    return [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": e.get("type")}
        for e in exc.errors()
    ]


def create_app(settings: Settings | None = None) -> FastAPI:
    from fastapi_offline import FastAPIOffline

    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = open_app_database(settings)  # pools sized by settings.workers
        # each agency's newest flags prepared before the first request (not by it)
        await run_in_threadpool(
            warm_run_cache, app.state.db, app.state.run_cache, settings.review_days
        )
        freeze_long_lived()  # the modules and the app: never garbage (see there)
        yield
        app.state.refusals.flush(app.state.db)
        await app.state.db.aclose()
        app.state.db.dispose()

    app = FastAPIOffline(
        title="ews: early-intervention system",
        version=__version__,
        description="Flags of officers who may need support, with the reasons in plain words. "
        "A flag is an invitation to support an officer, never a finding against one. "
        "Sign in with 'Authorization: Bearer <token>' (a token from `ews users add`).",
        lifespan=lifespan,
        redoc_url=None,
        static_url="/static-docs",
    )
    app.state.settings = settings
    app.state.limiter = FailureLimiter()
    app.state.token_cache = TokenCache(settings.token_cache_seconds)
    app.state.refusals = RefusalLog()
    app.state.rebuilds = RebuildGate()
    app.state.run_cache = RunCache()
    app.state.officer_cache = RunCache(OFFICER_CACHE)
    for module in (flags, officers, audit, drift):
        app.include_router(module.router, responses=ERRORS)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = _field_errors(exc)
        if not request.url.path.startswith("/api"):
            text = "; ".join(f"{'.'.join(e['loc'][1:])}: {e['msg']}" for e in errors)
            return pages.error_page(request, 422, text)
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not request.url.path.startswith("/api") and exc.status_code != 405:
            return pages.error_page(request, exc.status_code, str(exc.detail))
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(pages.SignInRequired)
    async def sign_in(_: Request, __: Exception) -> Response:
        response = RedirectResponse("/signin", status_code=303)
        response.delete_cookie(pages.COOKIE, httponly=True, samesite="strict")
        return response

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    app.add_middleware(BodyLimit)
    app.add_middleware(RefusalAudit)
    app.add_middleware(SecurityHeaders)

    app.include_router(pages.router)
    app.include_router(pages_report.router)
    app.include_router(pages_drift.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    return app
