"""Refusals in the audit log: every 401, 403, 404, 405, 409, 413, 422 and 429 the service
answers is an audit entry, written by the code that refused (scope and role refusals, failed
sign-ins) or, for the refusals no handler logs (invalid input, a wrong method, an oversized
body, an unknown path), by :class:`api.hardening.RefusalAudit`.

A client that keeps failing does not write the log full: per client address (the one the
server sees), the first ``burst`` refusals of a ``window`` are written one by one, the rest
are counted and written as ONE summary entry (``refusals_summarized``: how many, which
statuses, actions and actors, first and last time) when the window closes: at the client's
next refusal after it, at any refusal of another client, or when the service stops.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ews.db import AppDatabase, User

REFUSAL_STATUSES = frozenset({401, 403, 404, 405, 409, 413, 422, 429})
REFUSAL_ACTIONS = frozenset({"not_found", "denied", "refused", "sign_in_failed"})

# One mutable box per request (set by RefusalAudit): the handler's thread writes into it,
# the middleware reads it when the answer starts.
_request: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "ews_request", default=None
)


def begin_request() -> dict[str, Any]:
    box: dict[str, Any] = {"logged": False, "user": None}
    _request.set(box)
    return box


def mark_logged(action: str) -> None:
    """The current request's refusal is in the audit log already."""
    box = _request.get()
    if box is not None and action in REFUSAL_ACTIONS:
        box["logged"] = True


def note_user(user: User) -> None:
    """Who the current request is signed in as (named by a refusal written later)."""
    box = _request.get()
    if box is not None:
        box["user"] = user


@dataclass
class _Window:
    start: float
    first_at: dt.datetime
    last_at: dt.datetime
    written: int = 0
    held: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    actors: set[str] = field(default_factory=set)


class RefusalLog:
    """Writes refusals to the audit log, summarizing a client's repeated ones (see module)."""

    def __init__(self, burst: int = 10, window: float = 60.0, max_clients: int = 100_000) -> None:
        self.burst, self.window, self.max_clients = burst, window, max_clients
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def _summary(self, client: str, w: _Window) -> dict[str, Any]:
        return {
            "actor": "anonymous" if w.actors <= {"anonymous"} else ",".join(sorted(w.actors))[:200],
            "role": "none",
            "action": "refusals_summarized",
            "resource": "*",
            "detail": {
                "client": client,
                "refusals": w.held,
                "written_one_by_one": w.written,
                "statuses": dict(w.statuses),
                "actions": dict(w.actions),
                "first_at": w.first_at.isoformat(),
                "last_at": w.last_at.isoformat(),
            },
        }

    def _closed(self, now: float) -> list[dict[str, Any]]:
        """Summaries of the windows that have closed (removed); the lock is held."""
        out = []
        full = len(self._windows) >= self.max_clients
        for client, w in list(self._windows.items()):
            if full or now >= w.start + self.window:
                del self._windows[client]
                if w.held:
                    out.append(self._summary(client, w))
        return out

    def refusal(
        self,
        db: AppDatabase,
        client: str,
        actor: str,
        role: str,
        action: str,
        resource: str,
        status: int,
        agency: str | None = None,
        officer_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Write (or count) one refusal of ``client``; blocks until what is written is
        committed, so call it from a worker thread."""
        now, at = time.monotonic(), dt.datetime.now(dt.UTC).replace(tzinfo=None)
        with self._lock:
            due = self._closed(now) if len(self._windows) else []
            w = self._windows.get(client)
            if w is None:
                w = self._windows[client] = _Window(now, at, at)
            w.last_at = at
            write = w.written < self.burst
            if write:
                w.written += 1
            else:
                w.held += 1
                w.statuses[str(status)] += 1
                w.actions[action] += 1
                w.actors.add(actor)
        for entry in due:
            db.audit(**entry)
        if write:
            db.audit(
                actor=actor,
                role=role,
                action=action,
                resource=resource,  # made storable by the audit writer
                agency=agency,
                officer_id=officer_id,
                detail={**(detail or {}), "status": status, "client": client[:100]},
            )

    def flush(self, db: AppDatabase) -> None:
        """Write the summaries still open (the service stops)."""
        with self._lock:
            due = self._closed(float("inf"))
        for entry in due:
            db.audit(**entry)
