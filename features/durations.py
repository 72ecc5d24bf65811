"""Durations such as ``90d``, ``6m``, ``1y`` or ``12 months``, and the calendar arithmetic on
them.

Windows and label horizons are computed once per as-of date in Python (a handful of dates),
so every engine compares plain dates and no engine's interval arithmetic can differ from
another's. Month and year steps are calendar steps: one year before 2020-02-29 is 2019-02-28
(``dateutil.relativedelta`` semantics).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from dateutil.relativedelta import relativedelta

_UNITS = {
    "d": "days",
    "day": "days",
    "days": "days",
    "w": "weeks",
    "wk": "weeks",
    "week": "weeks",
    "weeks": "weeks",
    "m": "months",
    "mo": "months",
    "month": "months",
    "months": "months",
    "y": "years",
    "yr": "years",
    "year": "years",
    "years": "years",
}
_PATTERN = re.compile(r"^\s*(\d+)\s*([a-z]+)\s*$")
CAREER = "career"


@dataclass(frozen=True)
class Duration:
    """A positive length of time: ``n`` days, weeks, months or years."""

    n: int
    unit: str  # days | weeks | months | years

    @property
    def token(self) -> str:
        """The canonical column-name token: ``90d``, ``2w``, ``6m``, ``1y``."""
        return f"{self.n}{self.unit[0]}"

    def delta(self, times: int = 1) -> relativedelta:
        return relativedelta(**{self.unit: self.n * times})

    def before(self, day: dt.date, times: int = 1) -> dt.date:
        """The date ``times`` durations before ``day``."""
        result: dt.date = day - self.delta(times)
        return result

    def after(self, day: dt.date, times: int = 1) -> dt.date:
        """The date ``times`` durations after ``day``."""
        result: dt.date = day + self.delta(times)
        return result

    def phrase(self) -> str:
        """Plain words for the window ending now: ``the last 90 days``, ``the last year``."""
        return f"the last {self.period()}"

    def period(self) -> str:
        """Plain words for one duration: ``90 days``, ``year``, ``3 years``."""
        singular = self.unit[:-1]
        return singular if self.n == 1 else f"{self.n} {self.unit}"


def parse_duration(text: str) -> Duration:
    """Parse ``90d``, ``6m``, ``1y``, ``12 months``, ``2 weeks``; raise ValueError otherwise."""
    m = _PATTERN.match(str(text).lower())
    if not m or m.group(2) not in _UNITS or int(m.group(1)) <= 0:
        raise ValueError(
            f"not a duration: {text!r} (use a positive number and d, w, m or y, "
            "for example 90d, 6m, 1y or '12 months')"
        )
    return Duration(int(m.group(1)), _UNITS[m.group(2)])


def parse_window(text: str) -> Duration | None:
    """A feature window token: a duration, or None for ``career`` (no lower bound)."""
    if str(text).strip().lower() == CAREER:
        return None
    return parse_duration(text)


def window_phrase(token: str) -> str:
    d = parse_window(token)
    return "the career so far" if d is None else d.phrase()
