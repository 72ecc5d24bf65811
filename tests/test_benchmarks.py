"""The benchmarks package: package reading and cutting, the triage-peer experiment through
`ews train` end to end on a small synthetic agency, the Chicago targets and records, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from benchmarks import chicago, common
from benchmarks import triage_peer as tp


@pytest.fixture(scope="module")
def csv_agency(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic agency as a CSV contract package covering 2015-2022 (the
    triage-peer test dates 2019-2022 need labels up to 2022)."""
    from ews.synth import synthesize

    out = tmp_path_factory.mktemp("bench") / "csv-agency"
    synthesize(out, officers=300, years=8, seed=11, start_year=2015, fmt="csv", quiet=True)
    return out


def test_arrow_package_matches_the_contract_normalized_form(
    csv_agency: Path, tmp_path: Path
) -> None:
    from ews.contract import find_table_file, normalize, read_normalized

    common.arrow_package(csv_agency, tmp_path / "pkg")
    got = read_normalized(tmp_path / "pkg")
    for table in ("officers", "events", "assignments"):
        raw = pd.read_csv(find_table_file(csv_agency, table), dtype=str, keep_default_na=False)
        want = normalize(raw, table)
        have = got.table(table)
        assert list(have.columns)[: len(want.columns)] == list(want.columns), table
        for col in want.columns:
            a = have[col].astype(object).where(have[col].notna(), None).tolist()
            b = want[col].astype(object).where(want[col].notna(), None).tolist()
            assert a == b, (table, col)
    # reported_date defaults to event_date where the package leaves it empty
    assert got.events["reported_date"].notna().all()


def test_arrow_package_refuses_a_folder_without_events(tmp_path: Path) -> None:
    from ews.contract import ContractError

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "officers.csv").write_text("officer_id,appointed_date\n1,2000-01-01\n")
    with pytest.raises(ContractError, match="events"):
        common.arrow_package(tmp_path / "src", tmp_path / "out")
    with pytest.raises(common.BenchmarkError, match="not a folder"):
        common.arrow_package(tmp_path / "missing", tmp_path / "out")


def test_triage_peer_runs_through_ews_train(csv_agency: Path, tmp_path: Path) -> None:
    called: list[int] = []
    run = tp.run_triage_peer(
        csv_agency, threads=1, home=tmp_path / "tp", repeat=2, between=called.append
    )
    # timed twice in the same workspace, the baseline's slot between the runs; the figures
    # kept are the slower's (the median of two), each run's time is printed
    assert called == [1]
    assert len(run.train_runs) == 2
    assert run.train_seconds == max(wall for wall, *_ in run.train_runs)
    assert (tmp_path / "tp" / "run-2" / "results.json").is_file()
    assert "the median of 2 runs in the same workspace" in tp.format_triage_peer(run)
    rows = run.models()
    assert sorted({r["test_date"] for r in rows}) == [
        "2019-01-01",
        "2020-01-01",
        "2021-01-01",
        "2022-01-01",
    ]
    assert len(rows) == 16  # 4 test dates x 4 models, none chosen
    assert {r["model"] for r in rows} == {
        "lr[C=0.01]",
        "lr[C=1.0]",
        "rf[max_depth=5,max_samples=0.5,min_samples_leaf=10,n_estimators=200]",
        "rf[max_depth=10,max_samples=0.5,min_samples_leaf=10,n_estimators=200]",
    }
    assert not any(r["selected"] for r in run.records)
    for r in rows:
        for key in ("precision@10%", "recall@10%", "roc_auc"):
            assert 0 <= r[key] <= 1, key
    # what triage also does: every test prediction written, every model registered
    assert run.predictions == sum(r["n"] for r in rows)
    assert run.registered == 16
    results = json.loads((tmp_path / "tp" / "run" / "results.json").read_text())
    versions = {(r["name"], r["version"]) for r in results["registered"]}
    assert len(versions) == 16
    again = json.loads((tmp_path / "tp" / "run-2" / "results.json").read_text())
    assert again["records"] == results["records"]
    assert not versions & {(r["name"], r["version"]) for r in again["registered"]}
    # the splits are triage's own (its timechop, run in benchmarks/triage): every 6 months
    # from 2018 over up to 3 years before the last training date, i.e. 1, 3, 5, 7 dates
    used = {r["test_date"]: r["train_dates_used"] for r in run.records if r["kind"] == "model"}
    half_years = [f"{y}-{m}-01" for y in range(2018, 2022) for m in ("01", "07")]
    assert used == {
        "2019-01-01": half_years[:1],
        "2020-01-01": half_years[:3],
        "2021-01-01": half_years[:5],
        "2022-01-01": half_years[:7],
    }
    assert {"build_features_s", "fit_candidates_s", "register_s", "total_s"} <= set(run.steps)
    assert set(run.cpu_steps) == set(run.steps) and run.train_cpu_seconds > 0
    assert run.train_seconds > run.steps["total_s"] > 0
    text = tp.format_triage_peer(run)
    assert "mean" in text and "89.7" in text and "0.705" in text
    # which learners each side fitted, read from the two configs: the difference is printed
    assert (
        "learners: ews logistic_regression (C 0.01/1.0); random_forest (max_depth 5/10, "
        "max_samples 0.5, min_samples_leaf 10, n_estimators 200)"
    ) in text
    assert (
        "triage LogisticRegression (C 0.01/1, penalty l2, solver lbfgs); "
        "RandomForestClassifier (max_depth 5/10, min_samples_leaf 10, n_estimators 200)"
    ) in text
    assert len(run.means()) == 4
    json.dumps(run.as_dict())  # JSON-ready


