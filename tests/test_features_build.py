"""DuckDB features, cohorts and labels equal the pandas reference on generated packages;
knowledge-time truncation changes nothing; longer windows never count fewer events."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from features_reference import (  # noqa: I001
    ANCHORS,
    DATE_POOL,
    TEST_SPEC,
    assert_frames_equal,
    make_package,
    random_package,
    read,
    ref_cohort,
    ref_features,
    ref_labels,
    truncate,
    write_package,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import build_features
from features.cohort import CohortSpec, build_cohort
from features.labels import LABEL_PRESETS, LabelSpec, build_label_sets, build_labels
from features.spec import default_spec, spec_from_dict

SPEC = spec_from_dict(TEST_SPEC)
pytestmark = pytest.mark.filterwarnings("ignore:fetch_arrow_table:DeprecationWarning")
SETTINGS = settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def packages(draw: st.DrawFn) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return make_package(
        lambda seq: draw(st.sampled_from(list(seq))), lambda a, b: draw(st.integers(a, b))
    )


as_of_lists = st.lists(st.sampled_from(ANCHORS + DATE_POOL[::7]), min_size=1, max_size=3)


@SETTINGS
@given(
    tables=packages(),
    dates=as_of_lists,
    require=st.sampled_from([None, "rank"]),
    per=st.sampled_from([None, 1]),
)
def test_duckdb_features_equal_the_reference(tables, dates, require, per) -> None:
    cohort = CohortSpec(require_assignment=require) if require else None
    with tempfile.TemporaryDirectory() as d:
        folder = write_package(Path(d), tables)
        got = build_features(folder, dates, SPEC, cohort=cohort, dates_per_batch=per)
        want = ref_features(read(folder), dates, SPEC, require)
    assert_frames_equal(got, want, SPEC)
    # monotonicity: a longer window never counts fewer events
    for src in ("complaint", "force_complaint", "use_of_force", "lawsuit"):
        windows = ["30d", "90d", "180d", "1y", "career"]
        for short, long in zip(windows, windows[1:], strict=False):
            assert (got[f"{src}_{long}_count"] >= got[f"{src}_{short}_count"]).all()
            assert (got[f"{src}_{long}_sustained"] >= got[f"{src}_{short}_sustained"]).all()


@settings(SETTINGS, max_examples=6)
@given(tables=packages(), t=st.sampled_from(ANCHORS + DATE_POOL[::5]))
def test_features_at_t_ignore_everything_not_known_at_t(tables, t) -> None:
    """Cutting the package at t as CONTRACT.md says changes no cohort row and no feature."""
    with tempfile.TemporaryDirectory() as d:
        full = write_package(Path(d) / "full", tables)
        pkg = read(full)
        cut = truncate(pkg, t)
        cut_folder = write_package(Path(d) / "cut", (cut.officers, cut.events, cut.assignments))
        a = build_features(full, [t], SPEC)
        b = build_features(cut_folder, [t], SPEC)
        ca = build_cohort(full, [t], CohortSpec(require_assignment="unit"))
        cb = build_cohort(cut_folder, [t], CohortSpec(require_assignment="unit"))
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(ca, cb)


@SETTINGS
@given(
    tables=packages(),
    dates=as_of_lists,
    preset=st.sampled_from(sorted(LABEL_PRESETS)),
    known_by=st.sampled_from([None, *ANCHORS, dt.date(2020, 7, 1)]),
)
def test_labels_equal_the_reference(tables, dates, preset, known_by) -> None:
    label = LABEL_PRESETS[preset]
    with tempfile.TemporaryDirectory() as d:
        folder = write_package(Path(d), tables)
        got = build_labels(folder, dates, label, known_by=known_by)
        want = ref_labels(read(folder), dates, label, known_by)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    assert got["label"].dtype == "int64"


@settings(SETTINGS, max_examples=6)
@given(
    tables=packages(),
    requests=st.dictionaries(
        st.sampled_from([None, *ANCHORS, dt.date(2020, 7, 1)]), as_of_lists, min_size=1, max_size=3
    ),
    preset=st.sampled_from(sorted(LABEL_PRESETS)),
    require=st.sampled_from([None, "rank"]),
)
def test_label_sets_in_one_query_equal_the_reference(tables, requests, preset, require) -> None:
    """Several knowledge cutoffs in one query give, per cutoff, the reference's labels."""
    label = LABEL_PRESETS[preset]
    cohort = CohortSpec(require_assignment=require) if require else None
    with tempfile.TemporaryDirectory() as d:
        folder = write_package(Path(d), tables)
        got = build_label_sets(folder, requests, label, cohort=cohort)
        pkg = read(folder)
        assert list(got) == list(requests)
        for known_by, dates in requests.items():
            want = build_labels(folder, dates, label, known_by=known_by, cohort=cohort)
            if cohort is None:
                ref = ref_labels(pkg, dates, label, known_by)
                pd.testing.assert_frame_equal(want, ref, check_dtype=False)
            pd.testing.assert_frame_equal(got[known_by], want)


