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
from features.labels import LABEL_PRESETS, LabelSpec, build_labels
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
@given(tables=packages(), dates=as_of_lists, require=st.sampled_from([None, "rank"]))
def test_duckdb_features_equal_the_reference(tables, dates, require) -> None:
    cohort = CohortSpec(require_assignment=require) if require else None
    with tempfile.TemporaryDirectory() as d:
        folder = write_package(Path(d), tables)
        got = build_features(folder, dates, SPEC, cohort=cohort)
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