def _record(label: str, method: str, selected: bool, auc: float, more: float, fewer: float):
    return {
        "test_date": "2013-01-01",
        "label": label,
        "method": method,
        "kind": "model",
        "selected": selected,
        "flagged": 10,
        "tp": 5,
        "fp": 5,
        "precision": 0.5,
        "recall": 0.1,
        "auc": auc,
        "ap": 0.3,
        "vs_rules": {
            "cmpd": {
                "flagged": 20,
                "rule_tp": 10,
                "rule_fp": 10,
                "extra_tp": 4,
                "fewer_fp": 4,
                "pct_more_tp": more,
                "pct_fewer_fp": fewer,
                "ci95_pct_more_tp": [1.0, 2.0],
                "ci95_pct_fewer_fp": [1.0, 2.0],
            }
        },
    }


def test_targets_read_the_selected_model_averaged_over_test_dates() -> None:
    recs = [
        _record("sustained_or_force", "lr", True, 0.80, 30.0, 70.0),
        _record("sustained_or_force", "lr", True, 0.84, 50.0, 60.0),
        _record("sustained_or_force", "rf", False, 0.99, 99.0, 99.0),  # not selected
    ]
    auc = chicago.Target("sustained_or_force", "auc", 0.81)
    assert auc.value(recs) == pytest.approx(0.82)
    assert chicago.Target("sustained_or_force", "vs_rules.cmpd.pct_more_tp", 35).value(
        recs
    ) == pytest.approx(40.0)
    assert chicago.Target("sustained", "auc", 0.67).value(recs) is None
    assert "ROC AUC >= 0.81" in auc.describe()
    out = chicago.benchmark_records(recs)
    assert set(out[0]) == {*chicago.RECORD_KEYS, "vs_rules"}
    assert set(out[0]["vs_rules"]["cmpd"]) == set(chicago.VS_RULE_KEYS)
    assert "ap" not in out[0]


def test_cli_lists_both_benchmarks(csv_agency: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ews.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["benchmark", "--help"])
    assert res.exit_code == 0, res.output
    assert "triage-peer" in res.output and "chicago" in res.output and "train" in res.output
    res = runner.invoke(app, ["benchmark", "train", "--help"])
    assert res.exit_code == 0 and "--officers" in res.output and "baseline" in res.output
    res = runner.invoke(app, ["benchmark", "train", "--test-years", "0"])
    assert res.exit_code != 0
    res = runner.invoke(app, ["benchmark", "triage-peer", "--data", str(tmp_path / "none")])
    assert res.exit_code != 0


