"""The tamper-evident audit trail: an HMAC-SHA-256 chain over the ``audit_log`` table.

Each entry stores ``prev_hash`` (the MAC of the entry before it) and ``entry_hash`` =
HMAC-SHA-256, under the audit key, of ``prev_hash`` and the entry's canonical content (id,
time, actor, role, action, resource, agency, officer, detail). The key is a file outside the
database (``EWS_AUDIT_KEY_FILE``, default ``EWS_HOME/audit.key``, mode 0600), created by the
migration that keyed the chain (0005): whoever can write the database but not read the key
cannot forge an entry, an archive anchor or the chain's start. Entries are appended by
:func:`append` inside the write transaction of what they record
(:meth:`ews.db.AppDatabase.write`), so the chain has one order and an entry exists exactly
when its write does; reads are group-committed by :class:`GroupWriter`. Every value is made
storable first (:func:`storable`: control characters escaped, cut to the column), so what a
client sends cannot fail the insert.

Chains older than the key keep their plain SHA-256 entries: ``audit_chain_start`` records,
signed, the first keyed entry, the hash before it and the newest anchor of that time, which
fixes the legacy part as well. :func:`verify` checks that record, every anchor (signed by
the key unless older than it, each continuing the one before) and every entry, and names the
first entry that was altered, deleted, inserted or forged. :func:`archive` moves old entries
to a JSON-lines export with a SHA-256 manifest and records an anchor holding the manifest's
SHA-256 signed by the key; :func:`verify_archive` checks an export. Deleting the newest
entries leaves a valid shorter chain: keep the head (``ews audit head``) elsewhere and check
it with ``ews audit verify --expect``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import math
import os
import queue
import re
import secrets
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, InvalidStateError
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from ews.db import AuditAnchor, AuditChainStart, AuditLog, utcnow

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

    from ews.db import AppDatabase

GENESIS = "0" * 64


def canonical(entry: dict[str, Any]) -> str:
    """The entry's content as the one JSON text that is hashed."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content(e: Any) -> dict[str, Any]:
    """The hashed fields of an entry (an AuditLog, or any object with its attributes)."""
    return {
        "id": e.id,
        "at": e.at.isoformat(timespec="microseconds"),
        "actor": e.actor,
        "role": e.role,
        "action": e.action,
        "resource": e.resource,
        "agency": e.agency,
        "officer_id": e.officer_id,
        "detail": e.detail,
    }


def entry_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    """The plain SHA-256 of an entry: the chain's rule before it was keyed (legacy)."""
    return hashlib.sha256(f"{prev_hash}\n{canonical(entry)}".encode()).hexdigest()


def entry_mac(key: bytes, prev_hash: str, entry: dict[str, Any]) -> str:
    """The HMAC-SHA-256 of an entry under the audit key: the chain's rule since it was keyed."""
    return hmac.new(key, f"{prev_hash}\n{canonical(entry)}".encode(), hashlib.sha256).hexdigest()


def sign(key: bytes, what: str, fields: dict[str, Any]) -> str:
    """The HMAC of a record that is not an entry (the chain's start, an archive anchor)."""
    return hmac.new(key, f"{what}\n{canonical(fields)}".encode(), hashlib.sha256).hexdigest()


class AuditKeyError(RuntimeError):
    """The audit key file is missing, unreadable or not a key."""


def key_id(key: bytes) -> str:
    """A short fingerprint of the key (safe to show; it does not reveal the key)."""
    return sign(key, "key-id", {})[:16]


