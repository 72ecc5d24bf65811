"""Ingest: content-addressed, immutable snapshots; crash safety; several agencies; status."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ews_testdata import tree_digest, valid_tables, write_package
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from ews.cli import app
from ews.contract import COLUMNS, normalize
from ews.db import open_app_database
from ews.ingest import TMP_DIR, agency_name, default_agency, ingest_package
from ews.store import Workspace

runner = CliRunner()
JOURNAL = ("app.db",)  # the application database (ingest journal)
ROOT = Path(__file__).resolve().parents[1]


def _ingest(*args: str) -> str:
    result = runner.invoke(app, ["ingest", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def _canonical(df: pd.DataFrame, name: str) -> pd.DataFrame:
    keys = {"officers": ["officer_id"], "events": ["event_id"]}.get(name, list(COLUMNS[name]))
    return df.sort_values(keys, na_position="first", kind="stable").reset_index(drop=True)


def _expected(tables: dict[str, dict[str, list[str | None]]], name: str) -> pd.DataFrame:
    """What a snapshot must hold for a table: contract.normalize of the raw strings (rows
    compared in the canonical order)."""
    return _canonical(normalize(pd.DataFrame(tables[name], dtype="string"), name), name)


def test_ingest_stores_snapshot_and_reads_back(ews_home: Path, tmp_path: Path) -> None:
    tables = valid_tables()
    tables["events"]["beat"] = ["11", None, "13", "14", "15", "16"]
    out = _ingest(str(write_package(tmp_path / "Springfield PD", tables)))
    snap = Workspace().snapshot()
    assert snap.agency == "springfield_pd"
    assert f"stored snapshot {snap.id} of agency springfield_pd" in out
    m = snap.manifest
    assert m["id"] == snap.id == m["content_sha256"][:12]
    assert m["rows"] == {"officers": 4, "events": 6, "assignments": 3}
    assert m["events_by_type"] == {
        "arrest": 1, "commendation": 1, "complaint": 3, "use_of_force": 1,
    }  # fmt: skip
    assert m["coverage"]["event_date"] == {"min": "2015-01-10", "max": "2019-05-14"}
    assert m["coverage"]["reported_date"] == {"min": "2015-01-12", "max": "2019-05-14"}
    assert m["source"]["format"] == "contract"
    journal = open_app_database().ingests("springfield_pd")
    assert [(j.snapshot_id, j.new_snapshot, j.rows) for j in journal] == [
        (snap.id, True, m["rows"])
    ]
    pkg = snap.read()
    for name in ("officers", "events", "assignments"):
        got = _canonical(pkg.table(name), name)
        pd.testing.assert_frame_equal(got, _expected(tables, name))


def test_same_content_same_id_whatever_the_form(ews_home: Path, tmp_path: Path) -> None:
    tables = valid_tables()
    _ingest(str(write_package(tmp_path / "a", tables)), "--agency", "metro")
    first = Workspace().snapshot("metro")
    before = tree_digest(ews_home)

    shuffled = {
        name: {c: list(reversed(v)) for c, v in cols.items()} for name, cols in tables.items()
    }
    # extra columns in another order, and a column order change, are the same content too
    variants = {
        "parquet": write_package(tmp_path / "b", tables, fmt="parquet"),
        "gzip": write_package(tmp_path / "c", tables, fmt="csv.gz"),
        "shuffled": write_package(tmp_path / "d", shuffled),
    }
    cols = tables["officers"]
    variants["columns"] = write_package(
        tmp_path / "e", {**tables, "officers": dict(reversed(list(cols.items())))}
    )
    for label, pkg in variants.items():
        out = _ingest(str(pkg), "--agency", "metro")
        assert f"nothing new: identical content is already snapshot {first.id}" in out, label
        assert tree_digest(ews_home) == before, label
    assert len(Workspace().snapshots("metro")) == 1

    changed = valid_tables()
    changed["events"]["category"][1] = "ARREST"
    _ingest(str(write_package(tmp_path / "f", changed)), "--agency", "metro")
    snaps = Workspace().snapshots("metro")
    assert len(snaps) == 2 and snaps[0].id == first.id
    assert Workspace().snapshot("metro").id == snaps[1].id != first.id
    # the old content again: nothing new, and the answer says it is not the current one
    out = _ingest(str(variants["parquet"]), "--agency", "metro")
    assert f"already snapshot {first.id}" in out
    assert f"the current snapshot is {snaps[1].id}" in out
    assert len(Workspace().snapshots("metro")) == 2


def test_two_agencies_in_one_store(ews_home: Path, tmp_path: Path) -> None:
    a = valid_tables()
    b = valid_tables()
    b["events"]["event_type"][1] = "traffic_stop"
    _ingest(str(write_package(tmp_path / "north", a)))
    _ingest(str(write_package(tmp_path / "south", b)))
    ws = Workspace()
    assert ws.agencies() == ["north", "south"]
    assert ws.snapshot("north").id != ws.snapshot("south").id
    # same officer ids live in both agencies, each unique within its own
    assert sorted(ws.snapshot("south").read().officers["officer_id"]) == ["o1", "o2", "o3", "o4"]
    status = runner.invoke(app, ["status", "--json"])
    assert status.exit_code == 0, status.output
    data = json.loads(status.stdout)
    assert set(data["agencies"]) == {"north", "south"}
    assert data["agencies"]["south"][0]["events_by_type"]["traffic_stop"] == 1
    table = runner.invoke(app, ["status"])
    assert table.exit_code == 0 and "north" in table.stdout and "traffic_stop" in table.stdout


def test_status_of_empty_workspace(ews_home: Path) -> None:
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 0
    assert "holds no data yet" in result.stdout


@pytest.mark.parametrize("bad", ["Chicago PD", "../escape", "a/b", "", "9lives", "x" * 65])
def test_agency_names_must_be_safe(bad: str, ews_home: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        agency_name(bad)
    pkg = write_package(tmp_path / "ok", valid_tables())
    result = runner.invoke(app, ["ingest", str(pkg), "--agency", bad])
    assert result.exit_code == 1
    assert "not allowed" in result.output
    assert tree_digest(ews_home) == tree_digest(tmp_path / "no-such-home")


def test_default_agency_from_folder_name(tmp_path: Path) -> None:
    assert default_agency(tmp_path / "Chicago-CPDP 2018") == "chicago_cpdp_2018"
    assert default_agency(tmp_path / "2018 data") == "agency_2018_data"


def test_leftover_temp_folder_is_invisible_and_cleaned(ews_home: Path, tmp_path: Path) -> None:
    pkg = write_package(tmp_path / "pd", valid_tables())
    _ingest(str(pkg))
    visible = [s.path for s in Workspace().snapshots("pd")]
    # what a killed ingest leaves: a half-written folder under the workspace's temp area
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True).stdout.strip()  # fmt: skip
    leftover = ews_home / TMP_DIR / f"ingest-{dead}-deadbeef"
    leftover.mkdir(parents=True)
    (leftover / "events.parquet").write_bytes(b"half a file")
    assert [s.path for s in Workspace().snapshots("pd")] == visible
    assert Workspace().agencies() == ["pd"]
    before = tree_digest(ews_home)
    other = valid_tables()
    other["events"]["outcome"][2] = "counseling"
    _ingest(str(write_package(tmp_path / "pd2", other)), "--agency", "pd")
    assert not leftover.exists()
    assert tree_digest(ews_home) != before


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["complaint", "arrest", "use_of_force", "k9_bite"]),
            st.integers(0, 3000),
            st.integers(0, 40),
            st.sampled_from([None, "sustained", "pending", "unfounded"]),
            st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=8),
        ),
        min_size=0,
        max_size=25,
    ),
    as_parquet=st.booleans(),
)
def test_round_trip(rows: list, as_parquet: bool, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Generated package -> files -> ingest -> Workspace.snapshot().read() gives its rows."""
    base = pd.Timestamp("2010-01-01")
    day = pd.Timedelta(days=1)
    officers = {
        "officer_id": ["a", "b", "c"],
        "appointed_date": ["2000-01-01", "2005-05-05", "2009-12-31"],
    }
    events: dict[str, list[str | None]] = {c: [] for c in
                                           ["event_id", "officer_id", "event_type", "event_date",
                                            "reported_date", "finding", "finding_date",
                                            "category"]}  # fmt: skip
    for i, (etype, offset, delay, finding, text) in enumerate(rows):
        d = base + offset * day
        events["event_id"].append(f"ev{i:03d}")
        events["officer_id"].append("abc"[i % 3])
        events["event_type"].append(etype)
        events["event_date"].append(d.strftime("%Y-%m-%d"))
        events["reported_date"].append((d + delay * day).strftime("%Y-%m-%d") if delay else None)
        events["finding"].append(finding)
        fd = d + (delay + 30) * day
        events["finding_date"].append(fd.strftime("%Y-%m-%d") if finding != "pending" and
                                      finding else None)  # fmt: skip
        events["category"].append(text or None)
    tables = {"officers": officers, "events": events}
    tmp = tmp_path_factory.mktemp("rt")
    home = tmp / "home"
    pkg = write_package(tmp / "pkg", tables, fmt="parquet" if as_parquet else "csv")
    result = ingest_package(pkg, "rt", workspace=Workspace(home))
    assert result.created
    got = Workspace(home).snapshot().read()
    pd.testing.assert_frame_equal(_canonical(got.events, "events"), _expected(tables, "events"))
    pd.testing.assert_frame_equal(
        _canonical(got.officers, "officers"), _expected(tables, "officers")
    )
    assert len(got.assignments) == 0