def test_the_triage_peer_command_times_triage_between_the_ews_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --repeat 3, triage's two profiles are timed between the three ews runs (test
    predictions only after the first, the README profile after the second), and the report
    and JSON judge the median run. The runs themselves are stood in for here (the real ones:
    test_triage_peer_runs_through_ews_train), the order of what the command runs is not."""
    import sys

    from typer.testing import CliRunner

    from ews.cli import app

    order: list[str] = []

    def run_ews(data: Path, **kw: object) -> tp.TriagePeerRun:
        between = kw["between"]
        assert kw["repeat"] == 3 and callable(between)
        runs = []
        for i, wall in enumerate([12.0, 15.0, 10.0], start=1):
            order.append(f"ews {i}")
            runs.append((wall, 20.0, (1.0, 1.0, 1.0), (1.1, 1.0, 1.0)))
            if i < 3:
                between(i)
        record = {
            "kind": "model",
            "test_date": "2019-01-01",
            "method": "lr",
            "n_test": 10,
            "auc": 0.74,
            "metrics": {"precision@10%": 0.7, "recall@10%": 0.3},
        }
        return tp.TriagePeerRun(
            ingest_seconds=1.0,
            store_seconds=1.0,
            train_seconds=12.0,
            train_cpu_seconds=20.0,
            steps={},
            cpu_steps={},
            records=[record],
            predictions=1,
            registered=16,
            threads=2,
            load_before=(1.0, 1.0, 1.0),
            train_runs=runs,
        )

    def run_triage(python: Path, *, replace: bool, database: str) -> tp.TriageRun:
        order.append("triage readme" if replace else "triage test-only")
        return tp.TriageRun(
            replace=replace, seconds=130.0 if replace else 62.0, precision={}, phases=""
        )

    monkeypatch.setattr(tp, "run_triage_peer", run_ews)
    monkeypatch.setattr(tp, "run_triage", run_triage)
    (tmp_path / "data").mkdir()
    res = CliRunner().invoke(
        app,
        [
            "benchmark",
            "triage-peer",
            "--data",
            str(tmp_path / "data"),
            "--triage-python",
            sys.executable,
            "--repeat",
            "3",
            "--json",
            str(tmp_path / "f.json"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert order == ["ews 1", "triage test-only", "ews 2", "triage readme", "ews 3"]
    assert "the median of 3 runs in the same workspace" in res.output
    assert "12.0 s (CPU 20.0 s" in res.output and "10.0 s (CPU 20.0 s" in res.output
    assert "130.0 s / 12.0 s = 10.8x -> met" in res.output
    assert "62.0 s / 12.0 s = 5.2x -> met" in res.output
    figures = json.loads((tmp_path / "f.json").read_text())
    assert [r["seconds"] for r in figures["ews_train_runs"]] == [12.0, 15.0, 10.0]
    assert [t["met"] for t in figures["targets"]] == [True, True]


def test_the_library_holds_no_benchmark() -> None:
    import models

    folder = Path(models.__file__).parent
    assert not (folder / "benchmarks.py").exists()
    for path in folder.glob("*.py"):
        text = path.read_text()
        assert "TRIAGE" not in text and "CHICAGO_TARGETS" not in text, path.name


def test_cut_package_keeps_only_what_was_known_and_features_agree(
    csv_agency: Path, tmp_path: Path
) -> None:
    from datetime import date

    from ews.contract import read_normalized
    from features.build import build_features

    full = common.arrow_package(csv_agency, tmp_path / "full")
    t = date(2019, 7, 1)
    cut = common.cut_package(full, tmp_path / "cut", t)
    pkg = read_normalized(cut)
    ts = pd.Timestamp(t)
    assert (pkg.events["reported_date"] < ts).all()
    assert (pkg.events["finding_date"].dropna() < ts).all()
    assert pkg.events.loc[pkg.events["finding_date"].isna(), "finding"].isna().all()
    assert (pkg.officers["appointed_date"] < ts).all()
    assert (pkg.officers["separation_date"].dropna() < ts).all()
    assert (pkg.assignments["start_date"] < ts).all()
    assert (pkg.assignments["end_date"].dropna() < ts).all()
    # the knowledge-time rule: features at t are the same on the cut package
    a = build_features(full, [t]).sort_values("officer_id").reset_index(drop=True)
    b = build_features(cut, [t]).sort_values("officer_id").reset_index(drop=True)
    assert len(a) > 100
    pd.testing.assert_frame_equal(a, b)


def test_bench_features_scale_runs_the_cli_and_measures_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bench_features.py --officers N`: the agency made once by `ews synth`, the table built
    by `ews features build` in a watched process (time, CPU, peak RSS), a growth table."""
    import argparse

    from benchmarks import bench_features as bf

    args = argparse.Namespace(
        officers=[150, 300],
        engine="duckdb",
        data=str(tmp_path),
        memory_limit="1GB",
        dates_per_batch=None,
        min_free_gib=0.5,
        spark_driver_memory="1g",
        threads=1,
    )
    rows = bf.scale(args)
    out = capsys.readouterr().out
    assert [(r.officers, r.engine, r.w.code) for r in rows] == [
        (150, "duckdb", 0),
        (300, "duckdb", 0),
    ]
    for r in rows:
        assert r.rows > 0 and r.cols == 127 and r.w.wall > 0 and r.w.cpu > 0
        assert 0.05 < r.w.rss < 4 and r.w.tree > 0 and not r.w.killed
    assert "[300] ews features build, DuckDB:" in out and "peak RSS" in out
    assert "[growth]" in out and "x wall" in out
    # the agencies are reused, and a second build replaces the table
    again = bf.scale(argparse.Namespace(**{**vars(args), "officers": [150]}))
    assert "generated before" in capsys.readouterr().out and again[0].w.code == 0
    # a slice: the first officers of a bigger agency
    sliced = bf.scale(
        argparse.Namespace(**{**vars(args), "officers": [100], "slice_of": tmp_path / "synth300"})
    )
    assert "the first 100 officers of" in capsys.readouterr().out
    assert sliced[0].w.code == 0 and (tmp_path / "featuresslice100_duckdb.parquet").is_file()
    # two tables compare equal to themselves, and a changed value is caught
    table = tmp_path / "features150_duckdb.parquet"
    cells, differ = bf.compare_tables(table, table)
    assert cells > 0 and differ == 0
    df = pd.read_parquet(table)
    df.loc[0, "complaint_career_count"] += 1
    df.to_parquet(tmp_path / "changed.parquet", index=False)
    with pytest.raises(AssertionError, match="complaint_career_count"):
        bf.compare_tables(table, tmp_path / "changed.parquet")


