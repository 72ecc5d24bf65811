"""Dependencies shared by the routers: settings, the application database, who asks, and the
input types with the limits of the columns they end in."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Path, Query, Request, status
from pydantic import AfterValidator, StringConstraints

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


def authenticate(db: AppDatabase, request: Request, token: str | None, why: str) -> User:
    """The user of ``token``. Every failed sign-in (no token, another scheme, a malformed,
    unknown, expired or disabled token: ``why``) gets the same 401 and the same audit entry;
    a client with too many failures in a minute gets 429 until the minute has passed."""
    limiter: FailureLimiter = request.app.state.limiter
    client = client_of(request)
    wait = limiter.retry_after(client)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many failed sign-ins from this client; try again later",
            headers={"Retry-After": str(wait)},
        )
    user = None
    if token:
        user, why = user_for_token(db, token)
    if user is None:
        limiter.fail(client)
        db.audit(
            "anonymous",
            "none",
            "sign_in_failed",
            request.url.path[:500],
            detail={"why": why, "client": client},
        )
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"}
        )
    return user


def current_user(db: DbDep, request: Request) -> User:
    """The user of the request's 'Authorization: Bearer <token>' header."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return authenticate(db, request, None, "no Authorization header")
    if scheme.lower() != "bearer" or not token.strip():
        return authenticate(db, request, None, "malformed Authorization header")
    return authenticate(db, request, token.strip(), "")


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
