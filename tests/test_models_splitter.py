"""Exact-date tests of the temporal splitter (like triage's timechop tests)."""

from __future__ import annotations

from datetime import date

import pytest
from dateutil.relativedelta import relativedelta
from hypothesis import given, settings
from hypothesis import strategies as st

from models.splitter import Split, TemporalSplitter, inner_splits, parse_duration


def test_yearly_from_first_train_date() -> None:
    s = TemporalSplitter(
        test_dates=[date(2013, 1, 1)],
        label_window="1y",
        train_history=None,
        train_every="1y",
        first_train_date=date(2005, 1, 1),
    ).split()
    assert len(s) == 1
    assert s[0].test_as_of == date(2013, 1, 1)
    assert s[0].train_as_of == [date(y, 1, 1) for y in range(2005, 2013)]
    assert s[0].label_known_by == date(2013, 1, 1)
    assert s[0].train_label_end == date(2013, 1, 1)
    assert s[0].test_label_end == date(2014, 1, 1)


def test_triage_peer_style_half_years() -> None:
    (s,) = TemporalSplitter(
        test_dates=["2019-01-01"], label_window="1y", train_history="3y", train_every="6m"
    ).split()
    assert s.train_as_of == [
        date(2016, 1, 1),
        date(2016, 7, 1),
        date(2017, 1, 1),
        date(2017, 7, 1),
        date(2018, 1, 1),
    ]
    assert s.train_label_end == date(2019, 1, 1)


def test_no_training_label_window_reaches_past_test_date() -> None:
    splits = TemporalSplitter(
        test_dates=[date(2015, 7, 1), date(2016, 3, 15), date(2017, 1, 1)],
        label_window="18m",
        train_history="5y",
        train_every="3m",
    ).split()
    assert [s.test_as_of for s in splits] == [date(2015, 7, 1), date(2016, 3, 15), date(2017, 1, 1)]
    for s in splits:
        assert all(t + relativedelta(months=18) <= s.test_as_of for t in s.train_as_of)
        assert s.train_as_of[-1] + relativedelta(months=18) == s.test_as_of
        assert s.train_as_of[0] >= s.test_as_of - relativedelta(years=5)


def test_history_and_first_date_take_the_later() -> None:
    (s,) = TemporalSplitter(
        test_dates=[date(2013, 1, 1)],
        train_history="5y",
        first_train_date=date(2010, 6, 1),
    ).split()
    assert s.train_as_of == [date(2011, 1, 1), date(2012, 1, 1)]


def test_label_maturity_off_leaves_cutoff_open() -> None:
    (s,) = TemporalSplitter(test_dates=[date(2013, 1, 1)], label_maturity=False).split()
    assert s.label_known_by is None
    assert s.train_as_of == [date(2010, 1, 1), date(2011, 1, 1), date(2012, 1, 1)]


def test_inner_splits_stay_inside_training_years() -> None:
    sp = TemporalSplitter(
        test_dates=["2019-01-01"], label_window="1y", train_history="3y", train_every="6m"
    )
    (outer,) = sp.split()
    inner = inner_splits(outer, 2, sp)
    assert [i.test_as_of for i in inner] == [date(2017, 7, 1), date(2018, 1, 1)]
    assert inner[0].train_as_of == [date(2016, 1, 1), date(2016, 7, 1)]
    assert inner[1].train_as_of == [date(2016, 1, 1), date(2016, 7, 1), date(2017, 1, 1)]
    for i in inner:
        assert i.label_known_by == i.test_as_of
        assert i.test_label_known_by == outer.test_as_of
        assert i.test_label_end is not None and i.test_label_end <= outer.test_as_of
        assert i.as_dict()["test_label_known_by"] == "2019-01-01"


def test_label_lag_keeps_only_matured_training_windows() -> None:
    sp = TemporalSplitter(
        test_dates=[date(2013, 1, 1), date(2014, 1, 1)],
        label_window="1y",
        train_history=None,
        first_train_date=date(2005, 1, 1),
        label_lag="1y",
    )
    first, second = sp.split()
    # t + 1y label window + 1y lag <= T
    assert first.train_as_of == [date(y, 1, 1) for y in range(2005, 2012)]
    assert second.train_as_of == [date(y, 1, 1) for y in range(2005, 2013)]
    assert first.train_label_end == date(2012, 1, 1)
    assert first.label_known_by == date(2013, 1, 1)  # maturity still at the test date
    inner = sp.inner_splits(first, 2)
    # validation dates are the latest training dates; their training dates obey the lag too
    assert [i.test_as_of for i in inner] == [date(2010, 1, 1), date(2011, 1, 1)]
    assert inner[0].train_as_of == [date(y, 1, 1) for y in range(2005, 2009)]
    assert inner[1].train_as_of == [date(y, 1, 1) for y in range(2005, 2010)]
    assert all(i.test_label_known_by == date(2013, 1, 1) for i in inner)


