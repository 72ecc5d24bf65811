"""Users and their tokens. A token is shown once, at creation; only its SHA-256 is stored
(tokens are 32 random bytes, so a plain hash is as strong as a slow one here)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select

from ews.db import ROLES, AppDatabase, User


class UserError(ValueError):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(
    db: AppDatabase,
    username: str,
    role: str,
    agency: str | None = None,
    units: list[str] | None = None,
) -> str:
    """Create a user and return their new token (shown once)."""
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if role == "supervisor" and (not agency or not units):
        raise UserError("a supervisor needs an agency and at least one unit (--unit)")
    token = secrets.token_urlsafe(32)
    with db.session() as s:
        if s.scalar(select(User).where(User.username == username)) is not None:
            raise UserError(f"user {username!r} exists already")
        s.add(
            User(
                username=username,
                role=role,
                agency=agency,
                units=[str(u) for u in units or []],
                token_sha256=hash_token(token),
            )
        )
    return token


def reset_token(db: AppDatabase, username: str) -> str:
    """Give an existing user a new token (the old one stops working) and return it."""
    token = secrets.token_urlsafe(32)
    with db.session() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise UserError(f"no user {username!r}")
        user.token_sha256 = hash_token(token)
    return token


def user_for_token(db: AppDatabase, token: str) -> User | None:
    with db.session() as s:
        user = s.scalar(select(User).where(User.token_sha256 == hash_token(token)))
        return user if user is not None and user.active else None


def list_users(db: AppDatabase) -> list[User]:
    with db.session() as s:
        return list(s.scalars(select(User).order_by(User.username)))