def load_key(path: Path, create: bool = False) -> bytes:
    """The audit key in ``path`` (64 hex digits). With ``create``, a missing file is created
    with a new random key and mode 0600 (atomically: concurrent processes get one key)."""
    if not path.exists():
        if not create:
            raise AuditKeyError(
                f"no audit key at {path}: set EWS_AUDIT_KEY_FILE to the key file this "
                "database's audit chain was keyed with"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # fails if another process created it first: use theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    try:
        text = path.read_text().strip()
    except OSError as e:
        raise AuditKeyError(f"cannot read the audit key {path}: {e}") from e
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise AuditKeyError(f"{path} does not hold an audit key (64 hex digits)")
    return bytes.fromhex(text)


_TABLE = AuditLog.__table__
_ANCHOR = AuditAnchor.__table__
# Built once: the hot path of every request executes these with new values only.
_HEAD = select(_TABLE.c.id, _TABLE.c.entry_hash).order_by(_TABLE.c.id.desc()).limit(1)
_ANCHOR_HEAD = (
    select(_ANCHOR.c.through_id, _ANCHOR.c.through_hash).order_by(_ANCHOR.c.id.desc()).limit(1)
)
_INSERT = insert(AuditLog)


def _head(s: Session | Connection) -> tuple[int, str]:
    """(id, hash) of the newest entry, or of the newest archive anchor, or the genesis."""
    last = s.execute(_HEAD).first() or s.execute(_ANCHOR_HEAD).first()
    return (int(last[0]), str(last[1])) if last is not None else (0, GENESIS)


# The column lengths an entry's fields are cut to (after escaping), so that no value a
# client sends can make the insert fail (PostgreSQL refuses over-long VARCHARs).
_LIMITS = {"actor": 200, "role": 50, "action": 100, "resource": 500, "agency": 200}
_LIMITS["officer_id"] = 200


def _escape_char(c: str) -> str:
    o = ord(c)
    return f"\\x{o:02x}" if o < 256 else f"\\u{o:04x}"


def _unstorable(c: str) -> bool:
    """NUL and other control characters (C0 and DEL), and lone surrogates (not UTF-8)."""
    o = ord(c)
    return o < 32 or o == 127 or 0xD800 <= o <= 0xDFFF


_UNSTORABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")  # what _unstorable tells, at once


def storable_text(value: str) -> str:
    """``value`` with every control character and lone surrogate written as its escape
    (NUL as the four characters ``\\x00``): text every database stores as it is."""
    if _UNSTORABLE.search(value) is None:  # (every request's entry: a C scan, not a loop)
        return value
    return "".join(_escape_char(c) if _unstorable(c) else c for c in value)


def storable(value: Any) -> Any:
    """A JSON value made storable: strings escaped (:func:`storable_text`), keys too, and
    non-finite numbers (which JSON and PostgreSQL refuse) written as text."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return storable_text(str(value))


def _entry(
    actor: str,
    role: str,
    action: str,
    resource: str,
    agency: str | None = None,
    officer_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The fields of an entry, made storable whatever a client sent: every string escaped
    (:func:`storable`) and cut to its column's length, before the entry is hashed."""
    fields = {
        "actor": actor,
        "role": role,
        "action": action,
        "resource": resource,
        "agency": agency,
        "officer_id": officer_id,
    }
    clean = {
        k: None if v is None else storable_text(str(v))[: _LIMITS[k]] for k, v in fields.items()
    }
    return {
        "at": utcnow(),
        **clean,
        "detail": storable(json.loads(json.dumps(detail or {}, default=str))),
    }


KEY_INFO = "ews_audit_key"  # where AppDatabase.write puts the key in a session's info


def _chain(s: Session | Connection, entries: list[dict[str, Any]]) -> list[int]:
    """Number, MAC and insert entries after the chain's head, in order; their ids."""
    key = s.info.get(KEY_INFO)
    if key is None:
        raise RuntimeError("audit entries are appended in a transaction of AppDatabase.write")
    rows = chain_rows(key, _head(s), entries)
    s.execute(_INSERT, rows)
    return [r["id"] for r in rows]


def chain_rows(
    key: bytes, head: tuple[int, str], entries: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The rows of ``entries`` chained after ``head`` (the newest entry's id and hash):
    numbered, each with the hash before it and its HMAC under ``key``."""
    last_id, prev = head
    rows = []
    for e in entries:
        last_id += 1
        e = {**e, "id": last_id}
        digest = entry_mac(key, prev, {**e, "at": e["at"].isoformat(timespec="microseconds")})
        rows.append({**e, "prev_hash": prev, "entry_hash": digest})
        prev = digest
    return rows


def append(
    s: Session | Connection,
    actor: str,
    role: str,
    action: str,
    resource: str,
    agency: str | None = None,
    officer_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """Append one entry to the chain within the (write) transaction of ``s``; its id."""
    return _chain(s, [_entry(actor, role, action, resource, agency, officer_id, detail)])[0]


class GroupWriter:
    """Appends entries that record reads, many requests' entries in one transaction (group
    commit): each caller waits until the transaction holding its entry has committed, so an
    answer never leaves before its audit entry is stored, and one commit serves every request
    that arrived meanwhile. Writes that must commit with their entry (reviews) use
    :func:`append` in their own transaction instead; both take the same writer lock."""

    def __init__(self, db: AppDatabase, max_batch: int = 1000, linger: float = 0.001) -> None:
        self.db, self.max_batch, self.linger = db, max_batch, linger
        self._queue: queue.SimpleQueue[tuple[dict[str, Any], Future[int]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="ews-audit-writer", daemon=True)
        self._thread.start()

    def write(self, timeout: float = 60.0, **fields: Any) -> int:
        return self.submit(**fields).result(timeout)

    def submit(self, **fields: Any) -> Future[int]:
        """Queue an entry; the future is done (its id) once the entry is committed. An async
        caller awaits it (``asyncio.wrap_future``) without holding a thread meanwhile."""
        return self.submit_entry(_entry(**fields))

    def submit_entry(self, entry: dict[str, Any]) -> Future[int]:
        """:meth:`submit` of an entry already made storable (:func:`_entry`)."""
        done: Future[int] = Future()
        self._queue.put((entry, done))
        return done

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.linger > 0 and self._queue.empty():
                time.sleep(self.linger)  # let the entries of requests in flight join
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
            self._commit(batch)

    def _commit(self, batch: list[tuple[dict[str, Any], Future[int]]]) -> None:
        """Commit the batch in one transaction; if that fails, each entry in a transaction
        of its own, so that an entry that cannot be stored fails only its own request."""
        try:
            with self.db.write_conn() as c:
                ids = _chain(c, [e for e, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exception=exc)
                return
            for item in batch:
                self._commit([item])
            return
        for (_, done), i in zip(batch, ids, strict=True):
            _settle(done, i)


class LoopWriter:
    """Group commit on the event loop, for SQLite: the entries of the requests that reached
    their audit entry in one turn of the loop are committed at the start of its next turn,
    in one transaction on the loop's own connection, and each request's future is then
    resolved on the loop. No thread is involved, so the loop does not hand the GIL to a
    writer thread and wait to get it back (what made :class:`GroupWriter` slow under load).

    The loop must never wait long for SQLite's one write lock (held meanwhile by a review
    in the thread pool, another worker process or a command): its connection's busy timeout
    is a few milliseconds (``db.loop_write_engine``), and a batch that could not be
    committed for any reason goes, unchanged, to the :class:`GroupWriter` thread, which
    waits for the lock and stores entry by entry; its requests still await that commit.
    The loop's connection does not checkpoint the write-ahead log itself (a checkpoint
    writes the database file and may sync it); every ``checkpoint_every`` commits a
    checkpoint runs in the thread pool instead, one that restarts the log
    (:meth:`AppDatabase.checkpoint`: a passive one never completed under load, and the log
    grew without end).
    """

    def __init__(self, db: AppDatabase, checkpoint_every: int = 500) -> None:
        self.db, self.checkpoint_every = db, checkpoint_every
        # by loop: a test may drive the app from more than one loop (each flushes its own)
        self._pending: dict[
            asyncio.AbstractEventLoop, list[tuple[dict[str, Any], asyncio.Future[int]]]
        ] = {}
        self._commits = 0
        self.batches = 0  # commits on the loop, and entries handed to the thread (tests)
        self.handed_over = 0

    def submit(self, **fields: Any) -> asyncio.Future[int]:
        """Queue an entry (from the event loop); the future is done (its id) once the entry
        is committed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._flush, loop)
        pending.append((_entry(**fields), done))
        return done

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop)
        try:
            with self.db.write_conn(self.db.loop_write_engine) as c:
                ids = _chain(c, [e for e, _ in batch])
        except Exception:  # busy (or any failure): nothing was committed; the thread stores it
            self.handed_over += len(batch)
            for entry, done in batch:
                forward(self.db.group_writer().submit_entry(entry), done, loop)
            return
        self.batches += 1
        for (_, done), i in zip(batch, ids, strict=True):
            if not done.done():  # a request that gave up: its entry is stored all the same
                done.set_result(i)
        self._commits += 1
        if self._commits % self.checkpoint_every == 0:
            loop.run_in_executor(None, self.db.checkpoint)


