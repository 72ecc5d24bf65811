"""The audit trail is tamper-evident: alter, delete or insert an entry behind the
application's back and `ews audit verify` names it; the tables are append-only; archiving
keeps the chain verifiable."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from ews.audit import archive, verify, verify_archive
from ews.cli import app
from ews.db import AppDatabase


def _fill(db: AppDatabase, n: int = 5) -> None:
    for i in range(n):
        db.audit(
            "sgt.lee",
            "supervisor",
            "read",
            f"/api/officers/demo/{i}",
            "demo",
            str(i),
            {"as_of": "2024-01-01", "shown": [str(i)], "score": 0.5 + i / 10},
        )


def _disable_guards(db: AppDatabase) -> None:
    """What an attacker with the database owner's rights would do first."""
    with db.engine.begin() as c:
        if db.sqlite:
            for t in ("audit_log_no_update", "audit_log_no_delete"):
                c.execute(text(f"DROP TRIGGER {t}"))
        else:
            c.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))


@pytest.fixture
def db(db_url: str) -> Iterator[AppDatabase]:
    d = AppDatabase(db_url)
    _fill(d)
    yield d
    d.dispose()


def test_intact_chain_verifies(db: AppDatabase) -> None:
    v = verify(db)
    assert v.ok and v.entries == 5 and v.head_id == 5 and len(v.head_hash) == 64


def test_the_table_is_append_only(db: AppDatabase) -> None:
    for statement in (
        "UPDATE audit_log SET actor = 'someone' WHERE id = 2",
        "DELETE FROM audit_log WHERE id = 2",
    ):
        with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as c:
            c.execute(text(statement))
    assert verify(db).ok


@pytest.mark.parametrize(
    ("tamper", "bad_id", "words"),
    [
        ("UPDATE audit_log SET actor = 'someone.else' WHERE id = 3", 3, "altered"),
        ("UPDATE audit_log SET detail = '{\"shown\": []}' WHERE id = 2", 2, "altered"),
        ("DELETE FROM audit_log WHERE id = 3", 3, "missing"),
        ("DELETE FROM audit_log WHERE id = 1", 1, "missing"),
    ],
)
def test_tampering_is_caught(db: AppDatabase, tamper: str, bad_id: int, words: str) -> None:
    _disable_guards(db)
    with db.engine.begin() as c:
        c.execute(text(tamper))
    v = verify(db)
    assert not v.ok and v.first_bad_id == bad_id and words in (v.problem or "")


def test_an_inserted_entry_is_caught(db: AppDatabase) -> None:
    with db.engine.begin() as c:
        row = c.execute(text("SELECT * FROM audit_log WHERE id = 5")).mappings().one()
        forged = {**row, "id": 6, "actor": "ghost", "prev_hash": row["entry_hash"]}
        if not db.sqlite:
            forged["detail"] = json.dumps(forged["detail"])
        cols = ", ".join(forged)
        c.execute(text(f"INSERT INTO audit_log ({cols}) VALUES (:{', :'.join(forged)})"), forged)
    v = verify(db)
    assert not v.ok and v.first_bad_id == 6 and "altered" in (v.problem or "")


def test_cli_verify_exit_codes(db: AppDatabase, monkeypatch: pytest.MonkeyPatch) -> None:
    from ews.settings import get_settings

    monkeypatch.setenv("EWS_DATABASE_URL", db.url)
    get_settings.cache_clear()
    try:
        ok = CliRunner().invoke(app, ["audit", "verify"])
        assert ok.exit_code == 0 and "intact: 5 entries" in ok.output
        _disable_guards(db)
        with db.engine.begin() as c:
            c.execute(text("UPDATE audit_log SET action = 'write' WHERE id = 4"))
        bad = CliRunner().invoke(app, ["audit", "verify"])
        assert bad.exit_code == 1 and "BROKEN at entry 4" in bad.output
    finally:
        get_settings.cache_clear()


