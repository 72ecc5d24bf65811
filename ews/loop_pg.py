"""The event loop's own PostgreSQL connections: one for the reads an async request makes on
the loop (the agency's data version), one for the group commit of the audit entries it
awaits, with no thread involved.

Each connection works in rounds. A round takes everything asked of it since the last one
(each distinct read once, however many requests asked it; or every audit entry pending) and
sends it as one pipeline, one network round trip; the audit connection's round is::

    BEGIN; SELECT pg_advisory_xact_lock(k); INSERT ... WHERE <the head is h>; COMMIT

While a round is in flight, requests queue for the next: a hundred requests a second cost a
few round trips, and the loop never hands the GIL to a writer thread and waits to get it
back (what made :class:`ews.audit.GroupWriter` slow under load). Reads and commits have a
connection each so that a request's version read never waits behind another's commit (on a
loaded machine a round trip is many milliseconds: one connection for both made every
request wait for two in turn and halved the throughput).

The audit entries are chained as :func:`ews.audit.append` chains them, under the same
writer lock (the transaction-scoped advisory lock every writer takes). The chain's head is
the one this connection last wrote: the INSERT stores the batch only if the head is still
that one when it runs, after the lock is taken (READ COMMITTED: the statement sees every
commit made before it). If another writer (a review, another worker, a command) moved the
head meanwhile, nothing is inserted and the batch is chained again on the head read under
the lock (two round trips). A round that fails (the connection lost, an entry the database
refuses) stores nothing: its reads answer None (the caller reads through the pools in a
thread) and its entries go to the writer thread, which stores them entry by entry; their
requests still await that commit. (A connection lost after the server committed but before
its answer arrived would store such entries twice: once more, in order, never a break of
the chain.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from ews.audit import GENESIS, chain_rows, forward
from ews.db import WRITE_LOCK_KEY

if TYPE_CHECKING:
    import psycopg

    from ews.db import AppDatabase

log = logging.getLogger("ews.db")

_COLUMNS = (
    ("id", "integer"),
    ("at", "timestamp"),
    ("actor", "varchar"),
    ("role", "varchar"),
    ("action", "varchar"),
    ("resource", "varchar"),
    ("agency", "varchar"),
    ("officer_id", "varchar"),
    ("detail", "json"),
    ("prev_hash", "varchar"),
    ("entry_hash", "varchar"),
)
# The chain's head as :func:`ews.audit._head` reads it: the newest entry, else the newest
# archive anchor, else the genesis.
_HEAD_ID = (
    "COALESCE((SELECT id FROM audit_log ORDER BY id DESC LIMIT 1), "
    "(SELECT through_id FROM audit_anchor ORDER BY id DESC LIMIT 1), 0)"
)
_HEAD_HASH = (
    "COALESCE((SELECT entry_hash FROM audit_log ORDER BY id DESC LIMIT 1), "
    f"(SELECT through_hash FROM audit_anchor ORDER BY id DESC LIMIT 1), '{GENESIS}'::varchar)"
)
HEAD = f"SELECT {_HEAD_ID}, {_HEAD_HASH}"
# One statement whatever the batch's size (prepared by the server after a few uses): the
# batch as one JSON parameter (one json.dumps, where arrays of text would be escaped element
# by element in Python), stored only if the chain's head is the one it was chained on.
INSERT_IF_HEAD = (
    f"INSERT INTO audit_log ({', '.join(c for c, _ in _COLUMNS)}) "
    f"SELECT {', '.join(c for c, _ in _COLUMNS)} FROM json_to_recordset(%(rows)s::json) "
    f"AS r({', '.join(f'{c} {t}' for c, t in _COLUMNS)}) "
    f"WHERE {_HEAD_ID} = %(head_id)s::integer AND {_HEAD_HASH} = %(head_hash)s::varchar "
    "ORDER BY r.id"
)
LOCK = "SELECT pg_advisory_xact_lock(%(k)s)"

Row = tuple[Any, ...] | None
Entry = tuple[dict[str, Any], "asyncio.Future[int]"]


class LoopPg:
    """One of the event loop's connections (autocommit; opened on first use, beyond the
    pools: both are counted in :func:`ews.db.pg_pools`), for reads (:meth:`row`) or for
    audit entries (:meth:`submit_entry`). Used from one event loop only."""

    def __init__(self, db: AppDatabase, loop: asyncio.AbstractEventLoop) -> None:
        self.db, self.loop = db, loop
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self._reads: dict[tuple[Any, ...], tuple[str, dict[str, Any], asyncio.Future[Row]]] = {}
        self._entries: list[Entry] = []
        self._task: asyncio.Task[None] | None = None
        self._head: tuple[int, str] | None = None  # the head this connection last wrote
        self.rounds = 0  # (tests) rounds sent; batches committed; entries handed to the thread
        self.batches = 0
        self.handed_over = 0
        self.head_moved = 0

    # -- what callers ask ---------------------------------------------------------------

    async def row(self, sql: str, params: dict[str, Any]) -> Row:
        """The first row of ``sql`` (psycopg's ``%(name)s`` parameters), or None when the
        connection cannot be had or fails (the caller then reads through the pools).
        Callers asking the same read before the next round is sent share it: the one query,
        sent after every one of them asked, sees every commit each of them could have seen."""
        key = (sql, tuple(sorted(params.items())))
        pending = self._reads.get(key)
        if pending is None:
            pending = (sql, params, self.loop.create_future())
            self._reads[key] = pending
            self._kick()
        # shielded: a caller that gives up does not cancel the others' answer
        row: Row = await asyncio.shield(pending[2])
        return row

    def submit_entry(self, entry: dict[str, Any]) -> Awaitable[int]:
        """Queue an audit entry already made storable (:func:`ews.audit._entry`); the future
        is done (its id) once the entry is committed."""
        done: asyncio.Future[int] = self.loop.create_future()
        self._entries.append((entry, done))
        self._kick()
        return done

    async def aclose(self) -> None:
        """Finish the rounds asked for, then close the connection."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        if self.conn is not None:
            await self.conn.close()
            self.conn = None

    # -- the rounds ---------------------------------------------------------------------

    def _kick(self) -> None:
        if self._task is None or self._task.done():
            self._task = self.loop.create_task(self._run())

    async def _run(self) -> None:
        while self._reads or self._entries:
            reads, self._reads = self._reads, {}
            entries, self._entries = self._entries, []
            try:
                await self._round(list(reads.values()), entries)
            except BaseException:  # (cancelled: the loop is closing) nobody is left waiting
                self._fail(list(reads.values()), entries)
                raise

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        import psycopg
        from sqlalchemy.engine import make_url

        if self.conn is None or self.conn.closed:
            url = make_url(self.db.url).set(drivername="postgresql")
            self.conn = await psycopg.AsyncConnection.connect(
                url.render_as_string(hide_password=False), autocommit=True
            )
        return self.conn

    async def _round(
        self, reads: list[tuple[str, dict[str, Any], asyncio.Future[Row]]], entries: list[Entry]
    ) -> None:
        import psycopg

        self.rounds += 1
        rows: list[dict[str, Any]] | None = None
        stored: tuple[psycopg.AsyncCursor[Any], psycopg.AsyncCursor[Any]] | None = None
        try:
            conn = await self._connection()
            head, locked = self._head, False
            if entries and head is None:  # first use: the head read under the lock
                head, locked = await self._locked_head(conn), True
            async with conn.pipeline():
                if entries:
                    rows = self._rows(head, entries)
                    stored = await self._insert(conn, rows, head, locked)
                cursors = [await conn.execute(sql, params) for sql, params, _ in reads]
            answers = [await c.fetchone() for c in cursors]
            if rows is not None and not _committed(stored, len(rows)):
                # another writer moved the head: chain the batch again under the lock
                self.head_moved += 1
                head = await self._locked_head(conn)
                rows = self._rows(head, entries)
                async with conn.pipeline():
                    stored = await self._insert(conn, rows, head, locked=True)
                if not _committed(stored, len(rows)):
                    raise psycopg.DataError("the audit batch was not stored under the lock")
        except (psycopg.Error, OSError):
            log.warning("the event loop's PostgreSQL connection failed", exc_info=True)
            await self._reset()
            if rows is not None and _committed(stored, len(rows)):  # a read failed after it
                self._stored(entries, rows)
                entries = []
            self._fail(reads, entries)
            return
        for (_, _, done), answer in zip(reads, answers, strict=True):
            if not done.done():
                done.set_result(answer)
        if rows is not None:
            self._stored(entries, rows)

    def _stored(self, entries: list[Entry], rows: list[dict[str, Any]]) -> None:
        self.batches += 1
        self._head = (rows[-1]["id"], rows[-1]["entry_hash"])
        for (_, done), row in zip(entries, rows, strict=True):
            if not done.done():  # a request that gave up: its entry is stored all the same
                done.set_result(row["id"])

    def _rows(self, head: tuple[int, str] | None, entries: list[Entry]) -> list[dict[str, Any]]:
        assert head is not None
        return chain_rows(self.db.audit_key, head, [e for e, _ in entries])

    async def _locked_head(self, conn: psycopg.AsyncConnection[Any]) -> tuple[int, str]:
        """BEGIN, take the writer lock and read the chain's head (one round trip): the
        transaction stays open, holding the lock, for :meth:`_insert` with ``locked``."""
        async with conn.pipeline():
            await conn.execute("BEGIN")
            await conn.execute(LOCK, {"k": WRITE_LOCK_KEY})
            cur = await conn.execute(HEAD)
        found = await cur.fetchone()
        assert found is not None
        return int(found[0]), str(found[1])

    async def _insert(
        self,
        conn: psycopg.AsyncConnection[Any],
        rows: list[dict[str, Any]],
        head: tuple[int, str] | None,
        locked: bool = False,
    ) -> tuple[psycopg.AsyncCursor[Any], psycopg.AsyncCursor[Any]]:
        """Queue (in the pipeline) the batch's transaction; the cursors of its INSERT and its
        COMMIT, which say once the pipeline is synced whether it was stored
        (:func:`_committed`; the INSERT stores nothing when the head had moved)."""
        assert head is not None
        batch = [{**r, "at": r["at"].isoformat(timespec="microseconds")} for r in rows]
        params: dict[str, Any] = {
            "rows": json.dumps(batch, ensure_ascii=False, separators=(",", ":")),
            "head_id": head[0],
            "head_hash": head[1],
        }
        if not locked:
            await conn.execute("BEGIN")
            await conn.execute(LOCK, {"k": WRITE_LOCK_KEY})
        insert = await conn.execute(INSERT_IF_HEAD, params)
        commit = await conn.execute("COMMIT")
        return insert, commit

    async def _reset(self) -> None:
        """Drop a connection that failed (and any transaction it had open)."""
        self._head = None
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # a broken connection: nothing to add
                await conn.close()

    def _fail(
        self, reads: list[tuple[str, dict[str, Any], asyncio.Future[Row]]], entries: list[Entry]
    ) -> None:
        """A round that stored nothing: reads answer None, entries go to the writer thread."""
        for _, _, answer in reads:
            if not answer.done():
                answer.set_result(None)
        self.handed_over += len(entries)
        for entry, done in entries:
            forward(self.db.group_writer().submit_entry(entry), done, self.loop)


def _committed(
    stored: tuple[psycopg.AsyncCursor[Any], psycopg.AsyncCursor[Any]] | None, rows: int
) -> bool:
    """Whether a batch's transaction (:meth:`LoopPg._insert`) inserted its ``rows`` and
    committed (a COMMIT of an aborted transaction answers ROLLBACK)."""
    if stored is None:
        return False
    insert, commit = stored
    done = commit.pgresult
    return (
        insert.pgresult is not None
        and insert.rowcount == rows
        and done is not None
        and done.command_status == b"COMMIT"
    )