def forward(
    source: Future[int], target: asyncio.Future[int], loop: asyncio.AbstractEventLoop
) -> None:
    """Resolve the loop's ``target`` with the outcome of the thread's ``source``."""

    def copy(f: Future[int]) -> None:
        def settle() -> None:
            if target.done():
                return
            exc = f.exception()
            if exc is not None:
                target.set_exception(exc)
            else:
                target.set_result(f.result())

        loop.call_soon_threadsafe(settle)

    source.add_done_callback(copy)


def _settle(done: Future[int], result: int = 0, exception: BaseException | None = None) -> None:
    """Resolve a caller's future; one its caller gave up on (an awaiting request cancelled)
    is left as it is: the entry is stored all the same, and the writer thread must go on."""
    if done.cancelled():
        return
    try:
        if exception is not None:
            done.set_exception(exception)
        else:
            done.set_result(result)
    except InvalidStateError:  # cancelled meanwhile
        pass


@dataclass
class Verification:
    ok: bool
    entries: int
    head_id: int
    head_hash: str
    first_bad_id: int | None = None
    problem: str | None = None
    archived_through: int = 0
    keyed_from: int | None = None

    def summary(self) -> str:
        if self.ok:
            start = f" after the archive through entry {self.archived_through}" * bool(
                self.archived_through
            )
            return (
                f"audit chain intact: {self.entries} entries{start}, head entry "
                f"{self.head_id} hash {self.head_hash}"
            )
        where = f" at entry {self.first_bad_id}" if self.first_bad_id is not None else ""
        return f"audit chain BROKEN{where}: {self.problem}"

    @property
    def head(self) -> str:
        """The head to keep elsewhere and check later: ``<entries ever written>:<its MAC>``."""
        return f"{self.head_id}:{self.head_hash}"