def test_archive_keeps_the_chain_verifiable(db: AppDatabase, tmp_path: Path) -> None:
    with pytest.raises(Exception, match="no audit entries before"):
        archive(db, dt.date(2000, 1, 1), tmp_path, actor="test")
    manifest = archive(db, dt.date.today() + dt.timedelta(days=1), tmp_path, actor="test")
    assert manifest["entries"] == 5 and manifest["through_id"] == 5
    v = verify(db)  # what stays: the archive's own entry, chained to the archived head
    assert v.ok and v.entries == 1 and v.archived_through == 5
    db.audit("auditor", "reviewer", "read", "/api/audit", "demo")
    assert verify(db).ok and verify(db).entries == 2
    archived = tmp_path / manifest["file"]
    assert verify_archive(archived, db).ok and verify_archive(archived, db).entries == 5
    lines = archived.read_text().splitlines()
    lines[2] = lines[2].replace("sgt.lee", "sgt.lie")
    archived.write_text("\n".join(lines) + "\n")
    assert not verify_archive(archived, db).ok


def test_upgrade_chains_the_entries_and_keeps_the_reviews(db_url: str) -> None:
    """A database of revision 0002 (plain audit rows, old-style reviews) is upgraded with
    its entries chained and its reviews turned into workflow steps."""
    from alembic import command
    from alembic.config import Config

    from ews.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", db_url)
    command.upgrade(cfg, "0002")
    from sqlalchemy import create_engine

    engine = create_engine(db_url)
    with engine.begin() as c:
        for i in range(3):
            c.execute(
                text(
                    "INSERT INTO audit_log (at, actor, role, action, resource, agency, "
                    "officer_id, detail) VALUES (:at, 'sgt', 'supervisor', 'read', '/x', "
                    "'demo', :o, :d)"
                ),
                {"at": dt.datetime(2024, 1, 1, 8, i), "o": str(i), "d": json.dumps({"i": i})},
            )
        c.execute(
            text(
                "INSERT INTO reviews (at, agency, officer_id, as_of_date, reviewer, decision, "
                "intervention, note) VALUES (:at, 'demo', 'a1', :d, 'sgt', 'intervention', "
                "'peer mentoring', 'ok')"
            ),
            {"at": dt.datetime(2024, 1, 2), "d": dt.date(2024, 1, 1)},
        )
    engine.dispose()
    db = AppDatabase(db_url)  # upgrades to head
    try:
        v = verify(db)
        assert v.ok and v.entries == 3
        with db.session() as s:
            from ews.db import FlagStatus, Review

            steps = list(s.query(Review))
            assert [(x.from_status, x.status, x.intervention_type) for x in steps] == [
                ("new", "intervention_assigned", "other")
            ]
            assert "peer mentoring" in steps[0].note
            assert [f.status for f in s.query(FlagStatus)] == ["intervention_assigned"]
    finally:
        db.dispose()


def test_concurrent_writers_keep_one_chain(db: AppDatabase) -> None:
    """Threads of two 'workers' (two AppDatabase objects on one database) append at once,
    group-committed reads beside single-entry writes: one unbroken chain, nothing lost."""
    from concurrent.futures import ThreadPoolExecutor

    from ews.audit import append

    other = AppDatabase(db.url)

    def read(i: int) -> int:
        return (db if i % 2 else other).audit("sgt", "supervisor", "read", f"/r/{i}", "demo")

    def write(i: int) -> int:
        with (db if i % 2 else other).write_conn() as c:
            return append(c, "sgt", "supervisor", "write", f"/w/{i}", "demo")

    try:
        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(lambda i: write(i) if i % 6 == 0 else read(i), range(180)))
    finally:
        other.dispose()
    assert len(set(ids)) == 180
    v = verify(db)
    assert v.ok and v.entries == 185 and v.head_id == 185