def _big_package(folder: Path, n_events: int) -> Path:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_ingest import make_package

    return make_package(folder, n_events, n_officers=5000, seed=3)


@pytest.mark.slow
def test_ingest_killed_at_any_moment_leaves_store_as_before(ews_home: Path, tmp_path: Path) -> None:
    small = write_package(tmp_path / "first", valid_tables())
    ingest_package(small, "big", workspace=Workspace(ews_home))
    visible = [(s.id, s.path) for s in Workspace(ews_home).snapshots("big")]
    # the successful CLI ingest below journals itself in the application database; the
    # analytical store (every other file) must end exactly as before
    before = tree_digest(ews_home, JOURNAL)
    pkg = _big_package(tmp_path / "bigpkg", 600_000)
    env = {**os.environ, "EWS_HOME": str(ews_home)}
    cmd = [sys.executable, "-m", "ews.cli", "ingest", str(pkg), "--agency", "big"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    new_id = Workspace(ews_home).snapshot("big").id
    shutil.rmtree(ews_home / "snapshots" / "big" / new_id)
    assert tree_digest(ews_home, JOURNAL) == before

    def temp_files() -> list[Path]:
        return [f for f in (ews_home / TMP_DIR).glob("ingest-*/*") if f.is_file()]

    # kill points: during start-up and reading, as soon as the snapshot's temporary folder
    # holds a file, once events.parquet has bytes, once the manifest is written (just
    # before the rename)
    moments = {
        "reading": lambda: False,
        "first file": lambda: bool(temp_files()),
        "events half written": lambda: any(
            f.name == "events.parquet" and f.stat().st_size > 0 for f in temp_files()
        ),
        "manifest written": lambda: any(f.name == "manifest.json" for f in temp_files()),
    }
    killed: list[str] = []
    for label, reached in moments.items():
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + (0.5 if label == "reading" else 60)
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if reached():
                    break
            except FileNotFoundError:  # a temp file vanished while we looked
                pass
            time.sleep(0.002)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed.append(label)
        proc.wait()
        snaps = [(s.id, s.path) for s in Workspace(ews_home).snapshots("big")]
        if snaps == visible:  # killed before the rename: nothing of it is visible
            assert proc.returncode == -signal.SIGKILL, label
            assert Workspace(ews_home).snapshot("big").read().events.shape[0] == 6
        else:  # the rename happened before the kill landed: one complete snapshot more
            assert {s for s, _ in snaps} == {visible[0][0], new_id}, label
            assert len(Workspace(ews_home).snapshot("big", new_id).read().events) == 600_000
            shutil.rmtree(ews_home / "snapshots" / "big" / new_id)
    print("killed at:", killed)
    assert len(killed) >= 3 and "events half written" in killed, killed
    # the next ingest removes what the killed ones left behind; the store is as before
    ingest_package(small, "big", workspace=Workspace(ews_home))
    assert tree_digest(ews_home, JOURNAL) == before
    assert not any((ews_home / TMP_DIR).iterdir())


def test_refused_package_stores_nothing_even_first_time(ews_home: Path, tmp_path: Path) -> None:
    tables = valid_tables()
    tables["events"]["finding"][4] = "sustained"
    result = runner.invoke(app, ["ingest", str(write_package(tmp_path / "bad", tables))])
    assert result.exit_code == 2
    assert "events.csv row 5, finding_date: required when finding is 'sustained'" in result.stdout
    assert not ews_home.exists() or tree_digest(ews_home) == tree_digest(tmp_path / "none")


def test_typed_parquet_and_csv_give_same_id(ews_home: Path, tmp_path: Path) -> None:
    """A Parquet package with date32/int32 columns is the same content as its CSV."""
    tables = valid_tables()
    r1 = ingest_package(write_package(tmp_path / "csv", tables), "typed")
    folder = tmp_path / "typed"
    folder.mkdir()
    for name, t in r1.validation.tables.items():
        pq.write_table(t, folder / f"{name}.parquet")
    assert pq.read_schema(folder / "officers.parquet").field("birth_year").type == pa.int32()
    r2 = ingest_package(folder, "typed")
    assert not r2.created and r2.snapshot.id == r1.snapshot.id


def test_content_digest_ignores_chunking_and_row_order(tmp_path: Path) -> None:
    from ews.ingest import content_digest
    from ews.validate import validate_package

    v = validate_package(write_package(tmp_path / "p", valid_tables()))
    base = content_digest(v.tables, v.orders)
    assert set(v.sorted_keys) == {"officers", "events"}
    assert content_digest(v.tables, v.orders, v.sorted_keys) == base
    # the same rows cut into chunks of 1 and 2 rows
    rechunked = {
        name: pa.Table.from_batches(t.to_batches(max_chunksize=size)) if t.num_rows else t
        for (name, t), size in zip(v.tables.items(), (1, 2, 1), strict=True)
    }
    assert any(t.column(0).num_chunks > 1 for t in rechunked.values())
    assert content_digest(rechunked, v.orders) == base
    # a value where there was none changes it
    changed = v.tables["events"].to_pydict()
    changed["outcome"][1] = "reprimand"
    other = {**v.tables, "events": pa.table(changed, schema=v.tables["events"].schema)}
    assert content_digest(other, v.orders) != base
