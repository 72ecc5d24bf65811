"""Sessions of the pages: signing in with a token starts a session on the server; the
browser holds only the session's random id (an HttpOnly, SameSite=Strict cookie, Secure over
https), the database only its SHA-256, bound to the user.

A session ends when its user signs out, after ``EWS_SESSION_IDLE_MINUTES`` (default 30)
without a request, ``EWS_SESSION_HOURS`` (default 12) after sign-in whatever happens, and when
the user's token is rotated or revoked or the user disabled (``ews users ...``). The cookie
opens the pages only; the API takes bearer tokens only, so a captured cookie is no API key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update

from ews.db import AppDatabase, User, WebSession, utcnow

SESSION_BYTES = 32
TOUCH_EVERY = dt.timedelta(seconds=60)  # last_seen_at is written at most once a minute
KEEP_EXPIRED = dt.timedelta(days=30)  # rows of sessions expired longer ago are deleted


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def start_session(db: AppDatabase, user: User, settings: Any) -> str:
    """A new session of ``user``; returns its id (for the cookie; stored only hashed). The
    rows of sessions that expired over 30 days ago go (sign-ins and -outs are audited)."""
    session_id = secrets.token_urlsafe(SESSION_BYTES)
    now = utcnow()
    with db.write_engine.begin() as c:
        c.execute(delete(WebSession).where(WebSession.expires_at < now - KEEP_EXPIRED))
        c.execute(
            insert(WebSession).values(
                session_sha256=session_hash(session_id),
                user_id=user.id,
                created_at=now,
                last_seen_at=now,
                expires_at=now + dt.timedelta(hours=settings.session_hours),
            )
        )
    return session_id


_USER_COLUMNS = ("id", "username", "role", "agency", "units", "active", "expires_at")
_BY_SESSION = (
    select(
        WebSession.id,
        WebSession.last_seen_at,
        WebSession.expires_at,
        WebSession.ended_at,
        User.revoked_at,
        *(getattr(User, c) for c in _USER_COLUMNS),
    )
    .join(User, User.id == WebSession.user_id)
    .where(WebSession.session_sha256 == bindparam("h"))
)


def session_user(db: AppDatabase, session_id: str, settings: Any) -> tuple[User | None, str]:
    """(the user, '') of a live session, else (None, why not); a live session's last use is
    recorded, an expired one is ended."""
    if not 20 <= len(session_id) <= 100:
        return None, "malformed session"
    with db.read_conn() as c:
        row = c.execute(_BY_SESSION, {"h": session_hash(session_id)}).first()
    if row is None:
        return None, "unknown session"
    sid, seen, expires, ended, revoked = row[:5]
    user = User(**dict(zip(_USER_COLUMNS, row[5:], strict=True)))
    now = utcnow()
    why = ""
    if ended is not None:
        return None, "session ended"
    if not user.active:
        why = "user disabled"
    elif revoked is not None:
        why = "token revoked"
    elif user.expires_at is not None and user.expires_at <= now:
        why = "token expired"
    elif expires <= now:
        why = "session expired"
    elif now - seen >= dt.timedelta(minutes=settings.session_idle_minutes):
        why = "session idle too long"
    if why:
        _end(db, WebSession.id == sid, why)
        return None, why
    if now - seen >= TOUCH_EVERY:
        with db.write_engine.begin() as c:
            c.execute(update(WebSession).where(WebSession.id == sid).values(last_seen_at=now))
    return user, ""


def _end(db: AppDatabase, where: Any, why: str) -> None:
    with db.write_engine.begin() as c:
        c.execute(
            update(WebSession)
            .where(where, WebSession.ended_at.is_(None))
            .values(ended_at=utcnow(), end_reason=why)
        )


def end_session(db: AppDatabase, session_id: str, why: str = "signed out") -> None:
    _end(db, WebSession.session_sha256 == session_hash(session_id), why)


def end_user_sessions(s: Any, user_id: int, why: str) -> None:
    """End every open session of a user within the open write transaction ``s``."""
    s.execute(
        update(WebSession)
        .where(WebSession.user_id == user_id, WebSession.ended_at.is_(None))
        .values(ended_at=utcnow(), end_reason=why)
    )