def test_a_failed_group_commit_fails_only_its_bad_entry(db: AppDatabase) -> None:
    """One entry the database refuses (here a missing resource, NOT NULL on both databases)
    in a group of good ones: the group is retried entry by entry, the good ones are stored
    and chained, and only the bad one's request sees the error."""
    from concurrent.futures import Future

    from ews.audit import GroupWriter, _entry

    writer = GroupWriter(db)
    try:
        batch: list[tuple[dict[str, object], Future[int]]] = []
        for i in range(6):
            e = _entry("sgt", "supervisor", "read", f"/r/{i}", "demo")
            if i == 3:
                e["resource"] = None
            batch.append((e, Future()))
        writer._commit(batch)
    finally:
        writer.close()
    failed = [i for i, (_, f) in enumerate(batch) if f.exception() is not None]
    assert failed == [3]
    assert [f.result() for i, (_, f) in enumerate(batch) if i != 3] == [6, 7, 8, 9, 10]
    v = verify(db)
    assert v.ok and v.entries == 10


def test_client_values_are_stored_escaped(db: AppDatabase) -> None:
    """NUL, other control characters, lone surrogates, over-long values and non-finite
    numbers from a client are stored (escaped, cut) and the chain verifies."""
    i = db.audit(
        "a\x00b" * 100,
        "none",
        "sign_in_failed",
        "/api/officers/demo/x\x00y\x1b\ud800" + "z" * 600,
        detail={"q\x00": ["v\x07", float("nan")], "client": "1.2.3.4"},
    )
    with db.session() as s:
        from ews.db import AuditLog

        e = s.get(AuditLog, i)
        assert e is not None
        assert e.actor.startswith("a\\x00b") and len(e.actor) == 200
        assert e.resource.startswith("/api/officers/demo/x\\x00y\\x1b\\ud800z")
        assert len(e.resource) == 500
        assert e.detail == {"q\\x00": ["v\\x07", "nan"], "client": "1.2.3.4"}
    assert verify(db).ok


def test_async_reads_commit_their_entries_before_they_are_done(db: AppDatabase) -> None:
    """Entries submitted from the event loop (on SQLite committed by the loop itself, on
    PostgreSQL by the writer thread): each awaited id is stored when the await returns, the
    entries of one turn of the loop share a commit, and the chain verifies."""
    import asyncio

    from sqlalchemy import func, select

    from ews.db import AuditLog

    async def main() -> list[int]:
        async def one(i: int) -> int:
            entry_id = await db.audit_submit_async("sgt", "supervisor", "read", f"/a/{i}", "demo")
            with db.read_conn() as c:  # stored by now, not only queued
                assert c.execute(select(AuditLog.id).where(AuditLog.id == entry_id)).first()
            return entry_id

        return await asyncio.gather(*(one(i) for i in range(40)))

    ids = asyncio.run(main())
    assert sorted(ids) == list(range(6, 46))
    if db.sqlite:
        writer = db._loop_writer
        assert writer is not None and writer.handed_over == 0
        assert writer.batches < 40  # grouped, not one commit per entry
    with db.read_conn() as c:
        assert c.execute(select(func.count()).select_from(AuditLog)).scalar() == 45
    v = verify(db)
    assert v.ok and v.entries == 45


def test_the_loop_hands_a_batch_to_the_thread_while_the_write_lock_is_held(
    db: AppDatabase,
) -> None:
    """SQLite: while another connection holds the write lock, the loop does not wait for it
    (a few milliseconds at most): its batch goes to the writer thread, whose commit waits
    for the lock; the requests' awaits end only once their entries are stored."""
    import asyncio
    import sqlite3
    import time

    if not db.sqlite:
        pytest.skip("the loop commits audit entries itself only on SQLite")
    holder = sqlite3.connect(db.url.split("///", 1)[1], isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def main() -> tuple[list[int], float]:
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, holder.execute, "COMMIT")  # let go of the lock in 0.3 s
        t0 = time.perf_counter()
        tasks = [
            asyncio.ensure_future(
                db.audit_submit_async("sgt", "supervisor", "read", f"/b/{i}", "demo")
            )
            for i in range(5)
        ]
        ticks = 0
        while not all(t.done() for t in tasks):  # the loop keeps turning meanwhile
            ticks += 1
            await asyncio.sleep(0.01)
        assert ticks >= 10
        return [t.result() for t in tasks], time.perf_counter() - t0

    try:
        ids, waited = asyncio.run(main())
    finally:
        holder.close()
    assert sorted(ids) == [6, 7, 8, 9, 10]
    assert waited >= 0.25  # stored only after the lock was let go
    assert db._loop_writer is not None and db._loop_writer.handed_over == 5
    v = verify(db)
    assert v.ok and v.entries == 10


