"""Dependencies shared by the routers: settings, the application database, who asks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.access import deny
from api.security import user_for_token
from ews.db import AppDatabase, User
from ews.settings import Settings

bearer = HTTPBearer(auto_error=False, description="The token printed by `ews users add`.")


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> AppDatabase:
    db: AppDatabase = request.app.state.db
    return db


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DbDep = Annotated[AppDatabase, Depends(get_db)]


def current_user(
    db: DbDep,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    if credentials is None or not credentials.credentials:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "sign in: send the header 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    user = user_for_token(db, credentials.credentials)
    if user is None:
        db.audit("anonymous", "none", "denied", request.url.path, detail={"why": "bad token"})
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "unknown or inactive token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


CurrentUser = Annotated[User, Depends(current_user)]


def require_roles(*roles: str) -> Any:
    """A dependency that lets only the given roles through (and logs every refusal)."""

    def check(user: CurrentUser, db: DbDep, request: Request) -> User:
        if user.role not in roles:
            needs = ", ".join(roles)
            raise deny(
                db,
                user,
                request.url.path,
                f"this needs one of the roles: {needs}",
                agency=user.agency,
            )
        return user

    return Depends(check)
