"""Temporal train/test splits for honest evaluation, as a pure function of config.

Like triage's timechop, every temporal setting goes into one constructor and
:meth:`TemporalSplitter.split` returns plain lists of dates, so the splits can be
checked by eye and tested against exact date lists.

The rules that keep an evaluation honest:

* A training as-of date ``t`` is usable for a test as-of date ``T`` only if its
  whole label window ends by ``T``: ``t + label_window <= T``. Otherwise the
  training labels would contain outcomes that happened after the moment the
  model is supposed to be used.
* With label maturity on (the default) the training labels count only findings
  known at ``T`` (``label_known_by = T``): a complaint filed in the window whose
  finding came after ``T`` is not yet a sustained complaint for the model.
* Training as-of dates are laid out backwards from the latest usable date,
  ``T - label_window`` (``T - label_window - label_lag`` with a label lag), every
  ``train_every``, and go back as far as ``T - train_history`` (or
  ``first_train_date``, whichever is later).
* ``label_lag`` is for slow-maturing outcomes: with label maturity on, a training
  window that ends just before ``T`` still has most of its findings pending (a
  sustained finding takes one to two and a half years in Chicago), so its labels
  are mostly wrong zeros. With a lag a training date needs
  ``t + label_window + label_lag <= T``; inner validation splits apply the same
  rule relative to their validation date.

Durations are written ``"90d"``, ``"2w"``, ``"6m"``, ``"1y"`` (days, weeks,
months, years) or given as :class:`dateutil.relativedelta.relativedelta`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeAlias

import pandas as pd
from dateutil.relativedelta import relativedelta

__all__ = ["Split", "TemporalSplitter", "inner_splits", "parse_duration"]

_DURATION = re.compile(r"^\s*(\d+)\s*([dwmy])\s*$", re.IGNORECASE)
_UNITS = {"d": "days", "w": "weeks", "m": "months", "y": "years"}

Duration: TypeAlias = str | relativedelta


def parse_duration(value: Duration, what: str = "duration") -> relativedelta:
    """Turn ``"90d"``, ``"2w"``, ``"6m"`` or ``"1y"`` into a positive relativedelta.

    Raises ValueError naming ``what`` when the text is not understood or the
    duration is not positive.
    """
    if isinstance(value, relativedelta):
        delta = value
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(
                f"{what}: cannot read {value!r}; write a whole number and a unit, "
                "d (days), w (weeks), m (months) or y (years), e.g. '6m' or '1y'"
            )
        delta = relativedelta(**{_UNITS[match.group(2).lower()]: int(match.group(1))})
    else:
        raise ValueError(f"{what}: expected text like '1y' or a relativedelta, got {value!r}")
    probe = date(2000, 1, 1)
    if probe + delta <= probe:
        raise ValueError(f"{what}: must be positive, got {value!r}")
    return delta


def _as_date(value: date | datetime | str | pd.Timestamp, what: str) -> date:
    """Accept a date, datetime, Timestamp or ISO text; return a plain date."""
    try:
        if isinstance(value, datetime | pd.Timestamp):
            return pd.Timestamp(value).date()
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            return date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {value!r} is not an ISO date (YYYY-MM-DD)") from exc
    raise ValueError(f"{what}: expected a date, got {value!r}")


@dataclass(frozen=True)
class Split:
    """One honest train/test split.

    Attributes:
        test_as_of: the date the model is scored at (and evaluated for).
        train_as_of: the training as-of dates, oldest first.
        label_known_by: the maturity cutoff for *training* labels (only findings
            with ``finding_date < label_known_by`` count); ``test_as_of`` when
            label maturity is on, None when off (which leaks: use only to
            measure how much).
        train_label_end: the end of the latest training label window
            (``max(train_as_of) + label_window``, never after ``test_as_of``).
        test_label_end: the end of the test label window (``test_as_of + label_window``).
        test_label_known_by: the cutoff for the *test* labels: None for an outer
            split (everything known at evaluation time counts); for an inner
            validation split, the outer test date (nothing after it may be used
            to choose a model).
    """

    test_as_of: date
    train_as_of: list[date]
    label_known_by: date | None
    train_label_end: date
    test_label_end: date | None = None
    test_label_known_by: date | None = None

    def as_dict(self) -> dict[str, object]:
        """Plain JSON-ready form (ISO dates) for reports and run parameters."""

        def iso(d: date | None) -> str | None:
            return None if d is None else d.isoformat()

        return {
            "test_as_of": iso(self.test_as_of),
            "train_as_of": [d.isoformat() for d in self.train_as_of],
            "label_known_by": iso(self.label_known_by),
            "train_label_end": iso(self.train_label_end),
            "test_label_end": iso(self.test_label_end),
            "test_label_known_by": iso(self.test_label_known_by),
        }


@dataclass
class TemporalSplitter:
    """Lay out training as-of dates for each test as-of date (see the module docstring).

    Args:
        test_dates: the as-of dates to evaluate at.
        label_window: how far ahead a label looks (``"1y"``: any sustained
            complaint in the year after the as-of date).
        train_history: how far back from the test date training may reach
            (``"3y"``); None to reach back to ``first_train_date``.
        train_every: spacing of the training as-of dates (``"6m"``, ``"1y"``).
        first_train_date: the earliest allowed training as-of date (e.g. when the
            data start); required when ``train_history`` is None.
        label_maturity: count only findings known at the test date in training
            labels (keep on; off exists to measure the leak).
        label_lag: extra time a training label window must have ended before the
            test (or validation) date, so its findings had time to come in
            (``"1y"``); None, ``"0"`` or ``"0y"`` for none.
    """

    test_dates: Sequence[date | str]
    label_window: Duration = "1y"
    train_history: Duration | None = "3y"
    train_every: Duration = "1y"
    first_train_date: date | str | None = None
    label_maturity: bool = True
    label_lag: Duration | None = None

    def _lag(self) -> relativedelta:
        """The label lag as a relativedelta (zero when None or ``"0"``)."""
        lag = self.label_lag
        if lag is None or (isinstance(lag, str) and re.fullmatch(r"\s*0+\s*[dwmy]?\s*", lag)):
            return relativedelta()
        return parse_duration(self.label_lag, "label_lag")

    def _validate(self) -> tuple[list[date], relativedelta, relativedelta | None, relativedelta]:
        if isinstance(self.test_dates, str | date) or not isinstance(self.test_dates, Iterable):
            raise ValueError("test_dates: expected a list of dates")
        tests = sorted({_as_date(d, "test_dates") for d in self.test_dates})
        if not tests:
            raise ValueError("test_dates: give at least one test as-of date")
        label = parse_duration(self.label_window, "label_window")
        every = parse_duration(self.train_every, "train_every")
        self._lag()  # refuse a bad label_lag early
        history = (
            None
            if self.train_history is None
            else parse_duration(self.train_history, "train_history")
        )
        if history is None and self.first_train_date is None:
            raise ValueError(
                "train_history is None (use all history) but first_train_date is not set: "
                "give one of them"
            )
        return tests, label, history, every

    def _train_dates(
        self, test: date, label: relativedelta, history: relativedelta | None, every: relativedelta
    ) -> list[date]:
        latest = test - label - self._lag()
        starts = []
        if history is not None:
            starts.append(test - history)
        if self.first_train_date is not None:
            starts.append(_as_date(self.first_train_date, "first_train_date"))
        earliest = max(starts)
        dates: list[date] = []
        k = 0
        while True:
            # Step from `latest` by multiples of `every` (not repeated subtraction),
            # so month ends do not drift.
            d = latest - every * k
            if d < earliest:
                break
            dates.append(d)
            k += 1
        return sorted(dates)

    def split(self) -> list[Split]:
        """Return one :class:`Split` per test date, oldest first.

        Raises ValueError on a bad config, and when a test date leaves no
        training date (its history is shorter than one label window).
        """
        tests, label, history, every = self._validate()
        splits = []
        for test in tests:
            train = self._train_dates(test, label, history, every)
            if not train:
                raise ValueError(
                    f"test date {test.isoformat()}: no training as-of date fits; a training "
                    f"date needs its label window ({self.label_window}) plus the label lag "
                    f"({self.label_lag or 0}) to end by the test date and to lie inside "
                    "train_history / after first_train_date"
                )
            splits.append(
                Split(
                    test_as_of=test,
                    train_as_of=train,
                    label_known_by=test if self.label_maturity else None,
                    train_label_end=train[-1] + label,
                    test_label_end=test + label,
                )
            )
        return splits

    def inner_splits(self, split: Split, n: int = 2) -> list[Split]:
        """Validation splits inside one split's training dates, for model selection.

        The latest ``n`` training as-of dates of ``split`` that still have
        training dates before them become validation test dates; each gets
        training dates laid out by the same rules. Validation labels (the
        labels of the validation dates) may only use what was known at the
        outer test date (``test_label_known_by = split.test_as_of``), so
        choosing a model never looks past the moment it is used. Oldest first.
        """
        if n < 1:
            raise ValueError(f"n: need at least one inner split, got {n}")
        _, label, history, every = self._validate()
        inner: list[Split] = []
        for v in reversed(split.train_as_of):
            if len(inner) == n:
                break
            train = [
                d for d in self._train_dates(v, label, history, every) if d >= split.train_as_of[0]
            ]
            if not train:
                continue
            inner.append(
                Split(
                    test_as_of=v,
                    train_as_of=train,
                    label_known_by=v if self.label_maturity else split.label_known_by,
                    train_label_end=train[-1] + label,
                    test_label_end=v + label,
                    test_label_known_by=split.test_as_of,
                )
            )
        if not inner:
            raise ValueError(
                f"split at {split.test_as_of.isoformat()}: its training dates are too few "
                "to carve a validation split; use a longer train_history"
            )
        return sorted(inner, key=lambda s: s.test_as_of)


def inner_splits(split: Split, n: int, splitter: TemporalSplitter) -> list[Split]:
    """Module-level form of :meth:`TemporalSplitter.inner_splits`."""
    return splitter.inner_splits(split, n)