def test_checkpoints_keep_the_write_ahead_log_from_growing_under_readers(
    db: AppDatabase,
) -> None:
    """SQLite, the service's steady state: readers always hold snapshots while the loop
    commits. A passive checkpoint cannot copy back frames newer than the oldest reader's
    snapshot, and the log restarts only after a complete one, so it never did: the log grew
    by gigabytes and slowed every read down (benchmarks/bench_api.py). The loop's
    checkpoint (:meth:`AppDatabase.checkpoint`, every ``checkpoint_every`` commits) waits a
    few milliseconds for such a reader, and the log starts again from its beginning."""
    import asyncio
    import sqlite3
    import threading

    if not db.sqlite:
        pytest.skip("SQLite's write-ahead log")
    path = db.url.split("///", 1)[1]
    wal = Path(path + "-wal")
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    async def commits(tag: str) -> None:
        for turn in range(3):  # three commits of the loop, 5 entries each
            await asyncio.gather(
                *(
                    db.audit_submit_async("sgt", "supervisor", "read", f"/{tag}/{turn}/{i}")
                    for i in range(5)
                )
            )

    sizes, results = [], []
    try:
        for rnd in range(6):
            asyncio.run(commits(f"a{rnd}"))
            reader.execute("BEGIN")  # a reader's snapshot in the middle of the log
            reader.execute("SELECT count(*) FROM audit_log").fetchone()
            asyncio.run(commits(f"b{rnd}"))
            done = threading.Timer(0.01, reader.execute, ("COMMIT",))  # it ends 10 ms later
            done.start()
            results.append(db.checkpoint())
            done.join()
            sizes.append(wal.stat().st_size)
    finally:
        reader.close()
    assert all(r is not None and r[0] == 0 and r[1] == r[2] for r in results), results
    # every round writes the same amount of log: restarted, it stays at one round's size
    assert sizes[-1] == sizes[1], sizes
    v = verify(db)
    assert v.ok and v.entries == 5 + 6 * 30


def _pg_only(db: AppDatabase) -> None:
    if db.sqlite:
        pytest.skip("the event loop's PostgreSQL connection (ews.loop_pg) is PostgreSQL's only")


def test_the_loop_chains_again_when_another_writer_moved_the_head(db: AppDatabase) -> None:
    """PostgreSQL: the loop's batch is stored only on the head it was chained on; entries
    another writer appended meanwhile (the writer thread here, a review or another worker in
    the service) make it chain the batch again under the lock: one chain, in commit order."""
    import asyncio

    _pg_only(db)

    async def batch(tag: str) -> list[int]:
        return list(
            await asyncio.gather(
                *(
                    db.audit_submit_async("sgt", "supervisor", "read", f"/{tag}/{i}")
                    for i in range(3)
                )
            )
        )

    async def main() -> tuple[list[int], list[int], list[int]]:
        first = await batch("a")  # the loop's connection now knows the head: 8
        between = [
            await asyncio.to_thread(db.audit, "lt", "admin", "read", f"/t/{i}") for i in range(2)
        ]
        second = await batch("b")
        await db.aclose()
        return first, between, second

    first, between, second = asyncio.run(main())
    assert first == [6, 7, 8] and between == [9, 10] and second == [11, 12, 13]
    assert db._loop_pg == {}  # closed by aclose
    v = verify(db)
    assert v.ok and v.entries == 13
    resources = [e.resource for e in db.audit_entries()]
    assert resources[5:] == ["/a/0", "/a/1", "/a/2", "/t/0", "/t/1", "/b/0", "/b/1", "/b/2"]