@pytest.mark.parametrize("seed, require", [(4, None), (27, None), (29, None), (24, "rank")])
def test_network_indicators_equal_the_reference(tmp_path: Path, seed: int, require) -> None:
    """Packages with officers sharing case ids (random ones rarely have many ties)."""
    cohort = CohortSpec(require_assignment=require) if require else None
    folder = write_package(tmp_path, random_package(seed))
    got = build_features(folder, ANCHORS, SPEC, cohort=cohort)
    want = ref_features(read(folder), ANCHORS, SPEC, require)
    assert want["complaint_network_1y_count"].sum() > 0
    assert_frames_equal(got, want, SPEC)
    for t in ANCHORS:  # and cutting the package at t changes none of them
        cut = truncate(read(folder), t)
        cut_folder = write_package(
            tmp_path / f"cut{t}", (cut.officers, cut.events, cut.assignments)
        )
        a = got[got.as_of_date == pd.Timestamp(t)].reset_index(drop=True)
        b = build_features(cut_folder, [t], SPEC, cohort=cohort)
        pd.testing.assert_frame_equal(a, b)


@pytest.fixture(scope="module")
def synth_agency(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic agency: units and ranks (peer columns), six years of records."""
    from ews.synth import synthesize

    out = tmp_path_factory.mktemp("synth") / "agency"
    synthesize(out, officers=400, years=6, seed=3, quiet=True)
    return out


def _one_query(folder: Path, dates, spec, cohort=None) -> pd.DataFrame:
    """The build as it was before batches: every date in one query, finished in pandas."""
    from features.build import finish
    from features.compile import features_expr
    from features.engines import connect, execute, load_tables

    tables = load_tables(connect("duckdb"), folder)
    return finish(execute(features_expr(tables, dates, spec, cohort)), spec)


@pytest.mark.parametrize("agency", ["synthetic", "network"])
def test_batched_build_equals_the_one_query_build(
    agency: str, synth_agency: Path, tmp_path: Path
) -> None:
    """Per date, per two dates, or written to Parquet batch by batch: the very same frame as
    one query over every date (peers, networks and the rank cohort included)."""
    from features.build import write_features
    from features.diagnostics import degenerate_columns

    if agency == "synthetic":
        folder, spec, cohort = synth_agency, default_spec(), None
        dates = [dt.date(2012, 1, 1), dt.date(2013, 7, 1), dt.date(2015, 1, 1)]
    else:
        folder = write_package(tmp_path / "pkg", random_package(24))
        spec, cohort, dates = SPEC, CohortSpec(require_assignment="rank"), ANCHORS
    want = _one_query(folder, dates, spec, cohort)
    assert len(want) > 0  # (the network agency has no rank holder at its first date)
    for per in (1, 2, None):
        got = build_features(folder, dates, spec, cohort=cohort, dates_per_batch=per)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    out = tmp_path / "f.parquet"
    report = write_features(folder, dates, out, spec, cohort=cohort, dates_per_batch=1)
    pd.testing.assert_frame_equal(pd.read_parquet(out), want, check_exact=True)
    assert report.batches == len(dates) and report.rows == len(want)
    by_date = want.groupby(want.as_of_date.dt.date).size().to_dict()
    assert report.rows_by_date == {d: by_date.get(d, 0) for d in dates}
    assert report.degenerate == degenerate_columns(want, spec.column_names)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_a_spec_is_compiled_once_per_process(
    synth_agency: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Builds with the spec and cohort rule of an earlier build, batches, dates and package
    all different, run the plan compiled then (features.plan); another rule compiles anew."""
    from features import plan

    compiled = []
    real = plan.compile_plan
    monkeypatch.setattr(plan, "_plans", type(plan._plans)())
    monkeypatch.setattr(plan, "compile_plan", lambda *a: compiled.append(a[3]) or real(*a))
    other = write_package(tmp_path, random_package(24))
    build_features(synth_agency, [dt.date(2012, 1, 1)], SPEC)
    build_features(other, ANCHORS, SPEC, dates_per_batch=1)
    assert compiled == [None]
    build_features(other, ANCHORS, SPEC, cohort=CohortSpec(require_assignment="rank"))
    assert compiled == [None, CohortSpec(require_assignment="rank")]


def test_batches_follow_the_size_of_the_agency(synth_agency: Path, tmp_path: Path) -> None:
    from features.build import FeatureBatches, auto_dates_per_batch, write_features

    # 400 officers: twelve dates in one query; at 100 officer-dates a batch, one date each
    assert auto_dates_per_batch(synth_agency, 12) == 12
    assert auto_dates_per_batch(synth_agency, 12, rows=1000) == 3
    assert auto_dates_per_batch(synth_agency, 12, rows=100) == 1
    dates = [dt.date(2012, 1, 1), dt.date(2013, 1, 1), dt.date(2014, 1, 1)]
    assert [
        len(b) for b in FeatureBatches(synth_agency, dates, SPEC, dates_per_batch=2).batches
    ] == [2, 1]
    with pytest.raises(ValueError, match="dates_per_batch"):
        FeatureBatches(synth_agency, dates, SPEC, dates_per_batch=0)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        write_features(synth_agency, dates, tmp_path, SPEC)
    # a build that fails leaves the file it would have replaced, and no partial file
    out = tmp_path / "f.parquet"
    out.write_bytes(b"old")
    with pytest.raises(ValueError, match="not a date"):
        write_features(synth_agency, ["2012-13-45"], out, SPEC)
    seen = []

    def stop(batch) -> None:
        seen.append(batch)
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        write_features(synth_agency, dates, out, SPEC, dates_per_batch=1, on_batch=stop)
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.parquet"]
    assert seen[0].index == 1 and seen[0].of == 3 and seen[0].rows > 0


NETWORK_SPEC = {
    "sources": {
        "complaint": {"event_type": "complaint"},
        "use_of_force": {"event_type": "use_of_force"},
    },
    "aggregates": [
        {"sources": ["complaint"], "windows": ["career"], "metrics": ["count", "sustained"]},
        {"sources": ["use_of_force"], "windows": ["career"], "metrics": ["count"]},
    ],
    "networks": [
        {
            "ties": "complaint",
            "windows": ["1y", "career"],
            "histories": ["complaint_career_sustained", "use_of_force_career_count"],
            "stats": ["mean", "max", "share", "with"],
        }
    ],
}


def test_network_ties_and_histories_obey_knowledge_time(tmp_path: Path) -> None:
    """A tie exists from the later of the two officers' report dates on the case; a tied
    officer's history counts only what is known at t."""
    officers = pd.DataFrame(
        {
            "officer_id": ["a", "b", "c", "d"],
            "appointed_date": ["2010-01-01", "2010-01-01", "2010-01-01", "2020-02-15"],
            "separation_date": [None, None, "2019-01-01", None],  # c has left: still a tie
        }
    )
    rows = [
        # case k1: a reported 2019-06-01, b only 2020-02-01: a tie from 2020-02-01
        ("e1", "a", "complaint", "2019-06-01", "k1", None, None),
        ("e2", "b", "complaint", "2020-02-01", "k1", None, None),
        # b's own history: sustained, known from 2020-02-20; another one from 2020-06-01
        ("e3", "b", "complaint", "2015-01-01", "k9", "sustained", "2020-02-20"),
        ("e4", "b", "complaint", "2016-01-01", "k8", "sustained", "2020-06-01"),
        ("e5", "b", "use_of_force", "2020-01-10", None, None, None),
        ("e6", "b", "use_of_force", "2020-02-25", None, None, None),
        # case k2: a and c in 2017 (outside the 1-year window in 2020), a and d in 2020-03
        ("e7", "a", "complaint", "2017-05-01", "k2", None, None),
        ("e8", "c", "complaint", "2017-05-02", "k2", "sustained", "2017-09-01"),
        ("e9", "d", "complaint", "2020-03-01", "k2", None, None),
        # a use-of-force report with a case id ties nobody in a complaint network
        ("e10", "c", "use_of_force", "2019-12-01", "k1", None, None),
    ]
    events = pd.DataFrame(
        rows,
        columns=["event_id", "officer_id", "event_type", "reported_date", "case_id"]
        + ["finding", "finding_date"],
    )
    events["event_date"] = events["reported_date"]
    folder = write_package(tmp_path, (officers, events, None))
    spec = spec_from_dict(NETWORK_SPEC)
    dates = [dt.date(2020, 2, 1), dt.date(2020, 2, 2), dt.date(2020, 3, 1), dt.date(2020, 3, 2)]
    got = build_features(folder, dates, spec).set_index(["officer_id", "as_of_date"])
    a = got.xs("a").rename(index=lambda d: d.date().isoformat())
    pre = "complaint_network_"
    # 2020-02-01: b is not yet reported on k1; c (2017) is a career tie only
    assert a.loc["2020-02-01", pre + "1y_count"] == 0
    assert a.loc["2020-02-01", pre + "career_count"] == 1
    assert a.loc["2020-02-01", pre + "career_complaint_career_sustained_share"] == 1.0
    assert pd.isna(a.loc["2020-02-01", pre + "1y_complaint_career_sustained_share"])
    assert pd.isna(a.loc["2020-02-01", pre + "1y_complaint_career_sustained_mean"])
    # 2020-02-02: b is tied; his sustained findings are not known yet, 1 force report is
    assert a.loc["2020-02-02", pre + "1y_count"] == 1
    assert a.loc["2020-02-02", pre + "1y_complaint_career_sustained_with"] == 0
    assert a.loc["2020-02-02", pre + "1y_use_of_force_career_count_max"] == 1.0
    # 2020-03-01: one finding of b known (the other only in June), 2 force reports; d is
    # reported on k2 only on 2020-03-01, so not yet tied
    assert a.loc["2020-03-01", pre + "1y_count"] == 1
    assert a.loc["2020-03-01", pre + "1y_complaint_career_sustained_max"] == 1.0
    assert a.loc["2020-03-01", pre + "1y_use_of_force_career_count_mean"] == 2.0
    # 2020-03-02: d is tied in the 1-year window (no history), c still only in the career
    assert a.loc["2020-03-02", pre + "1y_count"] == 2
    assert a.loc["2020-03-02", pre + "1y_complaint_career_sustained_share"] == 0.5
    assert a.loc["2020-03-02", pre + "1y_complaint_career_sustained_mean"] == 0.5
    assert a.loc["2020-03-02", pre + "career_count"] == 3
    assert a.loc["2020-03-02", pre + "career_complaint_career_sustained_with"] == 2
    # ties are symmetric: b sees a from 2020-02-02 on
    b = got.xs("b").rename(index=lambda d: d.date().isoformat())
    assert b[pre + "1y_count"].tolist() == [0, 1, 1, 1]
    want = ref_features(read(folder), dates, spec)
    assert_frames_equal(build_features(folder, dates, spec), want, spec)


def test_labels_with_category_and_custom_window(tmp_path: Path) -> None:
    folder = write_package(tmp_path, random_package(11))
    label = LabelSpec.from_dict(
        {
            "name": "force",
            "window": "6m",
            "any_of": [{"event_type": "complaint", "category_prefix": "05"}],
        }
    )
    got = build_labels(folder, ANCHORS, label)
    want = ref_labels(read(folder), ANCHORS, label)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    with pytest.raises(ValueError, match="not a duration"):
        LabelSpec.from_dict({"name": "x", "window": "soon", "any_of": [{"event_type": "a"}]})
    with pytest.raises(ValueError, match="no label preset"):
        build_labels(folder, ANCHORS, "nope")


def test_cohort_rules_on_a_hand_built_package(tmp_path: Path) -> None:
    t = dt.date(2020, 1, 1)
    officers = pd.DataFrame(
        {
            "officer_id": ["before", "on_t", "sep_on_t", "sep_before", "no_rank", "rank_ends"],
            "appointed_date": ["2019-12-31", "2020-01-01", "2010-01-01", "2010-01-01"]
            + ["2010-01-01", "2010-01-01"],
            "separation_date": [None, None, "2020-01-01", "2019-12-31", None, None],
        }
    )
    assignments = pd.DataFrame(
        {
            "officer_id": ["before", "on_t", "sep_on_t", "sep_before", "rank_ends", "no_rank"],
            "kind": ["rank", "rank", "rank", "rank", "rank", "unit"],
            "value": ["po"] * 6,
            "start_date": ["2019-12-31"] * 6,
            "end_date": [None, None, None, None, "2019-12-31", None],
        }
    )
    events = pd.DataFrame({c: [] for c in ["event_id", "officer_id", "event_type", "event_date"]})
    folder = write_package(tmp_path, (officers, events, assignments))
    plain = build_cohort(folder, [t])
    assert plain.officer_id.tolist() == ["before", "no_rank", "rank_ends", "sep_on_t"]
    ranked = build_cohort(folder, [t], CohortSpec(require_assignment="rank"))
    assert ranked.officer_id.tolist() == ["before", "sep_on_t"]
    assert ranked.as_of_date.dtype == "datetime64[ns]"
    assert sorted(ref_cohort(read(folder), [t], "rank")) == [("before", t), ("sep_on_t", t)]


def test_default_spec_on_an_agency_without_assignments_or_activity(tmp_path: Path) -> None:
    officers, events, _ = random_package(5)
    events = events[events.event_type != "arrest"]
    folder = write_package(tmp_path, (officers, events, None))
    spec = default_spec()
    got = build_features(folder, ANCHORS, spec, progress=True)
    want = ref_features(read(folder), ANCHORS, spec)
    assert_frames_equal(got, want, spec)
    assert got[[c for c in got.columns if "per100_" in c]].isna().all().all()
    assert (got["lawsuit_5y_count"] == 0).all()
    assert got["unit"].isna().all() and got["use_of_force_1y_count_unit_pct"].isna().all()
    assert list(got.columns[:2]) == ["officer_id", "as_of_date"]
    assert list(got.columns[2:]) == spec.column_names


def test_bad_inputs_fail_clearly(tmp_path: Path) -> None:
    from ews.contract import ContractError

    with pytest.raises(ContractError, match="not a normalized package"):
        build_features(tmp_path, [dt.date(2020, 1, 1)])
    folder = write_package(tmp_path / "p", random_package(1))
    with pytest.raises(ValueError, match="no as-of dates"):
        build_features(folder, [])
    with pytest.raises(ValueError, match="not a date"):
        build_features(folder, ["yesterday-ish"])
    with pytest.raises(ValueError, match="unknown engine"):
        build_features(folder, ANCHORS, engine="oracle")
