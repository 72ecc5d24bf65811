#!/usr/bin/env python
"""Load an agency data package (officers.csv[.gz], events.csv[.gz]) into the
PostgreSQL database `triage_peer` as typed tables `officers` and `events`.

Measuring setup for the peer system triage only (not part of our product).

Usage: python load.py [PACKAGE_DIR] [DATABASE_URL]
Defaults: ../shared/data/triage-peer-10k beside the project, postgresql://postgres@127.0.0.1:5432/triage_peer

Knowledge time (CONTRACT.md): an event is known from its reported_date
(default: event_date when the column is absent or empty); a finding only
from its finding_date.  A view `events_by_entity` exposes officer_id as
`entity_id`, the column name triage's feature builder requires.
"""

import csv
import gzip
import os
import sys
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PKG = os.path.join(HERE, "..", "..", "..", "shared", "data", "triage-peer-10k")
PKG = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PKG
DSN = (
    sys.argv[2]
    if len(sys.argv) > 2
    else os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/triage_peer")
)

# column -> SQL type, for every column the contract defines
OFFICER_COLS = {
    "officer_id": "bigint primary key",
    "appointed_date": "date not null",
    "separation_date": "date",
    "birth_year": "integer",
    "sex": "text",
    "race": "text",
}
EVENT_COLS = {
    "event_id": "text primary key",
    "officer_id": "bigint not null",
    "event_type": "text not null",
    "event_date": "date not null",
    "reported_date": "date",
    "case_id": "text",
    "category": "text",
    "finding": "text",
    "finding_date": "date",
    "outcome": "text",
}


def open_table(name):
    for ext, opener in ((".csv.gz", gzip.open), (".csv", open)):
        path = os.path.join(PKG, name + ext)
        if os.path.exists(path):
            return path, opener
    raise SystemExit(f"no {name}.csv or {name}.csv.gz in {PKG}")


def load(cur, name, cols):
    path, opener = open_table(name)
    with opener(path, "rt", newline="", encoding="utf-8") as f:
        header = next(csv.reader([f.readline()]))
        extra = [h for h in header if h not in cols]
        ddl = [f"{c} {t}" for c, t in cols.items()] + [f'"{c}" text' for c in extra]
        cur.execute(f"drop table if exists {name} cascade")
        cur.execute(f"create table {name} ({', '.join(ddl)})")
        collist = ", ".join(f'"{h}"' for h in header)
        # empty cells (unquoted) become NULL with CSV format defaults
        cur.copy_expert(f"copy {name} ({collist}) from stdin with (format csv)", f)
    cur.execute(f"select count(*) from {name}")
    return path, cur.fetchone()[0]


def main():
    t0 = time.time()
    conn = psycopg2.connect(DSN)
    conn.autocommit = False
    cur = conn.cursor()
    cur.execute("drop view if exists events_by_entity")
    for name, cols in (("officers", OFFICER_COLS), ("events", EVENT_COLS)):
        path, n = load(cur, name, cols)
        print(f"loaded {n} rows into {name} from {path}")
    # knowledge time default: reported_date = event_date when not given
    cur.execute("update events set reported_date = event_date where reported_date is null")
    cur.execute("alter table events alter column reported_date set not null")
    cur.execute(
        "alter table events add constraint events_officer_fk "
        "foreign key (officer_id) references officers (officer_id)"
    )
    cur.execute("create index on events (officer_id)")
    cur.execute("create index on events (reported_date)")
    cur.execute("create index on events (event_type, reported_date)")
    cur.execute("""
        create view events_by_entity as
        select officer_id as entity_id, event_id, event_type, event_date,
               reported_date, finding, finding_date
        from events""")
    conn.commit()
    conn.autocommit = True
    cur.execute("analyze officers")
    cur.execute("analyze events")
    cur.execute(
        "select event_type, coalesce(finding, ''), count(*) from events group by 1, 2 order by 1, 2"
    )
    for row in cur.fetchall():
        print("  ", *row)
    print(f"load done in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
