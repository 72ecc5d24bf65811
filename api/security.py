"""Users and their tokens. A token is shown once, at creation or rotation; only its SHA-256 is
stored (tokens are 32 random bytes, so a plain hash is as strong as a slow one here).

A token stops working when it expires (``--expires 90d``), is revoked (``ews users revoke``:
for good, until ``rotate`` issues a new one), is replaced (``rotate``, which keeps the
user's expiry unless given a new one), or its user is disabled (``disable``; ``enable`` lets
the same token work again). Revoke, rotate and disable also end the user's page sessions.

The first :data:`PREFIX_LEN` characters of each token are stored beside its hash: the
sign-in limiter (:class:`FailureLimiter`) lets a user's token through from an address that
is refused for its failures, without a guess getting a token looked up.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable

from sqlalchemy import bindparam, select

from ews.db import ROLES, AppDatabase, User, utcnow

TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,128}$")
PREFIX_LEN = 8
DURATION = re.compile(r"^(\d{1,5})([dhw])$")


class UserError(ValueError):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_prefix(token: str | None) -> str:
    return (token or "")[:PREFIX_LEN] if TOKEN.match(token or "") else ""


def parse_expiry(text: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """'90d', '12h', '4w' -> the moment the token expires (None: never)."""
    if text is None or text == "never":
        return None
    m = DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise UserError(f"expiry {text!r}: use a number of days, hours or weeks (90d, 12h, 4w)")
    n, unit = int(m.group(1)), m.group(2)
    delta = {"d": dt.timedelta(days=n), "h": dt.timedelta(hours=n), "w": dt.timedelta(weeks=n)}
    return (now or utcnow()) + delta[unit]


def create_user(
    db: AppDatabase,
    username: str,
    role: str,
    agency: str | None = None,
    units: list[str] | None = None,
    expires: str | None = None,
    email: str | None = None,
) -> str:
    """Create a user and return their new token (shown once)."""
    from ews.notify import check_email, check_units

    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{1,200}", username):
        raise UserError("a user name is 1-200 letters, digits or . _ @ -")
    if role == "supervisor" and (not agency or not units):
        raise UserError("a supervisor needs an agency and at least one unit (--unit)")
    try:
        check_units(role, agency, units or [])
        email = check_email(email)
    except ValueError as e:
        raise UserError(str(e)) from e
    expires_at = parse_expiry(expires)
    token = secrets.token_urlsafe(32)
    with db.write() as s:
        if s.scalar(select(User).where(User.username == username)) is not None:
            raise UserError(f"user {username!r} exists already")
        s.add(
            User(
                username=username,
                role=role,
                agency=agency,
                units=[str(u) for u in units or []],
                token_sha256=hash_token(token),
                token_prefix=token_prefix(token),
                token_issued_at=utcnow(),
                expires_at=expires_at,
                email=email,
            )
        )
        _log_admin(
            s,
            "user add",
            username,
            role=role,
            agency=agency,
            units=units or None,
            email=email,
            expires=str(expires_at),
        )
    return token


def _log_admin(s: object, what: str, username: str, **detail: object) -> None:
    from ews.audit import append
    from ews.db import current_actor

    append(
        s,  # type: ignore[arg-type]
        f"cli:{current_actor()}",
        "admin",
        "admin",
        f"ews users {what.split()[-1]} {username}",
        detail={"user": username, **{k: v for k, v in detail.items() if v is not None}},
    )


_KEEP = object()


def _change(
    db: AppDatabase, username: str, what: str, end_sessions: bool = False, **changes: object
) -> None:
    from api.sessions import end_user_sessions

    with db.write() as s:
        user = s.scalar(select(User).where(User.username == username))
        if user is None:
            raise UserError(f"no user {username!r}")
        if changes.get("expires_at") is _KEEP:
            del changes["expires_at"]
            if user.expires_at is not None and user.expires_at <= utcnow():
                raise UserError(
                    f"{username}'s expiry has passed ({user.expires_at:%Y-%m-%d %H:%M}): "
                    "give a new one with --expires (or --expires never)"
                )
        for k, v in changes.items():
            setattr(user, k, v)
        if end_sessions:
            end_user_sessions(s, user.id, f"user {what}")
        _log_admin(s, f"user {what}", username)


def rotate_token(db: AppDatabase, username: str, expires: str | None = None) -> str:
    """Give a user a new token (the old one and the user's page sessions stop working at
    once) and return it. The user keeps their expiry unless ``expires`` gives a new one
    ('90d', or 'never')."""
    token = secrets.token_urlsafe(32)
    _change(
        db,
        username,
        "rotate",
        end_sessions=True,
        token_sha256=hash_token(token),
        token_prefix=token_prefix(token),
        token_issued_at=utcnow(),
        revoked_at=None,
        expires_at=_KEEP if expires is None else parse_expiry(expires),
    )
    return token


reset_token = rotate_token


def revoke_token(db: AppDatabase, username: str) -> None:
    """The user's token stops working for good (``rotate`` issues a new one)."""
    _change(
        db,
        username,
        "revoke",
        end_sessions=True,
        token_sha256=hash_token(secrets.token_urlsafe(32)),  # nobody holds this token
        token_prefix=None,
        revoked_at=utcnow(),
    )