def test_triage_runs_are_read_and_reported_beside_ews() -> None:
    """The same-run comparison: triage's printed summary is parsed into precision per model
    and its time is set against the ews run's, with and without training predictions."""
    out = "\n".join(
        [
            "WALL_SECONDS 120.5 (python exit 0)",
            " mg | model | hyperparameters | test_dates | precision_at_10pct | recall | auc",
            '  1 | LogisticRegression     | {"C": 0.01}     |          4 |   0.7045 | 0.27 | 0.74',
            '  3 | RandomForestClassifier | {"max_depth": 5} |          4 |   0.7028 | 0.27 | 0.74',
        ]
    )
    precision = tp._triage_precision(out)
    assert precision == {
        'LogisticRegression {"C": 0.01}': 0.7045,
        'RandomForestClassifier {"max_depth": 5}': 0.7028,
    }
    run = tp.TriagePeerRun(
        ingest_seconds=1.0,
        store_seconds=1.0,
        train_seconds=20.0,
        train_cpu_seconds=30.0,
        steps={"fit_candidates_s": 10.0},
        cpu_steps={"fit_candidates_s": 18.0},
        records=[
            {"kind": "model", "test_date": d, "method": "lr", "n_test": 5, "auc": 0.7, "metrics": m}
            for d, m in [
                ("2019-01-01", {"precision@10%": 0.69}),
                ("2020-01-01", {"precision@10%": 0.71}),
            ]
        ],
        predictions=10,
        registered=16,
        threads=2,
        load_before=(0.1, 0.2, 0.3),
    )
    triage = [
        tp.TriageRun(replace=False, seconds=100.0, precision=precision, phases="PHASES x=1s"),
        tp.TriageRun(replace=True, seconds=150.0, precision=precision, phases=""),
    ]
    run.load_after = (0.4, 0.5, 0.6)
    triage[0].load_before, triage[0].load_after = (1.5, 1.0, 0.5), (2.0, 1.2, 0.6)
    text = tp.format_triage_peer(run, triage)
    assert "ews train, end to end from the command line:   20.0 s; load average 0.1, 0.2, " in text
    assert "0.3 before, 0.4, 0.5, 0.6 after" in text
    assert "test predictions only:  100.0 s; load average 1.5, 1, 0.5 before, 2, 1.2, 0.6" in text
    assert "README profile (training-set predictions too):  150.0 s; load average ?" in text
    assert (
        "baseline (this run): triage 6.0.0 README profile (training-set predictions too) 150.0"
        in text
    )
    assert "threads: ews EWS_THREADS=2, triage's forests n_jobs=1" in text
    # the targets are judged on the measured figures: 150/20 = 7.5x misses 10x, 100/20 = 5x
    # meets 5x
    assert (
        "at least 10x faster than triage's README profile (training-set predictions too): "
        "150.0 s / 20.0 s = 7.5x -> NOT MET" in text
    )
    assert (
        "at least 5x faster than triage's test predictions only: 100.0 s / 20.0 s = 5.0x "
        "-> met" in text
    )
    assert [(t.ratio, t.met) for t in tp.speed_targets(run, triage)] == [(7.5, False), (5.0, True)]
    run.train_seconds = 14.0
    assert all(t.met for t in tp.speed_targets(run, triage))
    assert "RandomForestClassifier" in text and "0.703" in text
    assert "accuracy: ews precision@10% 0.700-0.700 over its 1 models (best 0.700, -0.005 " in text
    assert "triage in this run 0.703-0.705 (best 0.705)" in text
    # without triage in the run no target is judged
    alone = tp.format_triage_peer(run)
    assert "target:" not in alone and "not timed in this run" in alone


