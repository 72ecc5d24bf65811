"""Dependencies shared by the routers: settings, the application database, who asks, and the
input types with the limits of the columns they end in."""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from pydantic import AfterValidator, StringConstraints

from api.refusals import mark_logged, note_user
from api.scope import forbidden
from api.security import FailureLimiter, user_for_token
from ews.db import AGENCY_LEN, NAME_LEN, AppDatabase, User
from ews.settings import Settings

UNAUTHORIZED = "sign in: send the header 'Authorization: Bearer <token>' with a valid token"


# Plain attribute reads: async, so FastAPI does not send them to its thread pool.
async def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_db(request: Request) -> AppDatabase:
    db: AppDatabase = request.app.state.db
    return db


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DbDep = Annotated[AppDatabase, Depends(get_db)]


def clean_text(value: str) -> str:
    """Refuse what no column should hold: NUL and other control characters (tab and line
    breaks aside) and lone surrogates (not UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError("text must be valid Unicode (no lone surrogates)") from e
    if any(ord(c) < 32 and c not in "\t\n\r" or ord(c) == 127 for c in value):
        raise ValueError("text must not contain control characters")
    return value


def Text(max_length: int, min_length: int = 0) -> Any:  # noqa: N802 (a type factory)
    """A string field with a length limit and :func:`clean_text`."""
    return Annotated[
        str,
        StringConstraints(min_length=min_length, max_length=max_length),
        AfterValidator(clean_text),
    ]


AGENCY_PATTERN = r"^[a-z][a-z0-9_]*$"
AgencyPath = Annotated[
    str, Path(min_length=1, max_length=AGENCY_LEN, pattern=AGENCY_PATTERN, description="Agency.")
]
AgencyQuery = Annotated[
    str, Query(min_length=1, max_length=AGENCY_LEN, pattern=AGENCY_PATTERN, description="Agency.")
]
OfficerPath = Annotated[
    str,
    Path(min_length=1, max_length=NAME_LEN, description="The officer's id in the agency."),
    AfterValidator(clean_text),
]
NameQuery = Annotated[str, Query(min_length=1, max_length=NAME_LEN), AfterValidator(clean_text)]


def client_of(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _check(
    db: AppDatabase, request: Request, token: str | None, why: str
) -> tuple[User | None, str]:
    """(the user, '') of ``token``, or (None, why not); 429 (logged) when the client's
    address or the token's prefix failed too often and the prefix is no user's."""
    _limit(db, request, token)
    user, why = user_for_token(db, token) if token else (None, why)
    if user is not None:
        request.app.state.limiter.succeed(token or "")
        note_user(user)
    return user, why


def _limit(db: AppDatabase, request: Request, token: str | None) -> None:
    """Raise the logged 429 when the client must wait before ``token`` is looked up."""
    limiter: FailureLimiter = request.app.state.limiter
    wait = limiter.retry_after(client_of(request), token, db)
    if wait:
        refusal(db, request, "refused", 429, why="too many failed sign-ins from this client")
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed sign-ins from this client; try again later",
            headers={"Retry-After": str(wait)},
        )


def refusal(db: AppDatabase, request: Request, action: str, code: int, **detail: Any) -> None:
    """Log a refusal of a client not signed in (repeated ones summarized: api.refusals)."""
    mark_logged(action)
    request.app.state.refusals.refusal(
        db, client_of(request), "anonymous", "none", action, request.url.path, code, detail=detail
    )


def _refuse(db: AppDatabase, request: Request, why: str, token: str | None = None) -> NoReturn:
    """Count and log a failed sign-in and raise the one 401."""
    request.app.state.limiter.fail(client_of(request), token)
    refusal(db, request, "sign_in_failed", 401, why=why)
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"}
    )


def authenticate(db: AppDatabase, request: Request, token: str | None, why: str) -> User:
    """The user of ``token``. Every failed sign-in (no token, another scheme, a malformed,
    unknown, expired or disabled token: ``why``) gets the same 401 and the same audit entry;
    a client with too many failures in a minute gets 429 until the minute has passed."""
    user, why = _check(db, request, token, why)
    if user is None:
        _refuse(db, request, why, token)
    return user


def _bearer(request: Request) -> tuple[str | None, str]:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return None, "no Authorization header"
    if scheme.lower() != "bearer" or not token.strip():
        return None, "malformed Authorization header"
    return token.strip(), ""


async def current_user(request: Request) -> User:
    """The user of the request's 'Authorization: Bearer <token>' header (:func:`authenticate`).
    Async: the token lookup is one indexed read, done in place rather than handed to the
    thread pool, and a token that worked in the last few seconds is not looked up again
    (:class:`api.security.TokenCache`); a failure's audit entry is written from the pool.
    The database is the app's (not a dependency: one fewer to resolve on every request)."""
    db: AppDatabase = request.app.state.db
    token, why = _bearer(request)
    if request.app.state.limiter.retry_after(client_of(request), token):  # memory only
        await run_in_threadpool(_limit, db, request, token)
    cache = request.app.state.token_cache
    user, why = user_for_token(db, token, cache) if token else (None, why)
    if user is not None:
        request.app.state.limiter.succeed(token or "")
        note_user(user)
    if user is None:
        await run_in_threadpool(_refuse, db, request, why, token)
    assert user is not None
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require_roles(*roles: str) -> Any:
    """A dependency that lets only the given roles through (and logs every refusal)."""

    def check(user: CurrentUser, db: DbDep, request: Request) -> User:
        if user.role not in roles:
            forbidden(
                db, user, request.url.path, f"this needs one of the roles: {', '.join(roles)}"
            )
        return user

    return Depends(check)