def set_active(db: AppDatabase, username: str, active: bool) -> None:
    """Disable (page sessions end) or enable a user."""
    _change(db, username, "enable" if active else "disable", not active, active=active)


class TokenCache:
    """The users of working tokens seen in the last ``ttl`` seconds, by the token's SHA-256,
    so that a client's requests do not each look its token up. The price is a bound: a token
    revoked or rotated, or a user disabled, still works for at most ``ttl`` seconds in each
    process that saw it (``EWS_TOKEN_CACHE_SECONDS``, 0: no cache). An expiry is checked on
    every request; unknown, disabled and expired tokens are never kept."""

    def __init__(
        self, ttl: float = 5.0, size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl, self.size, self.clock = ttl, size, clock
        self._items: dict[str, tuple[float, User]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> User | None:
        item = self._items.get(digest)
        if item is None:
            return None
        if self.clock() - item[0] >= self.ttl:
            with self._lock:
                self._items.pop(digest, None)
            return None
        return item[1]

    def put(self, digest: str, user: User) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._items) >= self.size:  # bounded memory: start afresh
                self._items.clear()
            self._items[digest] = (self.clock(), user)


_USER_COLUMNS = ("id", "username", "role", "agency", "units", "active", "expires_at")
_BY_TOKEN = select(*(getattr(User, c) for c in _USER_COLUMNS)).where(
    User.token_sha256 == bindparam("h")
)


def user_for_token(
    db: AppDatabase, token: str, cache: TokenCache | None = None
) -> tuple[User | None, str]:
    """(the user, '') for a working token, else (None, why it does not work). With
    ``cache``, a token that worked less than ``cache.ttl`` seconds ago is not looked up."""
    if not TOKEN.match(token):
        return None, "malformed token"
    digest = hash_token(token)
    user = cache.get(digest) if cache is not None else None
    if user is None:
        with db.read_conn() as c:
            row = c.execute(_BY_TOKEN, {"h": digest}).first()
        if row is None:
            return None, "unknown token"
        user = User(**dict(zip(_USER_COLUMNS, row, strict=True)))
        if cache is not None and user.active:
            cache.put(digest, user)
    if not user.active:
        return None, "user disabled"
    if user.expires_at is not None and user.expires_at <= utcnow():
        return None, "token expired"
    return user, ""


def list_users(db: AppDatabase) -> list[User]:
    with db.session() as s:
        return list(s.scalars(select(User).order_by(User.username)))


_KNOWN_PREFIX = (
    select(User.id).where(User.token_prefix == bindparam("p"), User.active.is_(True)).limit(1)
)


class FailureLimiter:
    """Slows guessing, not users. Failed sign-ins are counted per client address (the one
    the server sees: X-Forwarded-For counts only from the proxies given to ``ews serve
    --forwarded-allow-ips``) and per token prefix. After ``limit`` failures within ``window``
    seconds, a request from that address, or presenting that prefix, is refused (429)
    without its token being looked up, unless the token's prefix is a user's (a user's
    valid token is never refused for others' failures). In process memory: each worker
    counts its own failures."""

    def __init__(self, limit: int = 10, window: float = 60.0) -> None:
        self.limit, self.window = limit, window
        self._fails: dict[tuple[str, str], deque[float]] = {}
        self._good: set[str] = set()
        self._lock = threading.Lock()

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        q = self._fails.setdefault(key, deque())
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def _wait(self, key: tuple[str, str], now: float) -> int:
        if key not in self._fails:
            return 0
        q = self._recent(key, now)
        if not q:
            del self._fails[key]
            return 0
        return int(q[0] + self.window - now) + 1 if len(q) >= self.limit else 0

    def retry_after(
        self, client: str, token: str | None = None, db: AppDatabase | None = None
    ) -> int:
        """Seconds the client must wait before this token is looked up (0: look it up)."""
        prefix = token_prefix(token)
        now = time.monotonic()
        with self._lock:
            wait = max(self._wait(("client", client), now), self._wait(("prefix", prefix), now))
            known = prefix in self._good
        if not wait or known:
            return 0
        if prefix and db is not None:
            with db.read_conn() as c:
                if c.execute(_KNOWN_PREFIX, {"p": prefix}).first() is not None:
                    return 0
        return wait

    def fail(self, client: str, token: str | None = None) -> None:
        now = time.monotonic()
        prefix = token_prefix(token)
        with self._lock:
            if len(self._fails) > 100_000:  # bounded memory under a flood of clients
                self._fails.clear()
            self._recent(("client", client), now).append(now)
            if prefix:
                self._recent(("prefix", prefix), now).append(now)

    def succeed(self, token: str) -> None:
        """A token worked: its prefix is a user's."""
        if token_prefix(token) in self._good:
            return
        with self._lock:
            if len(self._good) > 100_000:
                self._good.clear()
            self._good.add(token_prefix(token))