def test_the_loop_sends_reads_and_entries_together_and_escapes_client_values(
    db: AppDatabase,
) -> None:
    """PostgreSQL: the requests of one turn of the loop cost one round on each of the loop's
    connections (their reads shared, their entries in one commit); client values go through
    the batch's JSON escaped as the writer thread stores them."""
    import asyncio

    from api.routes.flags import _VERSION_PG

    _pg_only(db)
    odd = "x\x00y\x1b\ud800z\u2028é"

    async def main() -> tuple[list[object], int, int, int]:
        reader, writer = db.loop_pg("read"), db.loop_pg("audit")
        await db.loop_pg_row(_VERSION_PG, {"agency": "demo"})  # connected, head unknown
        await asyncio.gather(
            db.audit_submit_async("sgt", "supervisor", "read", "/first", "demo")
        )  # the head read under the lock: known from now on
        rounds = reader.rounds, writer.rounds

        async def entry(i: int) -> int:  # (a request: its entry asked for within its task)
            detail = {"q" + odd: [odd, float("nan")], "n": i}
            path = f"/o/{odd}/{i}"
            return await db.audit_submit_async(
                "sgt", "supervisor", "read", path, "demo", None, detail
            )

        answers = await asyncio.gather(
            *(db.loop_pg_row(_VERSION_PG, {"agency": "demo"}) for _ in range(10)),
            *(entry(i) for i in range(10)),
        )
        used = reader.rounds - rounds[0] + writer.rounds - rounds[1]
        batches, moved = writer.batches, writer.head_moved
        await db.aclose()
        return list(answers), used, batches, moved

    answers, used, batches, moved = asyncio.run(main())
    assert answers[:10] == [(None, None)] * 10
    assert answers[10:] == list(range(7, 17))
    assert used == 2 and batches == 2 and moved == 0
    stored = db.audit_entries()[6:]
    assert [e.resource for e in stored] == [
        f"/o/x\\x00y\\x1b\\ud800z\u2028é/{i}" for i in range(10)
    ]
    assert stored[3].detail == {
        "qx\\x00y\\x1b\\ud800z\u2028é": ["x\\x00y\\x1b\\ud800z\u2028é", "nan"],
        "n": 3,
    }
    v = verify(db)
    assert v.ok and v.entries == 16


def test_a_failed_loop_round_goes_to_the_writer_thread(
    db: AppDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a round the database refuses stores nothing; its entries are stored by
    the writer thread, each request's await ending once its entry is; the reads, on the
    loop's other connection, are not held up."""
    import asyncio

    from api.routes.flags import _VERSION_PG
    from ews import loop_pg

    _pg_only(db)
    monkeypatch.setattr(loop_pg, "INSERT_IF_HEAD", "INSERT INTO no_such_table VALUES (%(rows)s)")

    async def main() -> tuple[list[object], int]:
        async def entry(i: int) -> int:
            return await db.audit_submit_async("sgt", "supervisor", "read", f"/f/{i}")

        answers = await asyncio.gather(
            db.loop_pg_row(_VERSION_PG, {"agency": "demo"}), *(entry(i) for i in range(4))
        )
        handed = db.loop_pg("audit").handed_over
        await db.aclose()
        return list(answers), handed

    answers, handed = asyncio.run(main())
    assert answers[0] == (None, None) and sorted(answers[1:]) == [6, 7, 8, 9]  # type: ignore[type-var]
    assert handed == 4
    v = verify(db)
    assert v.ok and v.entries == 9


def test_the_loop_starts_a_new_chain(db_url: str) -> None:
    """PostgreSQL: on a database with no audit entry yet, the loop's first batch is chained
    on the genesis and committed by the loop itself (not handed to the thread)."""
    import asyncio

    fresh = AppDatabase(db_url)
    try:
        _pg_only(fresh)

        async def main() -> tuple[list[int], int, int]:
            ids = await asyncio.gather(
                *(fresh.audit_submit_async("a", "admin", "read", f"/n/{i}") for i in range(3))
            )
            writer = fresh.loop_pg("audit")
            counts = writer.batches, writer.handed_over
            await fresh.aclose()
            return list(ids), *counts

        ids, batches, handed = asyncio.run(main())
        assert ids == [1, 2, 3] and batches == 1 and handed == 0
        v = verify(fresh)
        assert v.ok and v.entries == 3
    finally:
        fresh.dispose()