@dataclass
class ChainStart:
    """Where the keyed chain starts (:class:`ews.db.AuditChainStart`): entries from
    ``from_id`` on carry an HMAC, the ones before it their legacy SHA-256."""

    from_id: int
    prev_hash: str
    legacy_anchor_id: int


def _walk(
    rows: Iterable[dict[str, Any]],
    start_id: int,
    start_hash: str,
    key: bytes,
    keyed: ChainStart,
) -> Verification:
    prev_id, prev_hash, n = start_id, start_hash, 0

    def broken(at: int, problem: str) -> Verification:
        return Verification(False, n, prev_id, prev_hash, at, problem, start_id)

    for row in rows:
        entry = {k: row[k] for k in row if k not in ("prev_hash", "entry_hash")}
        i = int(entry["id"])
        if i != prev_id + 1:
            return broken(
                prev_id + 1, f"entry {prev_id + 1} is missing (deleted); the next entry is {i}"
            )
        if row["prev_hash"] != prev_hash:
            return broken(
                i,
                f"entry {i} does not follow entry {prev_id}: its previous-hash does not match "
                "(an entry was deleted, inserted or rewritten here)",
            )
        if i == keyed.from_id and prev_hash != keyed.prev_hash:
            return broken(i, f"the entries before entry {i} (the first keyed one) were rewritten")
        if i >= keyed.from_id:
            if entry_mac(key, prev_hash, entry) != row["entry_hash"]:
                return broken(
                    i,
                    f"entry {i} was altered or forged: its MAC does not match the audit key",
                )
        elif entry_hash(prev_hash, entry) != row["entry_hash"]:
            return broken(i, f"entry {i} was altered: its content does not match its hash")
        prev_id, prev_hash, n = i, row["entry_hash"], n + 1
    return Verification(
        True, n, prev_id, prev_hash, archived_through=start_id, keyed_from=keyed.from_id
    )


def anchor_fields(a: Any) -> dict[str, Any]:
    """The signed fields of an anchor (an AuditAnchor, or any object with its attributes)."""
    return {
        "through_id": a.through_id,
        "through_hash": a.through_hash,
        "entries": a.entries,
        "archive_sha256": a.archive_sha256,
        "archive_name": a.archive_name,
        "manifest_sha256": a.manifest_sha256,
    }


def _start(s: Session, key: bytes) -> ChainStart | str:
    """The signed start of the keyed chain, or what is wrong with it."""
    rows = list(s.scalars(select(AuditChainStart).order_by(AuditChainStart.id)))
    if len(rows) != 1:
        return (
            "the record of where the keyed chain starts is missing"
            if not rows
            else f"{len(rows)} records claim where the keyed chain starts (one is written)"
        )
    r = rows[0]
    start = ChainStart(r.from_id, r.prev_hash, r.legacy_anchor_id)
    if r.key_id != key_id(key):
        return (
            f"the audit key (id {key_id(key)}) is not the key this chain was keyed with "
            f"(id {r.key_id}): set EWS_AUDIT_KEY_FILE to that key"
        )
    if not hmac.compare_digest(r.mac, sign(key, "chain-start", asdict(start))):
        return "the record of where the keyed chain starts is forged (its MAC does not match)"
    return start


