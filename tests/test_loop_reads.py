"""The reads an async request makes on the event loop (api.routes.flags.cached_read): the
agency's data version on the loop's own connection, and on PostgreSQL one query shared by
the requests that asked before it was sent. Each must see every commit made before it was
asked (a cache keyed on that version is never stale)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from api.routes.flags import _VERSION_PG, loop_data_version
from ews.db import AppDatabase, ScoringRun, ensure_agency


@pytest.fixture
def db(db_url: str) -> Iterator[AppDatabase]:
    d = AppDatabase(db_url)
    yield d
    d.dispose()


async def _version(db: AppDatabase, agency: str) -> tuple[int | None, int | None] | None:
    if db.sqlite:
        return loop_data_version(db, agency)
    row = await db.loop_pg_row(_VERSION_PG, {"agency": agency})
    return None if row is None else (row[0], row[1])


def _add_run(db: AppDatabase, agency: str) -> int:
    import datetime as dt

    with db.write() as s:
        ensure_agency(s, agency)
        run = ScoringRun(
            agency=agency, as_of_date=dt.date(2020, 1, 1), current=False, officers=0, flagged=0
        )
        s.add(run)
        s.flush()
        return int(run.id)


def test_the_loop_reads_see_every_commit_made_before_they_ask(db: AppDatabase) -> None:
    async def main() -> None:
        assert await _version(db, "demo") == (None, None)
        first = await asyncio.to_thread(_add_run, db, "demo")
        # many requests at once: one answer, with the commit made before they asked
        answers = await asyncio.gather(*(_version(db, "demo") for _ in range(30)))
        assert answers == [(first, None)] * 30
        second = await asyncio.to_thread(_add_run, db, "demo")
        assert await _version(db, "demo") == (second, None)
        assert await _version(db, "other") == (None, None)
        await db.aclose()

    asyncio.run(main())


def test_a_cancelled_caller_does_not_cancel_the_others(db: AppDatabase) -> None:
    if db.sqlite:
        pytest.skip("SQLite's loop read is synchronous")

    async def main() -> None:
        run = await asyncio.to_thread(_add_run, db, "demo")
        tasks = [asyncio.ensure_future(_version(db, "demo")) for _ in range(5)]
        await asyncio.sleep(0)
        tasks[0].cancel()
        rest = await asyncio.gather(*tasks[1:])
        assert rest == [(run, None)] * 4
        assert await _version(db, "demo") == (run, None)  # the next query is sent anew
        await db.aclose()

    asyncio.run(main())