def test_triage_peer_refuses_repeated_runs_whose_records_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runs of one benchmark must agree on every figure but time: a second run with
    other records stops the benchmark (no median is taken over different experiments). The
    commands are replaced here by a stand-in that writes what ``ews train`` writes, its
    records differing from the second run on."""
    trains: list[Path] = []

    def ews(*args: str, env: dict[str, str]) -> tuple[float, float]:
        if args[0] == "train":
            out = Path(args[args.index("--out") + 1])
            out.mkdir(parents=True)
            trains.append(out)
            records = [{"kind": "model", "auc": 0.7 + len(trains) / 100}]
            (out / "results.json").write_text(json.dumps({"records": records, "registered": []}))
            pd.DataFrame({"score": [0.5]}).to_parquet(out / "predictions.parquet")
        return 1.0, 1.0

    monkeypatch.setattr(tp, "_ews", ews)
    monkeypatch.setattr(tp, "_python", lambda *args, env: (0.1, 0.1))
    (tmp_path / "data").mkdir()
    with pytest.raises(common.BenchmarkError, match="run 2 of 3 gave other records than run 1"):
        tp.run_triage_peer(tmp_path / "data", home=tmp_path / "a", repeat=3)
    assert [p.name for p in trains] == ["run", "run-2"]
    with pytest.raises(common.BenchmarkError, match="at least one run"):
        tp.run_triage_peer(tmp_path / "data", home=tmp_path / "b", repeat=0)


def test_triage_forest_jobs_come_from_its_grid(tmp_path: Path) -> None:
    """The thread count printed for triage is its grid's n_jobs, else scikit-learn's one."""
    assert tp.triage_forest_jobs() == 1  # the shipped experiment sets none
    grid = "grid_config:\n  'sklearn.ensemble.RandomForestClassifier':\n    n_jobs: [%s]\n"
    (tmp_path / "a.yaml").write_text(grid % "2")
    assert tp.triage_forest_jobs(tmp_path / "a.yaml") == 2
    (tmp_path / "b.yaml").write_text(grid % "null")
    assert tp.triage_forest_jobs(tmp_path / "b.yaml") == 1


@pytest.mark.slow
def test_bench_train_times_ews_train_against_its_same_run_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bench_train.py` on a tiny agency: `ews synth`, `ews ingest`, `ews train` as a user runs
    it, then the baseline (one thread, no fit cache): both timed with their steps and the load
    average, and the two runs' figures compared."""
    from benchmarks import bench_train

    runs = bench_train.run(
        officers=120,
        test_years=1,
        inner=1,
        labels=["sustained_or_force"],
        threads=2,
        data=tmp_path,
        n_boot=20,
    )
    out = capsys.readouterr().out
    assert [(r.name, r.threads, r.cache) for r in runs] == [
        ("ews train", 2, True),
        ("baseline", 1, False),
    ]
    for r in runs:
        assert r.seconds > 0 and r.cpu_seconds > 0 and len(r.load_before) == 3
        assert {"fit_candidates_s", "select_s", "refit_s", "total_s"} <= set(r.steps)
        assert any(rec["kind"] == "model" and rec["selected"] for rec in r.records)
    assert runs[0].records == runs[1].records
    assert "records (every accuracy figure) identical" in out
    assert "load average before" in out and "steps, wall s: check config" in out
    # the agency is kept and reused
    bench_train.run(
        officers=120,
        test_years=1,
        inner=0,
        labels=["sustained_or_force"],
        data=tmp_path,
        baseline=False,
        n_boot=0,
    )
    assert "generated before" in capsys.readouterr().out
