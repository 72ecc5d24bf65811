"""Two ASGI middlewares around the whole application.

:class:`SecurityHeaders` puts on every response a strict Content-Security-Policy (no inline
script anywhere; the API documentation's two inline scripts are allowed by their SHA-256
only), ``frame-ancestors 'none'`` with ``X-Frame-Options: DENY``, ``X-Content-Type-Options:
nosniff``, ``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store`` (everything but
the static files: pages and JSON hold officers' records). A response that brings its own
policy (a served report) keeps it, with ``frame-ancestors 'none'`` added.

:class:`RefusalAudit` writes the refusals no handler logged (see :mod:`api.refusals`).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from anyio import to_thread
from starlette.responses import JSONResponse

from api.refusals import REFUSAL_STATUSES, RefusalLog, begin_request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
# Swagger UI (fastapi-offline, served from /static-docs): its own script and styles, the
# inline start-up script by hash, inline style attributes and data: icons of its own.
DOCS_CSP = (
    "default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# A served report: its own inline styles and data: images, the site's header stylesheet and
# sign-out form around it; no script at all.
REPORT_CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
COMMON = {
    b"x-frame-options": b"DENY",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
}
STATIC_PREFIXES = ("/static/", "/static-docs/")
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.S)


def _script_hashes(body: bytes) -> str:
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m).digest()).decode() + "'"
        for m in _INLINE_SCRIPT.findall(body)
    )


def _headers(raw: list[tuple[bytes, bytes]], path: str, csp: str) -> list[tuple[bytes, bytes]]:
    have = {k.lower(): v for k, v in raw}
    out = [(k, v) for k, v in raw if k.lower() not in COMMON and k.lower() != b"cache-control"]
    own = have.get(b"content-security-policy")
    if own is not None:
        if b"frame-ancestors" not in own:
            out = [(k, v) for k, v in out if k.lower() != b"content-security-policy"]
            out.append((b"content-security-policy", own + b"; frame-ancestors 'none'"))
    else:
        out.append((b"content-security-policy", csp.encode()))
    out.extend(COMMON.items())
    if path.startswith(STATIC_PREFIXES) and b"cache-control" in have:
        out.append((b"cache-control", have[b"cache-control"]))
    elif not path.startswith(STATIC_PREFIXES):
        out.append((b"cache-control", b"no-store"))
    return out


class SecurityHeaders:
    def __init__(self, app: Any, docs_paths: tuple[str, ...] = ("/docs",)) -> None:
        self.app, self.docs_paths = app, docs_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path.startswith(self.docs_paths):
            await self._docs(scope, receive, send, path)
            return

        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = _headers(list(message.get("headers") or []), path, CSP)
            await send(message)

        try:
            await self.app(scope, receive, send=sending)
        except Exception:
            if not started:  # the 500 of an unexpected error carries the headers too
                error = JSONResponse({"detail": "internal error"}, status_code=500)
                await error(scope, receive, sending)
            raise

    async def _docs(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        """The documentation pages are small: hold the body to hash its inline scripts."""
        start: Message | None = None
        body: list[bytes] = []

        async def holding(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] == "http.response.body":
                body.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                assert start is not None
                whole = b"".join(body)
                csp = DOCS_CSP.format(hashes=_script_hashes(whole))
                raw = [(k, v) for k, v in start.get("headers") or [] if k != b"content-length"]
                raw.append((b"content-length", str(len(whole)).encode()))
                start["headers"] = _headers(raw, path, csp)
                await send(start)
                await send({"type": "http.response.body", "body": whole, "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, send=holding)


class RefusalAudit:
    """Writes one audit entry (through the app's :class:`RefusalLog`) for a refusal that no
    handler logged, before the refusal is sent."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        box = begin_request()

        async def sending(message: Message) -> None:
            if (
                message["type"] == "http.response.start"
                and message["status"] in REFUSAL_STATUSES
                and not box["logged"]
            ):
                box["logged"] = True
                await to_thread.run_sync(self._write, scope, message["status"], box["user"])
            await send(message)

        await self.app(scope, receive, send=sending)

    @staticmethod
    def _write(scope: Scope, status: int, user: Any) -> None:
        state = scope["app"].state
        refusals: RefusalLog = state.refusals
        client = scope.get("client")
        refusals.refusal(
            state.db,
            client[0] if client else "unknown",
            user.username if user is not None else "anonymous",
            user.role if user is not None else "none",
            "refused",
            scope.get("path", ""),
            status,
            agency=user.agency if user is not None else None,
            detail={"method": scope.get("method")},
        )