def _anchors(s: Session, key: bytes, keyed: ChainStart) -> tuple[int, str] | Verification:
    """Check every anchor (signed by the key, or written before the chain was keyed, and each
    continuing the one before); the newest one's (through_id, through_hash)."""
    through, through_hash = 0, GENESIS
    for a in s.scalars(select(AuditAnchor).order_by(AuditAnchor.id)):
        if a.id > keyed.legacy_anchor_id and (
            a.mac is None or not hmac.compare_digest(a.mac, sign(key, "anchor", anchor_fields(a)))
        ):
            return Verification(
                False,
                0,
                through,
                through_hash,
                a.through_id,
                f"archive anchor {a.id} (through entry {a.through_id}, {a.archive_name}) is "
                "not signed by the audit key: entries were deleted under a forged archive",
            )
        if a.through_id - a.entries != through:
            return Verification(
                False,
                0,
                through,
                through_hash,
                through + 1,
                f"archive anchor {a.id} does not continue the archive before it (it starts "
                f"at entry {a.through_id - a.entries + 1}, not {through + 1})",
            )
        through, through_hash = a.through_id, a.through_hash
    return through, through_hash


def verify(db: AppDatabase, expect: str | None = None) -> Verification:
    """Walk the chain in the database from its newest anchor (or the genesis) to its head,
    with the audit key: the signed start of the keyed chain, every anchor's signature and
    continuity, then every entry (HMAC from the start on, SHA-256 before it). With
    ``expect`` (a head printed by :func:`head` earlier, ``<id>:<mac>``), also check that the
    log still holds that head: deleting the newest entries is caught."""
    key = db.audit_key
    with db.session() as s:
        keyed = _start(s, key)
        if isinstance(keyed, str):
            return Verification(False, 0, 0, GENESIS, None, keyed)
        anchored = _anchors(s, key, keyed)
        if isinstance(anchored, Verification):
            return anchored
        q = (
            select(AuditLog)
            .where(AuditLog.id > anchored[0])
            .order_by(AuditLog.id)
            .execution_options(yield_per=5000)
        )
        rows = (
            {**content(e), "prev_hash": e.prev_hash, "entry_hash": e.entry_hash}
            for e in s.scalars(q)
        )
        result = _walk(rows, *anchored, key, keyed)
        if result.ok and expect is not None:
            problem = _expected(s, result, expect)
            if problem:
                return Verification(
                    False,
                    result.entries,
                    result.head_id,
                    result.head_hash,
                    None,
                    problem,
                    result.archived_through,
                )
        return result


class HeadError(ValueError):
    """A head given to check is not ``<id>:<64 hex digits>``."""


def parse_head(expect: str) -> tuple[int, str]:
    m = re.fullmatch(r"\s*(\d{1,10}):([0-9a-f]{64})\s*", expect)
    if m is None:
        raise HeadError(f"{expect!r} is not a head printed by `ews audit head` (ID:MAC)")
    return int(m[1]), m[2]


def _expected(s: Session, result: Verification, expect: str) -> str | None:
    """Why the verified chain does not extend the head ``expect`` (None: it does)."""
    want_id, want = parse_head(expect)
    if result.head_id < want_id:
        return (
            f"the log ends at entry {result.head_id}, before the expected head entry "
            f"{want_id}: the newest {want_id - result.head_id} entries were deleted"
        )
    if want_id > result.archived_through:
        got = s.scalar(select(AuditLog.entry_hash).where(AuditLog.id == want_id))
    else:
        got = s.scalar(select(AuditAnchor.through_hash).where(AuditAnchor.through_id == want_id))
        if got is None:
            return (
                f"entry {want_id} was archived: check the head against its archive "
                "(`ews audit verify --archive FILE`)"
            )
    if got != want:
        return f"entry {want_id} is not the expected head: the log was rewritten from there"
    return None


class ArchiveError(RuntimeError):
    pass