def test_label_lag_two_years_and_zero() -> None:
    kwargs = {"test_dates": ["2013-01-01"], "train_history": None, "first_train_date": "2005-01-01"}
    (two,) = TemporalSplitter(**kwargs, label_lag="2y").split()
    assert two.train_as_of == [date(y, 1, 1) for y in range(2005, 2011)]
    assert [
        i.train_as_of for i in TemporalSplitter(**kwargs, label_lag="2y").inner_splits(two)
    ] == [
        [date(y, 1, 1) for y in range(2005, 2007)],
        [date(y, 1, 1) for y in range(2005, 2008)],
    ]
    (none,) = TemporalSplitter(**kwargs).split()
    for zero in (None, "0", "0y"):
        (s,) = TemporalSplitter(**kwargs, label_lag=zero).split()
        assert s.train_as_of == none.train_as_of == [date(y, 1, 1) for y in range(2005, 2013)]
    with pytest.raises(ValueError, match="label_lag"):
        TemporalSplitter(**kwargs, label_lag="a year").split()
    with pytest.raises(ValueError, match="label lag"):
        TemporalSplitter(["2013-01-01"], train_history="18m", label_lag="1y").split()


def test_inner_splits_refuses_too_short_history() -> None:
    sp = TemporalSplitter(test_dates=["2019-01-01"], train_history="1y", train_every="1y")
    (outer,) = sp.split()
    with pytest.raises(ValueError, match="too few"):
        sp.inner_splits(outer, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"test_dates": []}, "at least one"),
        ({"test_dates": ["2019-13-01"]}, "not an ISO date"),
        ({"test_dates": ["2019-01-01"], "label_window": "1 year"}, "label_window"),
        ({"test_dates": ["2019-01-01"], "train_every": "0m"}, "positive"),
        ({"test_dates": ["2019-01-01"], "train_history": None}, "first_train_date"),
        ({"test_dates": ["2019-01-01"], "train_history": "6m"}, "no training as-of date"),
        ({"test_dates": "2019-01-01"}, "list of dates"),
    ],
)
def test_bad_config_is_refused_clearly(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TemporalSplitter(**kwargs).split()


def test_parse_duration() -> None:
    assert parse_duration("90d") == relativedelta(days=90)
    assert parse_duration("6M") == relativedelta(months=6)
    assert parse_duration(relativedelta(years=2)) == relativedelta(years=2)
    assert isinstance(TemporalSplitter(["2019-01-01"]).split()[0], Split)


@settings(max_examples=60, deadline=None)
@given(
    test=st.dates(min_value=date(2005, 1, 1), max_value=date(2030, 12, 31)),
    label_months=st.integers(1, 36),
    every_months=st.integers(1, 24),
    history_years=st.integers(1, 10),
    maturity=st.booleans(),
)
def test_no_split_ever_leaks_label_windows(
    test: date, label_months: int, every_months: int, history_years: int, maturity: bool
) -> None:
    splitter = TemporalSplitter(
        test_dates=[test],
        label_window=f"{label_months}m",
        train_history=f"{history_years}y",
        train_every=f"{every_months}m",
        label_maturity=maturity,
    )
    try:
        (s,) = splitter.split()
    except ValueError as exc:  # history shorter than one label window
        assert label_months > 12 * history_years, exc
        return
    window = relativedelta(months=label_months)
    assert s.train_as_of == sorted(set(s.train_as_of))
    assert all(t + window <= test for t in s.train_as_of)
    assert all(t >= test - relativedelta(years=history_years) for t in s.train_as_of)
    assert s.train_label_end <= test
    assert s.label_known_by == (test if maturity else None)
    try:
        inner_list = splitter.inner_splits(s, 2)
    except ValueError as exc:  # no training date lies a label window before another
        assert s.train_as_of[-1] - window < s.train_as_of[0], exc
        return
    for inner in inner_list:
        assert inner.test_as_of in s.train_as_of and inner.test_label_known_by == test
        assert all(t + window <= inner.test_as_of for t in inner.train_as_of)