def archive(db: AppDatabase, before: dt.date, out_dir: Path, actor: str) -> dict[str, Any]:
    """Move the entries older than ``before`` to ``out_dir`` (JSON lines + a manifest with
    their SHA-256), record the anchor (the manifest's SHA-256 signed by the audit key), and
    delete them from the table, in one transaction. Refuses to archive a chain that does not
    verify. Returns the manifest."""
    check = verify(db)
    if not check.ok:
        raise ArchiveError(f"refusing to archive a broken chain: {check.summary()}")
    key = db.audit_key
    cutoff = dt.datetime.combine(before, dt.time())
    out_dir.mkdir(parents=True, exist_ok=True)
    with db.write() as s:
        keyed = _start(s, key)
        assert isinstance(keyed, ChainStart)  # verified above
        anchor = s.scalars(select(AuditAnchor).order_by(AuditAnchor.id.desc()).limit(1)).first()
        start_id, start_hash = (anchor.through_id, anchor.through_hash) if anchor else (0, GENESIS)
        entries = list(
            s.scalars(
                select(AuditLog)
                .where(AuditLog.id > start_id, AuditLog.at < cutoff)
                .order_by(AuditLog.id)
            )
        )
        if not entries:
            raise ArchiveError(f"no audit entries before {before} to archive")
        # only a prefix of the chain can be archived: stop at the first entry not older
        first_newer = s.scalar(
            select(AuditLog.id)
            .where(AuditLog.id > start_id, AuditLog.at >= cutoff)
            .order_by(AuditLog.id)
            .limit(1)
        )
        if first_newer is not None:
            entries = [e for e in entries if e.id < first_newer]
        last = entries[-1]
        name = f"audit-{entries[0].id:09d}-{last.id:09d}.jsonl"
        path = out_dir / name
        lines = [
            canonical({**content(e), "prev_hash": e.prev_hash, "entry_hash": e.entry_hash})
            for e in entries
        ]
        data = ("\n".join(lines) + "\n").encode()
        digest = hashlib.sha256(data).hexdigest()
        manifest = {
            "file": name,
            "sha256": digest,
            "entries": len(entries),
            "first_id": entries[0].id,
            "through_id": last.id,
            "start_hash": start_hash,
            "through_hash": last.entry_hash,
            "keyed_from": keyed.from_id,
            "keyed_prev_hash": keyed.prev_hash,
            "before": before.isoformat(),
            "archived_at": utcnow().isoformat(),
        }
        manifest_bytes = (json.dumps(manifest, indent=2) + "\n").encode()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        Path(f"{path}.manifest.json").write_bytes(manifest_bytes)
        row = AuditAnchor(
            through_id=last.id,
            through_hash=last.entry_hash,
            entries=len(entries),
            archive_sha256=digest,
            archive_name=name,
            manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
        )
        row.mac = sign(key, "anchor", anchor_fields(row))
        s.add(row)
        s.flush()
        for e in entries:
            s.delete(e)
        s.flush()
        append(
            s,
            actor,
            "admin",
            "archive",
            "ews audit archive",
            detail={k: manifest[k] for k in ("file", "sha256", "entries", "through_id")},
        )
    return manifest


def verify_archive(path: Path, db: AppDatabase | None = None) -> Verification:
    """Check an archive file against its manifest and re-walk its chain with the audit key.
    With ``db``, the manifest must also be the one its anchor in the database signed."""
    manifest_path = Path(f"{path}.manifest.json")
    manifest_bytes = manifest_path.read_bytes()
    manifest = json.loads(manifest_bytes)
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != manifest["sha256"]:
        return Verification(
            False, 0, 0, "", None, f"{path.name} does not match the SHA-256 of its manifest"
        )
    if db is not None:
        with db.session() as s:
            signed = s.scalar(
                select(AuditAnchor.manifest_sha256).where(
                    AuditAnchor.archive_name == manifest["file"]
                )
            )
        if signed is not None and signed != hashlib.sha256(manifest_bytes).hexdigest():
            return Verification(
                False, 0, 0, "", None, f"{manifest_path.name} is not the manifest its anchor signed"
            )
    key = db.audit_key if db is not None else None
    keyed_from = int(manifest.get("keyed_from") or 2**62)  # archives before the key: SHA-256
    if key is None and keyed_from <= int(manifest["through_id"]):
        return Verification(False, 0, 0, "", None, "checking keyed entries needs the audit key")
    keyed = ChainStart(keyed_from, str(manifest.get("keyed_prev_hash") or ""), 0)
    rows = [json.loads(line) for line in data.decode().splitlines() if line]
    start = int(manifest["first_id"]) - 1
    result = _walk(rows, start, manifest["start_hash"], key or b"", keyed)
    if result.ok and result.head_hash != manifest["through_hash"]:
        return Verification(False, result.entries, 0, "", None, "the archive's last hash differs")
    return result
